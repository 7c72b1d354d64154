"""Conversation analysis with two gender models on the same synthetic conversations (adults only).

    python -m training.compare_gender_models --conversations data/13/conv-dev \
        --models checkpoints/gender-ko checkpoints/gender-child-ko --out results/gender_models_conversations

The conversations of training/make_conversations.py hold adults only, so every second the analysis
calls `child` is adult speech lost from the parents' ratio. Per model and variant: adult speech
called child (share of the speech found), the female share's absolute error against the truth
(percentage points: female / (female + male) of the found adult speech) and the speakers labelled
child. Writes OUT.md and OUT.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from speech.analysis import analyze
from speech.gender import GenderClassifier


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-dev")
    p.add_argument("--models", nargs="+", default=["checkpoints/gender-ko", "checkpoints/gender-child-ko"])
    p.add_argument("--variants", nargs="+", default=["clean", "noise", "household", "tv"])
    p.add_argument("--out", default="results/gender_models_conversations")
    args = p.parse_args(argv)

    folder = Path(args.conversations)
    truths = [json.loads(line) for line in open(folder / "truth.jsonl", encoding="utf-8")]
    rows = []
    for model in args.models:
        clf = GenderClassifier.load(model)
        for t in truths:
            for variant in args.variants:
                path = folder / f"{t['name']}.{variant}.flac"
                if not path.exists():
                    continue
                rep = analyze(str(path), clf)
                sec = {c: rep.genders.get(c, {}).get("seconds", 0.0) for c in ("female", "male", "child")}
                adult = sec["female"] + sec["male"]
                rows.append({"model": model, "conversation": t["name"], "variant": variant,
                             "child_share": round(sec["child"] / max(1e-9, adult + sec["child"]), 4),
                             "child_speakers": sum(sp.cls == "child" for sp in rep.speakers),
                             "female_share_error_pp": round(100 * abs(sec["female"] / max(1e-9, adult) - t["female_share"]), 2)})
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for model in args.models:
        for variant in args.variants:
            rs = [r for r in rows if r["model"] == model and r["variant"] == variant]
            if rs:
                summary.setdefault(model, {})[variant] = {
                    "files": len(rs), "adult_speech_called_child": round(float(np.mean([r["child_share"] for r in rs])), 4),
                    "child_speakers": sum(r["child_speakers"] for r in rs),
                    "female_share_error_pp_mean": round(float(np.mean([r["female_share_error_pp"] for r in rs])), 2),
                    "female_share_error_pp_max": round(float(np.max([r["female_share_error_pp"] for r in rs])), 2)}
    res = {"command": "python -m training.compare_gender_models " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "summary": summary, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    lines = ["# Two gender models in the conversation analysis (adult speakers only)", "", f"`{res['command']}`", "",
             "| model | variant | files | adult speech called child | speakers labelled child | female share error pp (mean / max) |",
             "|---|---|---|---|---|---|"]
    for model, vs in summary.items():
        for v, d in vs.items():
            lines.append(f"| {model} | {v} | {d['files']} | {100 * d['adult_speech_called_child']:.2f}% | {d['child_speakers']} | "
                         f"{d['female_share_error_pp_mean']:.2f} / {d['female_share_error_pp_max']:.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return res


if __name__ == "__main__":
    main()
