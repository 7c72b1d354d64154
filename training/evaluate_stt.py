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
Whisper's 5월 scores as the reference's 오월); `cer_spelled`/`wer_spelled` in the JSON. RTF = processing seconds / audio seconds (front end
included); peak RSS is sampled while each system loads and runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import resource
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from speech.audio import SAMPLE_RATE, load_audio
from speech.metrics import error_counts, rates
from speech.stt import DECODERS, ENGINES, load_engine
from training.manifest import read_manifest
from training.noise import NoiseBank, mix_at_snr, synthetic_rir

_NOISE = re.compile(r"^noise(-?\d+(?:\.\d+)?)$")
CONDITION_HELP = "clean, noiseN (household noise at N dB SNR, e.g. noise0, noise5, noise10), farfield"


# -- conditions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FarField:
    rt60: float = 0.5           # seconds of reverberation (a living room)
    distance: float = 4.0       # metres; amplitude falls as 1/distance relative to 1 m
    snr_at_1m: float = 30.0     # room noise level relative to the speech at 1 m


def parse_condition(name: str) -> tuple[str, Optional[float]]:
    """'clean' -> ('clean', None); 'noise5' -> ('noise', 5.0); 'farfield' -> ('farfield', None)."""
    if name in ("clean", "farfield"):
        return name, None
    m = _NOISE.match(name)
    if m:
        return "noise", float(m.group(1))
    raise ValueError(f"Unknown condition {name!r}; conditions = {CONDITION_HELP}")


def utterance_seed(seed: int, condition: str, utt: str) -> int:
    """A seed that depends only on (seed, condition, utterance), not on order or on the system."""
    return (seed * 1_000_003 + zlib.crc32(f"{condition}/{utt}".encode("utf-8"))) % (2 ** 63)


def make_condition(audio: np.ndarray, condition: str, gen: torch.Generator,
                   noise: Optional[NoiseBank], far: FarField = FarField()) -> np.ndarray:
    """Clean float32 audio -> the condition's version (deterministic for a given generator)."""
    kind, snr = parse_condition(condition)
    if kind == "clean":
        return audio
    if noise is None:
        raise ValueError(f"Condition {condition!r} needs --noise-dir")
    import torchaudio.functional as AF

    wav = torch.from_numpy(audio)
    if kind == "noise":
        out = mix_at_snr(wav, noise.sample(len(wav), gen), snr)
    else:
        rir = synthetic_rir(far.rt60, SAMPLE_RATE, gen, "cpu")
        wet = AF.fftconvolve(wav, rir)[: len(wav)] / far.distance
        # The noise level is fixed relative to the speech at 1 m, so distance lowers the SNR.
        out = mix_at_snr(wet, noise.sample(len(wav), gen), far.snr_at_1m - 20 * math.log10(far.distance))
    out = out.numpy().astype(np.float32)
    peak = float(np.abs(out).max())
    if peak > 0.99:  # what a recorder's gain control would do; keeps the array a valid signal
        out *= 0.99 / peak
    return out


def audio_sha1(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


class ConditionSet:
    """Builds each condition's audio once (lazily) and hands the same arrays to every system."""

    def __init__(self, rows: list[dict], noise_dir: Optional[str], seed: int,
                 noise_categories: Optional[list] = None, far: FarField = FarField()):
        self.rows = rows
        self.seed = seed
        self.far = far
        self.clean = [load_audio(r["audio"]) for r in rows]
        self.noise = NoiseBank(noise_dir, categories=noise_categories) if noise_dir else None
        self._cache: dict[str, list[np.ndarray]] = {}

    def audio(self, condition: str) -> list[np.ndarray]:
        if condition not in self._cache:
            out = []
            for r, a in zip(self.rows, self.clean):
                gen = torch.Generator().manual_seed(utterance_seed(self.seed, condition, str(r.get("utt", r["audio"]))))
                out.append(make_condition(a, condition, gen, self.noise, self.far))
            self._cache[condition] = out
        return self._cache[condition]


# -- measuring ----------------------------------------------------------------------------------

def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; peak-so-far elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 1024


class RssSampler:
    """Peak RSS inside a `with` block, sampled every `interval` s (ru_maxrss only ever grows)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0.0
        self.start = 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# -- systems ------------------------------------------------------------------------------------

@dataclass
class System:
    engine: str
    model: Optional[str] = None
    decoder: str = "greedy"
    lm: Optional[str] = None
    denoise: bool = False
    name: str = ""

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"Unknown engine {self.engine!r}; engines = {list(ENGINES)}")
        if self.decoder not in DECODERS:
            raise ValueError(f"Unknown decoder {self.decoder!r}; decoders = {list(DECODERS)}")
        if self.engine != "ds2" and (self.decoder != "greedy" or self.lm):
            raise ValueError("--decoder/--lm apply to the ds2 engine only")
        if not self.name:
            label = self.engine + (f" ({self.decoder}{' + LM ' + self.lm if self.lm else ''})"
                                   if self.engine == "ds2" else "")
            self.name = f"{label} {self.model or 'default'}" + (" +denoise" if self.denoise else "")

    def load(self):
        kwargs = dict(decoder=self.decoder, lm=self.lm) if self.engine == "ds2" else {}
        return load_engine(self.engine, model=self.model, **kwargs)


def parse_system(spec: str, decoder: str = "greedy", lm: Optional[str] = None) -> System:
    """'ENGINE[:MODEL[:DECODER[:LM]]]', e.g. 'ds2:checkpoints/ds2-ko:beam', 'ds2:checkpoints/ds2-ko:beam:data/lm/lm.bin'
    or 'whisper:/models/whisper-small'."""
    engine, _, rest = spec.partition(":")
    model, dec = rest or None, decoder
    if rest and ":beam:" in rest:
        model, _, lm = rest.partition(":beam:")
        dec = "beam"
    elif rest and rest.rpartition(":")[2] in DECODERS and ":" in rest:
        model, _, dec = rest.rpartition(":")
    return System(engine=engine, model=model, decoder=dec, lm=lm if engine == "ds2" else None)


def denoise(audio: np.ndarray) -> np.ndarray:
    import noisereduce

    return noisereduce.reduce_noise(y=audio, sr=SAMPLE_RATE).astype(np.float32)


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
