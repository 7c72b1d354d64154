"""Evaluate speech-to-text systems side by side on clean, noisy and far-field versions of a manifest.

    python -m training.evaluate_stt --manifest data/ko-speech/dev.jsonl \
        --system ds2:checkpoints/ds2-ko --system whisper:/path/to/whisper \
        --conditions clean,noise0,noise5,noise10,farfield --noise-dir ../shared/data/noise \
        --out results/dev-ds2-vs-whisper

(`--engine ds2 --model REF [--decoder beam --lm PATH]` is the one-system shorthand; a system spec
`ds2:MODEL:beam:LM` gives one system its own LM, so two LMs can be compared in one run; `whisper`
alone is the default Whisper, the engine that answers by default: speech.default_engine.)

Conditions: `clean`; `noiseN` = household noise mixed at N dB SNR; `farfield` = a synthetic room
(training.noise.synthetic_rir), distance attenuation and a little noise whose level is fixed
relative to the speech at 1 m. Every condition is built from a fixed seed per utterance, so every
system (in this run or another) hears identical audio; the JSON records a SHA-1 of each
condition's audio to prove it. The noise clips are the ones training mixes in (training draws
from every category, so none is held out): the noisy scores measure robustness to known noise
types at unseen SNR/offsets, not to unseen noise.

`--denoise` adds, for every system, a second row with a noisereduce (spectral gating) front end.

CER follows the study (speech.metrics: characters after removing spaces and punctuation); WER
splits on spaces after removing punctuation. Both are reported twice: on the text as written, and
with numbers spelled out on both sides (speech.text.spell_numbers, the Sino-Korean reading:
Whisper's 5월 scores as the reference's 오월); `cer_spelled`/`wer_spelled` in the JSON.
RTF = processing seconds / audio seconds (front end included); peak RSS is sampled while each
system loads and runs (training.memory).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from speech.audio import SAMPLE_RATE
from speech.metrics import error_counts, rates
from speech.stt import DECODERS, ENGINES
from training.conditions import CONDITION_HELP, ConditionSet, FarField, audio_sha1, parse_condition
from training.manifest import read_manifest
from training.memory import RssSampler
from training.systems import System, denoise, parse_system


def evaluate_system(system: System, conds: ConditionSet, conditions: list[str], log=print) -> dict:
    with RssSampler() as mem:
        t0 = time.perf_counter()
        engine = system.load()
        load_s = time.perf_counter() - t0
        refs = [r["text"] for r in conds.rows]
        if conds.clean:  # warm-up (lazy initialisation, allocator) outside the timed runs
            engine.transcribe(conds.clean[0][: SAMPLE_RATE])
        results = {}
        for c in conditions:
            hyps, busy, seconds = [], 0.0, 0.0
            for a in conds.audio(c):
                t = time.perf_counter()
                x = denoise(a) if system.denoise else a
                hyps.append(engine.transcribe(x).text)
                busy += time.perf_counter() - t
                seconds += len(a) / SAMPLE_RATE
            counts = error_counts(refs, hyps)
            spelled = rates(error_counts(refs, hyps, numbers="spelled"))
            results[c] = {**rates(counts), "cer_spelled": spelled["cer"], "wer_spelled": spelled["wer"],
                          **counts, "rtf": busy / max(seconds, 1e-9), "audio_seconds": round(seconds, 2),
                          "hypotheses": hyps}
            log(f"{system.name} | {c}: CER {results[c]['cer']:.3f} WER {results[c]['wer']:.3f} "
                f"RTF {results[c]['rtf']:.3f}")
    del engine
    return {"system": system.name, "engine": system.engine, "model": system.model, "decoder": system.decoder,
            "lm": system.lm, "denoise": system.denoise, "load_seconds": round(load_s, 3),
            "rss_before_mb": round(mem.start, 1), "peak_rss_mb": round(mem.peak, 1),
            "conditions": results}


# -- report -------------------------------------------------------------------------------------

def markdown_table(report: dict) -> str:
    conditions = report["conditions"]
    head = ["system"] + [f"{c} CER / WER" for c in conditions] + ["RTF", "load s", "peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in report["systems"]:
        res = s["conditions"]
        audio = sum(res[c]["audio_seconds"] for c in conditions)
        rtf = sum(res[c]["rtf"] * res[c]["audio_seconds"] for c in conditions) / max(audio, 1e-9)
        cells = [s["system"]] + [f"{100 * res[c]['cer']:.1f} / {100 * res[c]['wer']:.1f}" for c in conditions]
        cells += [f"{rtf:.3f}", f"{s['load_seconds']:.2f}", f"{s['peak_rss_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_spelled_table(report: dict) -> str:
    """CER / WER with numbers spelled out on both sides (speech.text.spell_numbers)."""
    conditions = report["conditions"]
    head = ["system"] + [f"{c} CER / WER, numbers spelled" for c in conditions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in report["systems"]:
        res = s["conditions"]
        cells = [s["system"]] + [f"{100 * res[c]['cer_spelled']:.1f} / {100 * res[c]['wer_spelled']:.1f}"
                                 for c in conditions]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(report: dict) -> str:
    far = report["farfield"]
    return "\n".join([
        f"# Speech-to-text evaluation: {Path(report['manifest']).name}", "",
        f"{report['utterances']} utterances, {report['audio_seconds'] / 60:.1f} min per condition; "
        f"CER / WER in %, lower is better. Command: `{report['command']}`", "",
        markdown_table(report), "",
        markdown_spelled_table(report), "",
        f"- noiseN: household noise ({report['noise_dir']}) mixed at N dB SNR, seed {report['seed']} per utterance "
        "(identical audio for every system; SHA-1 per condition in the JSON). Training mixes the same noise "
        "categories, so none is held out.",
        f"- farfield: synthetic RIR (RT60 {far['rt60']} s), {far['distance']} m (1/r attenuation), noise at "
        f"{far['snr_at_1m']} dB relative to the speech at 1 m.",
        "- CER: characters after removing spaces and punctuation (speech.metrics); WER: words after removing "
        "punctuation. First table: the text as written (a system that writes 5월 for 오월 is charged for it); "
        "second table: digits spelled out on both sides by their Sino-Korean reading (speech.text.spell_numbers).",
        "- RTF: processing seconds / audio seconds on this machine, front end included; peak RSS of the process "
        "while the system loads and runs (earlier systems' memory is freed but may stay in the process).", ""])


def run(args) -> dict:
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    for c in conditions:
        parse_condition(c)
    if any(parse_condition(c)[0] != "clean" for c in conditions) and not args.noise_dir:
        raise ValueError("noisy and far-field conditions need --noise-dir (e.g. ../shared/data/noise)")
    systems = [parse_system(s, args.decoder, args.lm) for s in args.system]
    if args.engine or not systems:
        systems.insert(0, System(engine=args.engine or "ds2", model=args.model, decoder=args.decoder, lm=args.lm))
    if args.denoise:
        systems += [System(s.engine, s.model, s.decoder, s.lm, denoise=True) for s in systems]
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = read_manifest(args.manifest)
    if args.every > 1:  # every Nth utterance: a smaller set that keeps every speaker
        rows = rows[::args.every]
    if args.limit:
        rows = rows[:args.limit]
    far = FarField()
    conds = ConditionSet(rows, args.noise_dir, args.seed,
                         args.noise_categories.split(",") if args.noise_categories else None, far)
    log = (lambda *a: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    report = {"manifest": str(args.manifest), "utterances": len(rows),
              "audio_seconds": round(sum(len(a) for a in conds.clean) / SAMPLE_RATE, 2),
              "conditions": conditions, "seed": args.seed, "noise_dir": args.noise_dir,
              "noise_categories": sorted(set(conds.noise.categories)) if conds.noise else [],
              "farfield": far.__dict__, "threads": torch.get_num_threads(),
              "command": "python -m training.evaluate_stt " + " ".join(args.argv),
              "audio_sha1": {}, "references": [r["text"] for r in rows],
              "utts": [str(r.get("utt", Path(r["audio"]).stem)) for r in rows], "systems": []}
    for s in systems:
        report["systems"].append(evaluate_system(s, conds, conditions, log))
    report["audio_sha1"] = {c: audio_sha1(conds.audio(c)) for c in conditions}
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="JSONL manifest (audio, text, utt)")
    p.add_argument("--system", action="append", default=[], metavar="ENGINE[:MODEL[:DECODER[:LM]]]",
                   help="a system to evaluate (repeatable), e.g. ds2:checkpoints/ds2-ko, ds2:owner/name:beam, "
                        "ds2:checkpoints/ds2-ko:beam:LM.bin, whisper (the default Whisper), whisper:PATH")
    p.add_argument("--engine", choices=ENGINES, default=None, help="one-system shorthand (with --model)")
    p.add_argument("--model", default=None, help="local folder, Hub repo id or 'default'")
    p.add_argument("--decoder", choices=DECODERS, default="greedy", help="ds2 decoder")
    p.add_argument("--lm", default=None, help="KenLM model for the ds2 beam decoder")
    p.add_argument("--conditions", default="clean,noise0,noise5,noise10,farfield", help=CONDITION_HELP)
    p.add_argument("--noise-dir", default=None, help="noise folder with manifest.tsv (../shared/data/noise)")
    p.add_argument("--noise-categories", default=None, help="only these noise categories, comma-separated")
    p.add_argument("--denoise", action="store_true", help="also evaluate every system behind a noisereduce front end")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--every", type=int, default=1, help="every Nth utterance only (keeps all speakers)")
    p.add_argument("--limit", type=int, default=0, help="first N utterances only (quick runs)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True, help="writes OUT.json and OUT.md (e.g. results/dev-ds2)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser()
    args = p.parse_args(argv)
    args.argv = argv
    if args.engine and args.system and args.model is None:
        p.error("--engine needs --model when --system is also given")
    try:
        report = run(args)
    except ValueError as e:
        p.error(str(e))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    md = markdown_report(report)
    out.with_name(out.name + ".md").write_text(md, encoding="utf-8")
    print(markdown_table(report))
    return report


if __name__ == "__main__":
    main()
