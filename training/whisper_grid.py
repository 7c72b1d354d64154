"""Whisper decoding settings, chosen by measurement: a small grid on short, long and non-speech audio.

    python -m training.whisper_grid --manifest data/ko-speech/dev.jsonl --every 12 \
        --noise-dir ../shared/data/noise --threads 1 --out results/whisper-grid

Each setting (beam size, which VAD, `condition_on_previous_text`, temperature fallback) runs on:
- every Nth dev utterance in the clean, noise5 and farfield conditions (training.evaluate_stt's,
  the same audio for every setting);
- long-form audio, where the last two settings matter: the 2-minute fixture
  (tests/fixtures/examples/family_conversation.ogg) and a conversation of dev utterances of two
  speakers with pauses (`--conversation-seconds` long, built here from shared/data);
- non-speech, where the output must stay empty: an 8 s excerpt of each noise category, digital
  silence and -60 dBFS room tone.

The rule: settings that write text for non-speech are out; accuracy (pooled CER over the speech
sets) wins; if the winner misses the speed target (RTF `--rtf-target`), the fastest setting within
0.5 CER points of the best is chosen. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speech.audio import SAMPLE_RATE, AudioError, load_audio
from speech.metrics import error_counts, rate
from training.conditions import ConditionSet
from speech.whisper_engine import TEMPERATURES
from training.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "examples" / "family_conversation.ogg"


@dataclass(frozen=True)
class Setting:
    name: str
    beam_size: int = 5
    vad: str = "silero"              # speech.vad windows, or faster-whisper's own "vad_filter"
    condition_on_previous_text: bool = False
    fallback: bool = False           # temperature fallback (0.0 ... 1.0) instead of 0.0 only

    def engine_kwargs(self) -> dict:
        return dict(beam_size=self.beam_size, vad=self.vad == "silero", vad_filter=self.vad == "vad_filter",
                    condition_on_previous_text=self.condition_on_previous_text,
                    temperature=TEMPERATURES if self.fallback else 0.0)


GRID = [
    Setting("beam5"),
    Setting("greedy", beam_size=1),
    Setting("beam5 +condition", condition_on_previous_text=True),
    Setting("beam5 +fallback (faster-whisper's default; shipped before)", fallback=True),
    Setting("beam5 fw-vad", vad="vad_filter"),
    Setting("beam5 fw-vad +condition +fallback", vad="vad_filter", condition_on_previous_text=True, fallback=True),
]


def build_conversation(rows: list[dict], seconds: float, seed: int) -> tuple[np.ndarray, str]:
    """Alternating turns of one female and one male dev speaker, 0.3-1.5 s pauses -> (audio, text)."""
    rng = random.Random(seed)
    by: dict = {}
    for r in rows:
        by.setdefault((r.get("gender"), r["speaker"]), []).append(r)
    female = max((k for k in by if str(k[0]).lower().startswith("f")), key=lambda k: len(by[k]))
    male = max((k for k in by if str(k[0]).lower().startswith("m")), key=lambda k: len(by[k]))
    pieces, texts, total, turn = [np.zeros(SAMPLE_RATE, np.float32)], [], 1.0, 0
    pools = {k: rng.sample(by[k], len(by[k])) for k in (female, male)}
    while total < seconds and any(pools.values()):
        pool = pools[(female, male)[turn % 2]]
        turn += 1
        if not pool:
            continue
        r = pool.pop()
        a = load_audio(r["audio"])
        pause = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), np.float32)
        pieces += [a, pause]
        texts.append(r["text"])
        total += (len(a) + len(pause)) / SAMPLE_RATE
    return np.concatenate(pieces), " ".join(texts)


def non_speech(noise_dir: str, seed: int, seconds: float = 8.0) -> dict[str, np.ndarray]:
    """`seconds` of each noise category (from its first file), digital silence and quiet room tone."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    out = {"silence": np.zeros(n, np.float32), "room tone -60 dBFS": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
    lines = (Path(noise_dir) / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for line in lines:
        path, category = line.split("\t")[:2]
        if category not in out:
            a = load_audio(Path(noise_dir) / path)
            start = max(0, (len(a) - n) // 2)
            out[category] = a[start:start + n]
    return out


def measure(setting: Setting, speech_sets: dict, noise: dict, threads: int, log) -> dict:
    from speech.whisper_engine import WhisperEngine

    engine = WhisperEngine(model=None, cpu_threads=threads, **setting.engine_kwargs())
    engine.transcribe(speech_sets["clean"][0][0][: SAMPLE_RATE])   # warm-up, untimed
    result = {"setting": asdict(setting), "sets": {}, "non_speech": {}}
    busy = seconds = 0.0
    cpu0 = time.process_time()   # CPU seconds: what a quiet machine would take, on a shared one
    for name, items in speech_sets.items():
        hyps, refs, t_set = [], [], 0.0
        for audio, ref in items:
            t0 = time.perf_counter()
            hyps.append(engine.transcribe(audio).text)
            t_set += time.perf_counter() - t0
            refs.append(ref)
            seconds += len(audio) / SAMPLE_RATE
        busy += t_set
        c = error_counts(refs, hyps)
        result["sets"][name] = {**c, "cer": rate(c["char_errors"], c["chars"]), "seconds": round(t_set, 2),
                                "hypotheses": hyps}
        log(f"{setting.name} | {name}: CER {result['sets'][name]['cer']:.3f} ({t_set:.1f} s)")
    for name, audio in noise.items():
        t0 = time.perf_counter()
        try:
            text = engine.transcribe(audio).text
        except AudioError:   # digital silence is refused before any model sees it: nothing written
            text = ""
        busy += time.perf_counter() - t0
        seconds += len(audio) / SAMPLE_RATE
        result["non_speech"][name] = text
    pooled = [result["sets"][k] for k in speech_sets]
    result["cer"] = rate(sum(s["char_errors"] for s in pooled), sum(s["chars"] for s in pooled))
    result["non_speech_chars"] = sum(len(t) for t in result["non_speech"].values())
    result["rtf"] = busy / max(seconds, 1e-9)
    result["cpu_rtf"] = (time.process_time() - cpu0) / max(seconds, 1e-9)
    log(f"{setting.name}: pooled CER {result['cer']:.3f}, non-speech chars {result['non_speech_chars']}, "
        f"RTF {result['rtf']:.3f}")
    return result


def speed(r: dict) -> float:
    """CPU seconds per audio second where measured: a shared machine inflates the wall clock."""
    return r.get("cpu_rtf", r["rtf"])


def choose(results: list[dict], rtf_target: float, margin: float = 0.005) -> tuple[dict, str]:
    clean = [r for r in results if r["non_speech_chars"] == 0] or results
    best = min(clean, key=lambda r: r["cer"])
    if speed(best) <= rtf_target:
        return best, (f"lowest pooled CER among settings that stay silent on non-speech; speed "
                      f"{speed(best):.3f} s per audio second is within the target {rtf_target}")
    near = [r for r in clean if r["cer"] <= best["cer"] + margin]
    fastest = min(near, key=speed)
    return fastest, (f"the most accurate setting misses RTF {rtf_target}: fastest within "
                     f"{100 * margin:.1f} CER points of the best")


def markdown(report: dict) -> str:
    sets = report["sets"]
    head = ["setting", "beam", "VAD", "condition", "fallback"] + [f"{s} CER %" for s in sets] + \
        ["pooled CER %", "non-speech chars", "RTF (wall)", "CPU s / audio s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["results"]:
        s = r["setting"]
        mark = " **(chosen)**" if s["name"] == report["chosen"] else ""
        cells = [s["name"] + mark, str(s["beam_size"]), s["vad"], "on" if s["condition_on_previous_text"] else "off",
                 "on" if s["fallback"] else "off"]
        cells += [f"{100 * r['sets'][k]['cer']:.1f}" for k in sets]
        cells += [f"{100 * r['cer']:.1f}", str(r["non_speech_chars"]), f"{r['rtf']:.3f}",
                  f"{r['cpu_rtf']:.3f}" if "cpu_rtf" in r else "not measured"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([
        "# Whisper decoding grid", "",
        f"Command: `{report['command']}`", "",
        f"Whisper base (int8, CPU, {report['threads']} thread(s)); machine load while measuring: {report['load']}.", "",
        "\n".join(f"- **{k}**: {v}" for k, v in sets.items()), "",
        f"- **non-speech** (output must be empty): {', '.join(report['non_speech'])}", "",
        "\n".join(lines), "",
        f"Chosen: **{report['chosen']}** ({report['reason']}).", ""])


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest")
    p.add_argument("--every", type=int, default=12, help="every Nth dev utterance (keeps every speaker)")
    p.add_argument("--conditions", default="clean,noise5,farfield")
    p.add_argument("--noise-dir")
    p.add_argument("--conversation-seconds", type=float, default=90.0)
    p.add_argument("--settings", default="", help="comma-separated setting numbers (1-based) to run; default all")
    p.add_argument("--rtf-target", type=float, default=0.25, help="2.5 s for a 10 s clip")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--render", action="store_true",
                   help="only rewrite OUT.md from OUT.json, naming each setting as GRID names it now")
    args = p.parse_args(argv)
    if args.render:
        return render(Path(args.out))
    if not args.manifest or not args.noise_dir:
        p.error("--manifest and --noise-dir are needed to measure")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    import torch

    torch.set_num_threads(args.threads)
    rows = read_manifest(args.manifest)
    subset = rows[::args.every]
    conds = ConditionSet(subset, args.noise_dir, args.seed)
    conditions = [c for c in args.conditions.split(",") if c]
    speech_sets = {c: list(zip(conds.audio(c), [r["text"] for r in subset])) for c in conditions}
    truth = json.loads(FIXTURE.with_suffix(".json").read_text(encoding="utf-8"))
    speech_sets["2-min fixture"] = [(load_audio(FIXTURE), " ".join(t["text"] for t in truth["turns"]))]
    used = {r["utt"] for r in subset}
    conv, conv_text = build_conversation([r for r in rows if r["utt"] not in used], args.conversation_seconds,
                                         args.seed)
    speech_sets[f"conversation {len(conv) / SAMPLE_RATE / 60:.1f} min"] = [(conv, conv_text)]
    noise = non_speech(args.noise_dir, args.seed)
    chosen_settings = [GRID[int(i) - 1] for i in args.settings.split(",") if i] or GRID
    results = []
    for s in chosen_settings:   # the report is rewritten after each setting: a long run can be read early
        results.append(measure(s, speech_sets, noise, args.threads, log))
        report = write(args, argv, conditions, subset, speech_sets, noise, results)
    print(markdown(report))
    return report


def render(out: Path) -> dict:
    report = json.loads(out.with_name(out.name + ".json").read_text(encoding="utf-8"))
    names = {tuple(v for k, v in asdict(g).items() if k != "name"): g.name for g in GRID}
    for r in report["results"]:
        key = tuple(v for k, v in r["setting"].items() if k != "name")
        if key in names:
            if report["chosen"] == r["setting"]["name"]:
                report["chosen"] = names[key]
            r["setting"]["name"] = names[key]
    best, report["reason"] = choose(report["results"], report["rtf_target"])
    report["chosen"] = best["setting"]["name"]
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    out.with_name(out.name + ".md").write_text(markdown(report), encoding="utf-8")
    return report


def write(args, argv, conditions, subset, speech_sets, noise, results) -> dict:
    import os

    best, reason = choose(results, args.rtf_target)
    describe = {c: f"every {args.every}th dev utterance ({len(subset)}, "
                   f"{sum(len(a) for a, _ in speech_sets[c]) / SAMPLE_RATE / 60:.1f} min), "
                   f"training.evaluate_stt condition {c}" for c in conditions}
    describe["2-min fixture"] = "tests/fixtures/examples/family_conversation.ogg (two speakers, 125 s)"
    describe[list(speech_sets)[-1]] = ("dev utterances not in the subset, one female and one male speaker "
                                       "alternating, 0.3-1.5 s pauses")
    report = {"command": "python -m training.whisper_grid " + " ".join(argv), "threads": args.threads,
              "load": "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
              "sets": describe, "non_speech": list(noise), "results": results,
              "chosen": best["setting"]["name"], "reason": reason, "rtf_target": args.rtf_target}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    out.with_name(out.name + ".md").write_text(markdown(report), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
