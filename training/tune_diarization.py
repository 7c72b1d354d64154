"""Choose the clustering threshold (and smoothing) of speech/diarize.py on TRAIN speakers.

    python -m training.make_conversations --manifest data/ko-speech/train.jsonl --speakers 2-4 \
        --out data/13/conv-train --n 10 --seed 1
    python -m training.tune_diarization --conversations data/13/conv-train --out results/diarization_tuning

Speech regions and window embeddings are computed once per file (and kept with --cache); every
setting in the grid then only re-clusters. Embeddings go through the release's projection (the
LDA of training/fit_speaker_lda.py, fitted on these same train conversations: run the grid with
--folds 2 to fit on half the conversations and score on the other half). Scored with pyannote.metrics' DER (collar 0.25 s, overlap excluded), summed over
all files of the chosen variants. Dev speakers are never seen here.

Half-and-half folds still let the projection see the scored conversation's speakers (a train
speaker talks in several conversations). `--fit wccn` (or `lda`) is the honest version: each
conversation is scored through a projection fitted on the other conversations' windows WITHOUT
its own speakers, as dev speakers are unseen by the shipped one. `--fit-conversations` fits on
other copies of the same conversations whose noise comes from the train part of each noise clip
(make_conversations --noise-part train), as the shipped projection is fitted, so the scored
conversation's noise is unseen too:

    python -m training.tune_diarization --conversations data/13/conv-train --cache data/13/cache-train \
        --variants clean,noise,tv --fit wccn --fit-conversations data/13/conv-train-fitnoise \
        --fit-cache data/13/cache-fitnoise --fit-variants clean,noise,tv,household \
        --thresholds 0.6,0.65,0.7,0.75,0.8,0.85 --switch-penalties 0.3 --blocks 3

Speech regions are found as the analysis finds them (speech.analysis.find_speech, regions too
short for the gender classifier dropped), so the scores match training/evaluate_speakers.py.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from speech.diarize import assign, release_settings
from speech.gender import GenderClassifier
from speech.speaker import SpeakerEncoder
from training.diarization import annotation, cached_windows, der_metric, fit_lda, fit_wccn, reference


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-train")
    p.add_argument("--variants", default="clean,noise,tv")
    p.add_argument("--thresholds", default="0.15,0.2,0.25,0.3,0.35,0.4,0.45")
    p.add_argument("--switch-penalties", default="0.3,0.6,1.0")
    p.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    p.add_argument("--cache", default=None, help="folder for speech regions and window embeddings (reused)")
    p.add_argument("--folds", type=int, default=0,
                   help="fit the LDA on the other folds' conversations (needs --cache) instead of the release's")
    p.add_argument("--fit", choices=["release", "lda", "wccn"], default="release",
                   help="lda/wccn: per conversation, a projection fitted without its speakers (needs --cache)")
    p.add_argument("--fit-variants", default="clean,noise,tv,household", help="variants the projection is fitted on")
    p.add_argument("--fit-conversations", default=None,
                   help="--fit: fit on these conversations (same speakers, other noise: make_conversations "
                        "--noise-part train) instead of the scored ones")
    p.add_argument("--fit-cache", default=None, help="cache of --fit-conversations (default: --cache)")
    p.add_argument("--dims", type=int, default=20, help="--fit lda: dimensions")
    p.add_argument("--shrink", type=float, default=3.0, help="--fit wccn: identity added, in mean eigenvalues")
    p.add_argument("--blocks", default="0,3")
    p.add_argument("--methods", default="ahc", help="clustering methods: ahc (over --thresholds), spectral (no threshold)")
    p.add_argument("--splits", default=None,
                   help="spectral: split distances to try (speech.diarize.split_apart; default the release's)")
    p.add_argument("--merges", default=None,
                   help="merge distances to try (speech.diarize.merge_close; default the release's)")
    p.add_argument("--encoder", default=None, help="speaker release (default: the embedded one)")
    p.add_argument("--out", default="results/diarization_tuning")
    args = p.parse_args(argv)
    folder = Path(args.conversations)
    truths = [json.loads(x) for x in open(folder / "truth.jsonl", encoding="utf-8")][:args.limit]
    if (args.folds or args.fit != "release") and not args.cache:
        raise ValueError("--folds and --fit need --cache (the projections are fitted on cached embeddings)")
    enc = SpeakerEncoder.load(args.encoder)
    min_samples = GenderClassifier.load().min_samples
    base = release_settings(enc)
    fit_variants = args.fit_variants.split(",") if args.fit != "release" else []
    fit_folder = Path(args.fit_conversations) if args.fit_conversations else folder
    fit_cache = Path(args.fit_cache or args.cache) if args.cache else None
    fit_truths = ([json.loads(x) for x in open(fit_folder / "truth.jsonl", encoding="utf-8")][:args.limit]
                  if args.fit_conversations else truths)
    todo = [(folder, Path(args.cache) if args.cache else None, t, v) for t in truths for v in args.variants.split(",")]
    todo += [(fit_folder, fit_cache, t, v) for t in fit_truths for v in fit_variants]
    cache, seen = [], set()
    for src, cdir, t, v in todo:
        if (src, t["name"], v) in seen:
            continue
        seen.add((src, t["name"], v))
        spans, emb, wins, owner = cached_windows(src, t["name"], v, enc, base, min_samples, cdir)
        if src == folder and v in args.variants.split(","):
            cache.append((t, v, spans, emb, wins, owner))
        print(f"embedded {src.name}/{t['name']}.{v}: {len(wins)} windows", flush=True)
    if args.fit != "release":
        proj = {}
        for t in truths:
            others = [u for u in fit_truths if u["name"] != t["name"]]
            fitted = (fit_wccn(others, fit_cache, fit_variants, args.shrink, exclude=set(t["speakers"]))
                      if args.fit == "wccn" else
                      fit_lda(others, fit_cache, fit_variants, args.dims, exclude=set(t["speakers"])))
            proj[t["name"]] = fitted[:2]

        def project(t, emb):
            mean, matrix = proj[t["name"]]
            x = (emb - mean) @ matrix
            return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
        cache = [(t, v, spans, project(t, emb), wins, owner) for t, v, spans, emb, wins, owner in cache]
    elif args.folds:
        names = [t["name"] for t in truths]
        fold_of = {n: i % args.folds for i, n in enumerate(names)}
        proj = {}
        for f in range(args.folds):
            mean, matrix, *_ = fit_lda([t for t in truths if fold_of[t["name"]] != f], Path(args.cache),
                                       args.variants.split(","), 20)
            proj[f] = (mean, matrix)

        def project(t, emb):
            mean, matrix = proj[fold_of[t["name"]]]
            x = (emb - mean) @ matrix
            return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
        cache = [(t, v, spans, project(t, emb), wins, owner) for t, v, spans, emb, wins, owner in cache]
    else:
        cache = [(t, v, spans, enc.project(emb), wins, owner) for t, v, spans, emb, wins, owner in cache]
    grid = []
    thresholds = [float(x) for x in args.thresholds.split(",")]
    splits = [float(x) for x in args.splits.split(",")] if args.splits else [base.split]
    clusterings = [(m, th, sp) for m in args.methods.split(",")
                   for th, sp in ([(t, None) for t in thresholds] if m == "ahc" else [(None, x) for x in splits])]
    merges = [float(x) for x in args.merges.split(",")] if args.merges else [base.merge]
    for (method, th, split), sw, blk, merge in itertools.product(
            clusterings, [float(x) for x in args.switch_penalties.split(",")], [int(x) for x in args.blocks.split(",")], merges):
        st = replace(base, method=method, threshold=base.threshold if th is None else th,
                     split=base.split if split is None else split, switch_penalty=sw, block=blk, merge=merge)
        per_variant = {}
        for t, v, spans, emb, wins, owner in cache:
            m = per_variant.setdefault(v, der_metric())
            hyp = assign(emb, wins, owner, spans, None, st)
            m(reference(t), annotation(hyp))
            n_true = len(t.get("speakers") or [0, 0])
            per_variant.setdefault(v + "_count_ok", []).append(len({k for *_, k in hyp}) == n_true)
        row = {"method": method, "threshold": th, "split": split, "switch_penalty": sw, "block": blk, "merge": merge}
        for v in args.variants.split(","):
            row[f"der_{v}"] = round(100 * abs(per_variant[v]), 2)
            row[f"count_ok_{v}"] = round(float(np.mean(per_variant[v + "_count_ok"])), 3)
        row["der_mean"] = round(float(np.mean([row[f"der_{v}"] for v in args.variants.split(",")])), 2)
        grid.append(row)
        print(json.dumps(row), flush=True)
    best = min(grid, key=lambda r: r["der_mean"])
    # the best average-linkage row too: spectral clustering falls back to its threshold on short recordings
    best_ahc = min((r for r in grid if r["method"] == "ahc"), key=lambda r: r["der_mean"], default=None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"conversations": str(folder), "files": len(cache),
                                                    "fit": args.fit, "fit_variants": fit_variants,
                                                    "base": asdict(base), "best": best, "best_ahc": best_ahc,
                                                    "grid": grid}, indent=2) + "\n")
    vs = args.variants.split(",")
    lines = ["# Diarization tuning on TRAIN speakers", "",
             f"`python -m training.tune_diarization {' '.join(sys.argv[1:] if argv is None else argv)}` "
             f"({len(truths)} conversations of 2-4 "
             f"train speakers x {len(vs)} variants). DER by pyannote.metrics (collar 0.25 s, overlap excluded); "
             "'count ok' = share of files where the number of speakers found is right.", "",
             "| method | threshold | split | merge | switch penalty | block | "
             + " | ".join(f"DER {v} (%) | count ok {v}" for v in vs) + " | mean DER (%) |",
             "|---|---|---|---|---|---|" + "---|---|" * len(vs) + "---|"]
    for r in grid:
        lines.append(f"| {r['method']} | {'-' if r['threshold'] is None else r['threshold']} | "
                     f"{'-' if r['split'] is None else r['split']} | {r['merge'] or '-'} | "
                     f"{r['switch_penalty']} | {r['block']} | " +
                     " | ".join(f"{r[f'der_{v}']:.2f} | {r[f'count_ok_{v}']:.2f}" for v in vs) + f" | {r['der_mean']:.2f} |")
    lines += ["", f"Lowest mean DER: {best['method']}, threshold {best['threshold']}, split {best['split']}, "
                  f"merge {best['merge']}, "
                  f"switch penalty {best['switch_penalty']}, "
                  f"block {best['block']} ({best['der_mean']:.2f}%)."
              + (f" {args.fit.upper()} fitted per conversation on the other conversations' windows without its "
                 f"speakers (variants {args.fit_variants})." if args.fit != "release" else
                 f" LDA fitted per fold ({args.folds} folds: each conversation scored with the LDA of the others)."
                 if args.folds else " Embeddings through the release's projection.")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("best", best)


if __name__ == "__main__":
    main()
