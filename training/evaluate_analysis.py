"""Score `speech.analysis.analyze` on the synthetic conversations of training/make_conversations.py.

    python -m training.evaluate_analysis --conversations data/conversations --out results/analysis_eval

Per conversation and variant: absolute error of the female share (percentage points), time-weighted
gender accuracy over the speech it found where exactly one speaker talks (missed speech is counted
separately, as missed seconds), the speech time found
against the truth, and the real-time factor (wall time of `analyze` / duration, this machine,
no transcription). Writes OUT.md and OUT.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from speech.analysis import analyze
from speech.gender import GenderClassifier

STEP = 0.01


def frame_labels(segments, duration: float) -> np.ndarray:
    """-> (N,) codes: 0 none, 1 female, 2 male, 3 both (overlap), at STEP seconds."""
    codes = np.zeros(int(np.ceil(duration / STEP)) + 1, dtype=np.int8)
    for s, e, g in segments:
        codes[int(s / STEP):int(e / STEP)] |= 1 if g == "female" else 2
    return codes


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/conversations")
    p.add_argument("--model", default=None)
    p.add_argument("--out", default="results/analysis_eval")
    args = p.parse_args(argv)

    clf = GenderClassifier.load(args.model)
    folder = Path(args.conversations)
    truths = [json.loads(line) for line in open(folder / "truth.jsonl", encoding="utf-8")]
    rows = []
    for t in truths:
        for variant in t["variants"]:
            path = folder / f"{t['name']}.{variant}.flac"
            rep = analyze(str(path), clf)
            true = frame_labels(t["segments"], t["duration"])
            hyp = frame_labels([(s.start, s.end, s.gender) for s in rep.segments], t["duration"])[:len(true)]
            hyp = np.pad(hyp, (0, len(true) - len(hyp)))
            single = ((true == 1) | (true == 2)) & (hyp > 0)   # one true speaker, and found as speech
            row = {
                "conversation": t["name"], "variant": variant, "duration": round(t["duration"], 2),
                "true_female_share": round(t["female_share"], 4),
                "female_share": round(rep.genders["female"]["share"], 4),
                "abs_error_pp": round(100 * abs(rep.genders["female"]["share"] - t["female_share"]), 2),
                "gender_accuracy": round(float((hyp[single] == true[single]).mean()), 4),
                "true_speech_s": round(float((true > 0).sum() * STEP), 1),
                "found_speech_s": round(rep.speech_seconds, 1),
                "missed_speech_s": round(float(((true > 0) & (hyp == 0)).sum() * STEP), 1),
                "false_speech_s": round(float(((true == 0) & (hyp > 0)).sum() * STEP), 1),
                "utterances_true": len(t["segments"]), "turns_found": rep.n_turns,
                "rtf": round(rep.rtf, 4),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    summary = {}
    for variant in sorted({r["variant"] for r in rows}):
        rs = [r for r in rows if r["variant"] == variant]
        summary[variant] = {
            "conversations": len(rs),
            "mean_abs_error_pp": round(float(np.mean([r["abs_error_pp"] for r in rs])), 2),
            "max_abs_error_pp": round(float(np.max([r["abs_error_pp"] for r in rs])), 2),
            "gender_accuracy": round(float(np.mean([r["gender_accuracy"] for r in rs])), 4),
            "rtf": round(float(np.mean([r["rtf"] for r in rs])), 4),
        }
    res = {"model": str(clf.folder), "conversations": str(folder), "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "summary": summary, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Conversation analysis: {res['model']}", "",
             f"Synthetic conversations in `{folder}` (see training/make_conversations.py). "
             f"RTF on this machine ({res['cpu_count']} CPUs), no transcription.", "",
             "| variant | conversations | mean abs. error of female share (pp) | max (pp) | gender accuracy | RTF |",
             "|---|---|---|---|---|---|"]
    for v, s in summary.items():
        lines.append(f"| {v} | {s['conversations']} | {s['mean_abs_error_pp']:.2f} | {s['max_abs_error_pp']:.2f} | "
                     f"{100 * s['gender_accuracy']:.1f}% | {s['rtf']:.4f} |")
    lines += ["", "| conversation | variant | true share | found share | error (pp) | accuracy | true speech (s) | found (s) | missed (s) | false (s) | RTF |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['conversation']} | {r['variant']} | {r['true_female_share']:.3f} | {r['female_share']:.3f} | "
                     f"{r['abs_error_pp']:.2f} | {100 * r['gender_accuracy']:.1f}% | {r['true_speech_s']} | "
                     f"{r['found_speech_s']} | {r['missed_speech_s']} | {r['false_speech_s']} | {r['rtf']:.4f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return res


if __name__ == "__main__":
    main()
