"""Choose when a speaker is a mixed voice (speech.analysis.mixed_rule: a gender release's
`mixed_voice` confidence and share) on conversations of TRAIN speakers.

    python -m training.tune_mixed --conversations data/13/conv-train,data/13/conv-train2 \
        --caches data/13/cache-train,data/13/cache-train2 --variants tv,clean,noise \
        --grid 0/0,0.88/0.15,0.92/0.15,0.95/0.15,0.92/0.1,0.92/0.2,0.95/0.2 --out results/diarization_mixed

Each file is diarized once (speech regions and window embeddings kept in its cache folder, as
training/tune_diarization.py keeps them; the release's projection and clustering); then, for every
CONFIDENCE/SHARE pair of the grid (0/0: no speaker is taken out), the mixed voices are taken out
(speech.diarize.Diarization.segments(without=...)) and the speakers labelled as speech.analysis
labels them. Scored per variant as training/evaluate_speakers.py scores the analysis: DER, the
adult female share's error (mean and worst file), wrong-gender time, files whose number of speakers
is right, and, in conversations with a child, child speech labelled as a parent.

`--write` puts the chosen pair into the `--gender` release's config.json (`mixed_voice`), where
speech.analysis reads it (recipes/gender-child-ko stage 4). The choice (`choose`): the lowest
female-share error (mean over files and variants), then the lowest DER; pairs equal in both (to 0.01)
form a plateau, and its middle pair in grid order is taken, away from both of its edges.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from speech.analysis import label_diarization
from speech.audio import load_audio
from speech.bundle import load_bundle, save_bundle
from speech.diarize import Diarization, release_settings
from speech.gender import GenderClassifier
from speech.level import level_gain_db
from speech.speaker import SpeakerEncoder
from training.diarization import cached_windows, score


def analyse(audio, d: Diarization, clf, logits: dict, confidence: float, share: float):
    """speech.analysis's labelling of a diarization with this grid pair -> (gender segments,
    speaker segments, adult female share)."""
    segments, speakers = label_diarization(audio, d, clf, confidence=confidence, share=share, logits=logits)
    cls = {sp.id: sp.cls for sp in speakers}
    f = sum(s.duration for s in segments if cls[s.speaker] == "female")
    m = sum(s.duration for s in segments if cls[s.speaker] == "male")
    return ([(s.start, s.end, s.gender) for s in segments], [(s.start, s.end, s.speaker) for s in segments],
            f / (f + m) if f + m else 0.0)


def choose(summary: list, variants: list) -> dict:
    """The grid pair to ship from tune_mixed's summary rows (the module's docstring says how)."""
    def key(row):
        return (round(float(np.mean([row[v]["share_error_pp"] for v in variants])), 2),
                round(float(np.mean([row[v]["der"] for v in variants])), 2))
    best = min(key(r) for r in summary)
    plateau = [r for r in summary if key(r) == best]
    return plateau[(len(plateau) - 1) // 2]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", required=True, help="folders of make_conversations, comma-separated")
    p.add_argument("--caches", default=None, help="one cache folder per conversations folder, comma-separated")
    p.add_argument("--variants", default="tv,clean,noise")
    p.add_argument("--grid", default="0/0,0.88/0.15,0.92/0.15,0.95/0.15,0.92/0.1,0.92/0.2",
                   help="CONFIDENCE/SHARE pairs (0/0: none taken out)")
    p.add_argument("--limit", type=int, default=None, help="only the first N conversations of each folder")
    p.add_argument("--gender", default=None, help="gender classifier release (default: the embedded one)")
    p.add_argument("--encoder", default=None, help="speaker release (default: the embedded one); caches are its own")
    p.add_argument("--write", action="store_true",
                   help="write the chosen pair into the --gender release folder's config.json (mixed_voice)")
    p.add_argument("--out", default="results/diarization_mixed")
    args = p.parse_args(argv)
    if args.write and not (args.gender and Path(args.gender).is_dir()):
        p.error("--write needs --gender: a release folder")
    folders = [Path(x) for x in args.conversations.split(",")]
    caches = args.caches.split(",") if args.caches else [None] * len(folders)
    if len(caches) != len(folders):
        p.error("--caches: one folder per --conversations folder")
    grid = [tuple(float(y) for y in x.split("/")) for x in args.grid.split(",")]
    variants = args.variants.split(",")
    enc, clf = SpeakerEncoder.load(args.encoder), GenderClassifier.load(args.gender)
    settings = release_settings(enc)
    rows = []
    for folder, cache in zip(folders, caches):
        for t in [json.loads(x) for x in open(folder / "truth.jsonl", encoding="utf-8")][:args.limit]:
            for v in variants:
                spans, emb, wins, owner = cached_windows(folder, t["name"], v, enc, settings, clf.min_samples, cache)
                d = Diarization.from_windows(enc.project(emb), wins, owner, spans, None, settings)
                audio = load_audio(folder / f"{t['name']}.{v}.flac")
                audio = audio * np.float32(10.0 ** (level_gain_db(audio) / 20.0))   # as analyze: the classifier hears it normalised
                logits = {}                   # each segment judged once for the whole grid
                for confidence, share in grid:
                    gs, ss, female = analyse(audio, d, clf, logits, confidence, share)
                    rows.append({"folder": folder.name, "conversation": t["name"], "variant": v,
                                 "confidence": confidence, "share": share, **score(t, gs, ss, female),
                                 "speakers_right": len({k for *_, k in ss}) == len(t["speakers"])})
                print(f"{folder.name}/{t['name']}.{v}: " + "  ".join(
                    f"{r['confidence']}/{r['share']} der {r['der']:.2f} share {r['share_error_pp']:.2f}"
                    for r in rows[-len(grid):]), flush=True)
    summary = []
    for confidence, share in grid:
        row = {"confidence": confidence, "share": share}
        for v in variants:
            rs = [r for r in rows if (r["confidence"], r["share"], r["variant"]) == (confidence, share, v)]
            row[v] = {"files": len(rs), "der": round(float(np.mean([r["der"] for r in rs])), 2),
                      "share_error_pp": round(float(np.mean([r["share_error_pp"] for r in rs])), 2),
                      "share_error_max_pp": round(float(np.max([r["share_error_pp"] for r in rs])), 2),
                      "wrong_gender": round(float(np.mean([r["wrong_gender"] for r in rs])), 2),
                      "wrong_gender_max": round(float(np.max([r["wrong_gender"] for r in rs])), 2),
                      "speakers_right": round(float(np.mean([r["speakers_right"] for r in rs])), 2)}
            kids = [r["child_as_parent"] for r in rs if "child_as_parent" in r]
            if kids:
                row[v]["child_as_parent"] = round(float(np.mean(kids)), 2)
        summary.append(row)
    chosen = choose(summary, variants)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"conversations": args.conversations, "variants": variants,
                                                    "summary": summary, "chosen": chosen, "rows": rows}, indent=2) + "\n")
    command = " ".join(sys.argv[1:] if argv is None else argv)
    lines = ["# Mixed voices: when a speaker is taken out", "",
             f"`python -m training.tune_mixed {command}`", "",
             "Per variant: mean DER % / mean and worst female-share error (pp) / mean and worst wrong-gender "
             "time % / files with the right number of speakers"
             + (" / child speech labelled a parent %" if any("child_as_parent" in r for r in rows) else "") + ".", "",
             "| confidence / share | " + " | ".join(variants) + " |",
             "|---|" + "---|" * len(variants)]
    for row in summary:
        cells = []
        for v in variants:
            c = row[v]
            cells.append(f"{c['der']:.2f} / {c['share_error_pp']:.2f} ({c['share_error_max_pp']:.2f}) / "
                         f"{c['wrong_gender']:.2f} ({c['wrong_gender_max']:.2f}) / {c['speakers_right']:.2f}"
                         + (f" / {c['child_as_parent']:.2f}" if "child_as_parent" in c else ""))
        name = "none taken out" if not row["confidence"] else f"{row['confidence']} / {row['share']}"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Chosen (lowest share error, then DER; the middle of a tie): {chosen['confidence']} / {chosen['share']}"
              + (f", written into {args.gender}/config.json" if args.write else "") + "."]
    if args.write:
        bundle = load_bundle(args.gender, weights=False)
        save_bundle(args.gender, bundle.with_info(mixed_voice={
            "confidence": chosen["confidence"], "share": chosen["share"],
            "chosen_by": f"training/tune_mixed.py on {len(rows) // len(grid)} files of conversations of train "
                         f"speakers ({', '.join(variants)}); grid {args.grid}"}))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
