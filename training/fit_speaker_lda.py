"""Fit the projection of speaker embeddings (LDA or within-speaker whitening) on TRAIN speakers and
add it to the speaker release.

    python -m training.make_conversations --manifest data/ko-speech/train.jsonl --speakers 2-4 \
        --out data/13/conv-train --n 16 --seed 1                              # scored in tuning
    python -m training.make_conversations --manifest data/ko-speech/train.jsonl --speakers 2-4 \
        --out data/13/conv-train-fitnoise --n 16 --seed 1 --noise-part train  # fitted on
    python -m training.tune_diarization --conversations data/13/conv-train --cache data/13/cache-train \
        --fit wccn --fit-conversations data/13/conv-train-fitnoise --fit-cache data/13/cache-fitnoise ...
    python -m training.fit_speaker_lda --conversations data/13/conv-train-fitnoise --cache data/13/cache-fitnoise \
        --variants clean,noise,tv,household --kind wccn --release checkpoints/speaker-resemblyzer

The conversations the projection is fitted on carry the TRAIN part of each household noise clip
(`--noise-part train`); the scored ones (train for tuning, dev for results) the held-out part, so
neither the speakers nor the noise of a scored recording were seen by the fit.

resemblyzer's embeddings of different Korean speakers are close (cosine 0.6-0.75 between two
speakers on whole utterances); a linear discriminant analysis on window embeddings of train
speakers in conversations (clean and with a TV in the room), labelled by the true speaker where
exactly one talks, keeps the directions that separate speakers. Dev speakers are never used.
Writes `projection.mean` (E,) and `projection.matrix` (E, K) into model.safetensors and a
`projection` section into config.json.

`--kind wccn` (the shipped one) instead whitens the within-speaker scatter (shrunk towards a
multiple of the identity by `--shrink`), keeping all E dimensions: the directions in which one
speaker's windows wander (noise, TV, level, sentence) are turned down, nothing is cut to the
20-odd directions that separate the train speakers. With leave-speakers-out folds on train
conversations it found the speaker count far more often than the LDA did
(results/diarization_tuning.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from speech.bundle import load_release, save_release
from speech.hub import tilde
from speech.speaker import SPEAKER_TYPES
from training.diarization import fit_lda, fit_wccn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-train")
    p.add_argument("--cache", default="data/13/cache-train", help="window embeddings from tune_diarization --cache")
    p.add_argument("--variants", default="clean,tv")
    p.add_argument("--kind", choices=["lda", "wccn"], default="lda")
    p.add_argument("--dims", type=int, default=20, help="LDA dimensions")
    p.add_argument("--shrink", type=float, default=3.0, help="WCCN: identity added, in mean eigenvalues")
    p.add_argument("--release", default="checkpoints/speaker-resemblyzer")
    p.add_argument("--threshold", type=float, default=None,
                   help="clustering threshold tuned for this projection: written into the release's "
                        "`diarization` section, which speech.diarize uses (default: --tuning's best; with a "
                        "spectral best, the best ahc row's, for recordings too short for spectral clustering)")
    p.add_argument("--tuning", default=None, help="the tune_diarization report (.json) of this encoder and projection kind")
    args = p.parse_args(argv)
    folder, cache = Path(args.conversations), Path(args.cache)
    truths = [json.loads(x) for x in open(folder / "truth.jsonl", encoding="utf-8")]
    if args.kind == "wccn":
        mean, matrix, n_windows, n_speakers = fit_wccn(truths, cache, args.variants.split(","), args.shrink)
    else:
        mean, matrix, n_windows, n_speakers = fit_lda(truths, cache, args.variants.split(","), args.dims)
    k = matrix.shape[1]
    state, config = load_release(args.release, expected_type=SPEAKER_TYPES)
    state = {k_: v for k_, v in state.items() if not k_.startswith("projection.")}
    state["projection.mean"] = torch.from_numpy(mean)
    state["projection.matrix"] = torch.from_numpy(matrix)
    config = {k_: v for k_, v in config.items() if k_ not in ("format", "format_version")}
    config["projection"] = {
        "kind": args.kind, "dims": k, "speakers": n_speakers, "windows": n_windows,
        **({"shrink": args.shrink} if args.kind == "wccn" else {}),
        "fitted_on": f"{len(truths)} synthetic conversations of TRAIN speakers ({folder.name}, variants "
                     f"{args.variants}), windows where exactly one speaker talks; dev speakers unseen",
        "command": tilde(f"python -m training.fit_speaker_lda --release {args.release} --conversations {args.conversations} --cache {args.cache} "
                   f"--variants {args.variants} --kind {args.kind} "
                   + (f"--shrink {args.shrink}" if args.kind == "wccn" else f"--dims {args.dims}")
                   + (f" --threshold {args.threshold}" if args.threshold is not None else "")
                   + (f" --tuning {args.tuning}" if args.tuning else "")),
    }
    if "CC BY-NC-SA" not in config.get("license", ""):   # the data's terms travel with what was fitted on it
        config["license"] = (f"{config.get('license', 'unknown')} (the network); the projection, fitted on "
                             "emotiontts_open_db speech: CC BY-NC-SA 4.0")
    tuning = json.loads(Path(args.tuning).read_text(encoding="utf-8")) if args.tuning else {}
    best = tuning.get("best")
    # the threshold: average linkage's, also where spectral clustering falls back on short recordings
    threshold = args.threshold if args.threshold is not None else (tuning.get("best_ahc") or best or {}).get("threshold")
    if threshold is not None or best:
        chosen = {"method": (best or {}).get("method"), "threshold": threshold, "split": (best or {}).get("split"),
                  "merge": (best or {}).get("merge") or None}
        config["diarization"] = {k: v for k, v in chosen.items() if v is not None}
        if best:
            config["diarization_tuning"] = {"report": tilde(args.tuning), "best": best}
    dtype = torch.float16 if config.get("provenance", {}).get("stored_dtype") == "float16" else None
    # the projection keeps float32: it is small, and float16 would round its large coefficients
    tensors = {k_: (v.half() if dtype is not None and not k_.startswith("projection.") else v) for k_, v in state.items()}
    save_release(args.release, tensors, config)
    print(f"{args.kind.upper()} {matrix.shape[0]} -> {k} dims on {n_windows} windows of {n_speakers} train speakers -> {args.release}")


if __name__ == "__main__":
    main()
