"""Fit and measure the TV/radio detector of speech/tv.py on family-speech and TV-speech clusters.

    python -m training.train_tv --train data/ko-speech/train.jsonl --dev data/ko-speech/dev.jsonl \
        --noise ../shared/data/noise --out checkpoints/tv-ko --results results/tv_eval \
        [--conversations data/13/train-far:noise,tv,household ... | --rows results/tv_rows_train.json]

A *cluster* is what diarization hands over: one voice's spans inside a recording 8-60 s long.
* family: utterances of one ko-speech speaker with 0.5-4 s gaps (the others talk there), `clean`,
  with household `noise` (0-20 dB SNR), in a `room` (synthetic reverberation, RT60 0.2-0.6 s,
  direct-to-reverberant ratio 0-10 dB: someone across the room), or `room+noise`;
* tv: a programme of 1-3 *other* speakers through the TV chain of training/tv_mix.py (music bed
  in half, compression, loudspeaker band limit, room), `clean` or with household `noise` on top
  (0-20 dB SNR against the TV); its spans are only the pieces the family leaves free (`interrupted`:
  0.5-4 s of TV alone between 1-6 s of family talk), as diarization would hand them over.
Noise: the household categories of training/train_gender.py (`--noise-categories all` adds every
other clip of --noise, white and pink noise too). Clusters for fitting come from the train speakers and the first 70 % of every noise clip; the
measurement uses only dev speakers and the last 30 % of the noise clips. The decision threshold is
the lowest one that calls at most `--max-family-fpr` of the *training* family clusters TV (a family
member dropped from the shares costs more than a TV counted in them). Writes the detector to
OUT/config.json and precision/recall per condition to RESULTS.md/.json.

`--conversations` (train conversations of training/make_conversations.py, measured by
training/tv_rows.py) or `--rows` (rows measured before: tune_tv's or this script's RESULTS.json)
add the speakers the analysis *finds* in conversations, `--min-cluster-seconds` or more of speech
each, to the fit and to the threshold's family clusters: TV voices split and cut the way
diarization cuts them, parents across the room, children. They are measured in-sample and, the
honest number, two-fold by conversation (every variant of a conversation in the same fold).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from speech.audio import SAMPLE_RATE
from speech.bundle import save_release
from speech.tv import FEATURES, MODEL_TYPE, TVDetector, cluster_features
from training.manifest import read_manifest
from training.tv_rows import measure, parse_sets, read_rows
from training.data import load_utterances
from training.noise import HOUSEHOLD, NoiseBank, mix_at_snr, noise_part
from training.tv_mix import TVChain, apply_chain, room, tv_programme

FAMILY_CONDITIONS = ("clean", "noise", "room", "room+noise")
TV_CONDITIONS = ("clean", "noise")


def family_cluster(utts, seconds: float, condition: str, rng: random.Random, gen, bank):
    """One speaker's utterances with gaps -> (audio, spans)."""
    t = int(rng.uniform(0.5, 2.0) * SAMPLE_RATE)
    pieces, spans = [], []
    while t < seconds * SAMPLE_RATE:
        a = rng.choice(utts)
        pieces.append((t, a))
        spans.append((t / SAMPLE_RATE, (t + len(a)) / SAMPLE_RATE))
        t += len(a) + int(rng.uniform(0.5, 4.0) * SAMPLE_RATE)
    x = np.zeros(t + SAMPLE_RATE, dtype=np.float32)
    for s, a in pieces:
        x[s:s + len(a)] += a
    if "room" in condition:
        x = room(x, rng.uniform(0.2, 0.6), rng.uniform(0.0, 10.0), rng)
    if "noise" in condition:
        x = mix_at_snr(torch.from_numpy(x), bank.sample(len(x), gen), rng.uniform(0.0, 20.0)).numpy()
    return x, spans


def tv_cluster(utts_by_speaker: dict, seconds: float, condition: str, rng: random.Random, gen, bank):
    """A TV programme of 1-3 speakers through the TV chain -> (audio, programme spans)."""
    speakers = rng.sample(sorted(utts_by_speaker), k=min(len(utts_by_speaker), rng.randint(1, 3)))
    utts = [a for s in speakers for a in utts_by_speaker[s]]
    n = int(seconds * SAMPLE_RATE)
    programme, spans = tv_programme(utts, n, rng)
    x = apply_chain(programme, TVChain.draw(rng), rng)
    if "noise" in condition:
        x = mix_at_snr(torch.from_numpy(x), bank.sample(len(x), gen), rng.uniform(0.0, 20.0)).numpy()
    return x, interrupted(spans, seconds, rng)


def interrupted(spans, seconds: float, rng: random.Random):
    """The parts of the programme's spans that diarization can give the TV: the family talks over
    it for 1-6 s at a time, leaving it alone for 0.5-4 s (spans shorter than 0.3 s are dropped)."""
    free, t = [], 0.0
    while t < seconds:
        a = rng.uniform(0.5, 4.0)
        free.append((t, min(seconds, t + a)))
        t += a + rng.uniform(1.0, 6.0)
    out = [(max(s, a), min(e, b)) for s, e in spans for a, b in free]
    return [(s, e) for s, e in out if e - s >= 0.3]


def material(rows, bank, n_per_condition: int, seed: int, max_per_speaker: int = 15):
    """-> list of (features dict, is_tv, condition, seconds)."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    by = {}
    for r in rows:
        by.setdefault(r["speaker"], []).append(r)
    rows = [r for s in sorted(by) for r in by[s][:max_per_speaker]]
    audio = load_utterances(rows)
    utts = {}
    for r, a in zip(rows, audio):
        utts.setdefault(r["speaker"], []).append(a)
    speakers = sorted(utts)
    out = []
    for cond in FAMILY_CONDITIONS:
        for _ in range(n_per_condition):
            sec = rng.uniform(8, 60)
            x, spans = family_cluster(utts[rng.choice(speakers)], sec, cond, rng, gen, bank)
            out.append((cluster_features(x, spans), False, "family " + cond, sec))
    for cond in TV_CONDITIONS:
        for _ in range(2 * n_per_condition):
            sec = rng.uniform(8, 60)
            x, spans = tv_cluster(utts, sec, cond, rng, gen, bank)
            out.append((cluster_features(x, spans), True, "tv " + cond, sec))
    return out


def matrix(items):
    return np.array([[f[k] for k in FEATURES] for f, *_ in items]), np.array([tv for _, tv, *_ in items])


def scores(det: TVDetector, items) -> np.ndarray:
    return np.array([det.probability_of(f) for f, *_ in items])


def report(det: TVDetector, items) -> dict:
    p = scores(det, items)
    y = np.array([tv for _, tv, *_ in items])
    pred = p >= det.threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    res = {"clusters": len(y), "tv_clusters": int(y.sum()), "precision": round(tp / max(1, tp + fp), 4),
           "recall": round(tp / max(1, tp + fn), 4), "family_called_tv": round(fp / max(1, int((~y).sum())), 4),
           "per_condition": {}}
    for cond in sorted({c for _, _, c, *_ in items}):
        m = np.array([c == cond for _, _, c, *_ in items])
        res["per_condition"][cond] = {"clusters": int(m.sum()), "called_tv": round(float(pred[m].mean()), 4),
                                      "mean_probability": round(float(p[m].mean()), 4)}
    return res


def conversation_items(rows, min_seconds: float):
    """tv_rows rows -> items like material()'s: (features, is_tv, condition, seconds, conversation,
    the probability the rows were measured with)."""
    out = []
    for r in rows:
        if "features" not in r or r["seconds"] < min_seconds:
            continue
        tv = r["family"] < 0.5
        kind = ("tv" if tv else "far parent" if r.get("far", 0) >= 0.5 else "child" if r.get("child", 0) >= 0.5
                else "family")
        conversation = r["set"].partition(":")[0] + "/" + r["file"].partition(".")[0]
        out.append(({k: r["features"][k] for k in FEATURES}, tv, "conversation " + kind, r["seconds"], conversation,
                    r["probability"]))
    return out


def fit(items, max_family_fpr: float) -> TVDetector:
    """Standardise, fit the logistic regression, then the threshold: at most `max_family_fpr` of the
    family clusters among `items` above it (and at least 0.5)."""
    from sklearn.linear_model import LogisticRegression

    x, y = matrix(items)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    det = TVDetector(tuple(mean.tolist()), tuple(scale.tolist()), tuple(lr.coef_[0].tolist()), float(lr.intercept_[0]))
    fam = np.sort(scores(det, [i for i in items if not i[1]]))
    k = int(np.floor(max_family_fpr * len(fam)))
    threshold = float(max(0.5, fam[len(fam) - 1 - k] + 1e-6))   # at most k family clusters above
    return TVDetector(det.mean, det.scale, det.coef, det.intercept, threshold)


def crossfit_auc(synthetic, conversation, max_family_fpr: float) -> dict:
    """ROC AUC on the conversation clusters, each scored by a detector fitted without its
    conversation (two folds by conversation; the synthetic clusters in both fits), and beside it
    the AUC of the probabilities the rows carry (the detector they were measured with)."""
    import zlib

    from sklearn.metrics import roc_auc_score

    fold = [zlib.crc32(c.encode()) % 2 for *_, c, _ in conversation]
    p = np.zeros(len(conversation))
    for k in (0, 1):
        det = fit(synthetic + [c for c, f in zip(conversation, fold) if f != k], max_family_fpr)
        for i, f in enumerate(fold):
            if f == k:
                p[i] = det.probability_of(conversation[i][0])
    y = np.array([tv for _, tv, *_ in conversation])
    far = np.array([cond.endswith("far parent") for _, _, cond, *_ in conversation])
    measured = np.array([item[-1] for item in conversation])      # the detector the rows were measured with

    def auc(m, score):
        return round(float(roc_auc_score(y[m], score[m])), 4) if len(set(y[m])) == 2 else None
    every = np.ones(len(y), bool)
    return {"clusters": len(y), "tv": int(y.sum()), "far_parents": int(far.sum()),
            "auc_tv_vs_family": auc(every, p), "auc_tv_vs_far_parents": auc(y | far, p),
            "rows_auc_tv_vs_family": auc(every, measured), "rows_auc_tv_vs_far_parents": auc(y | far, measured)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", default="data/ko-speech/train.jsonl")
    p.add_argument("--dev", default="data/ko-speech/dev.jsonl")
    p.add_argument("--noise", default="../shared/data/noise")
    p.add_argument("--out", default="checkpoints/tv-ko")
    p.add_argument("--results", default="results/tv_eval")
    p.add_argument("--n", type=int, default=40, help="family clusters per condition (TV: twice as many per condition)")
    p.add_argument("--max-family-fpr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dump", default="", help="write every cluster's features here (JSONL)")
    p.add_argument("--noise-categories", choices=("all", "household"), default="household",
                   help="noise under family and TV clusters: every clip of --noise (white and pink noise "
                        "too), or the household categories of training/train_gender.py")
    p.add_argument("--conversations", nargs="*", default=[], metavar="FOLDER:VARIANTS",
                   help="also fit on the speakers found in these TRAIN conversations (make_conversations) and "
                        "variants, e.g. DIR:tv,noise (measured by training/tv_rows.py; the rows go to RESULTS.json)")
    p.add_argument("--rows", nargs="*", default=[], metavar="JSON",
                   help="... or on rows measured before (training/tune_tv.py's or this script's RESULTS.json)")
    p.add_argument("--skip", nargs="*", default=[], metavar="SET", help="leave these sets of --rows out")
    p.add_argument("--min-cluster-seconds", type=float, default=3.0,
                   help="found speakers with less speech than this are not fitted on")
    args = p.parse_args(argv)

    rows = read_rows(args.rows, args.skip)
    if args.conversations:
        from speech.gender import GenderClassifier
        from speech.speaker import SpeakerEncoder

        rows += measure(parse_sets(args.conversations), GenderClassifier.load(), SpeakerEncoder.load())
    cats = None if args.noise_categories == "all" else HOUSEHOLD
    train_bank = noise_part(NoiseBank(args.noise, categories=cats), "train")
    test_bank = noise_part(NoiseBank(args.noise, categories=cats), "test")
    train_items = material(read_manifest(args.train), train_bank, args.n, args.seed)
    dev_items = material(read_manifest(args.dev), test_bank, args.n, args.seed + 1)
    if args.dump:
        Path(args.dump).parent.mkdir(parents=True, exist_ok=True)
        with open(args.dump, "w", encoding="utf-8") as f:
            for split, items in (("train", train_items), ("dev", dev_items)):
                for feats, tv, cond, sec in items:
                    f.write(json.dumps({"split": split, "tv": bool(tv), "condition": cond, "seconds": sec, **feats}) + "\n")
    conv_items = conversation_items(rows, args.min_cluster_seconds)
    det = fit(train_items + conv_items, args.max_family_fpr)
    threshold = det.threshold
    res = {"command": "python -m training.train_tv " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "threshold": round(threshold, 4), "max_family_fpr": args.max_family_fpr,
           "train": report(det, train_items), "dev": report(det, dev_items)}
    if conv_items:
        res["conversations"] = report(det, conv_items)
        res["conversations_crossfit"] = crossfit_auc(train_items, conv_items, args.max_family_fpr)
        res["conversation_sets"] = sorted({r["set"] for r in rows})
        if args.conversations:
            res["rows"] = rows      # measured here: kept for --rows and training/tune_tv.py --rows
    config = {
        "model_type": MODEL_TYPE, "name": "tv-ko",
        "model": {"features": list(FEATURES), "mean": det.mean, "scale": det.scale, "coef": det.coef,
                  "intercept": det.intercept, "threshold": threshold},
        "provenance": {"fit_on": f"{args.train} speakers, first 70 % of the noise clips ({args.noise_categories})"
                                 + (f"; speakers found in {', '.join(res['conversation_sets'])}" if conv_items else ""),
                       "clusters": len(train_items) + len(conv_items), "conversation_clusters": len(conv_items), "max_family_fpr": args.max_family_fpr, "seed": args.seed,
                       "material": "training/train_tv.py (family clusters: clean/noise/room/room+noise; "
                                   "TV clusters: training/tv_mix.py chain, clean/noise)"},
        "metrics": {"dev": {k: v for k, v in res["dev"].items() if k != "per_condition"},
                    **({"conversations_crossfit": res["conversations_crossfit"]} if conv_items else {})},
        "license": "CC BY-NC-SA 4.0 (fitted on emotiontts_open_db speech)",
    }
    save_release(args.out, None, config)   # no weights: the model is the numbers in config["model"]
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    results.with_suffix(".md").write_text(markdown(res, det), encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k not in ("train", "rows")}, indent=1))
    return res


def markdown(res: dict, det: TVDetector) -> str:
    d = res["dev"]
    lines = ["# TV / radio detection per speaker cluster (speech/tv.py)", "", f"`{res['command']}`", "",
             "Held-out (dev) speakers and held-out noise; clusters 8-60 s. Family clusters are real read "
             "speech of one speaker; TV clusters are other speakers through training/tv_mix.py. "
             f"Decision: probability >= {res['threshold']:.3f} (at most {100 * res['max_family_fpr']:g} % of the *training* family clusters above it).", "",
             f"Dev: precision **{100 * d['precision']:.1f}%**, recall **{100 * d['recall']:.1f}%**, "
             f"family clusters called TV **{100 * d['family_called_tv']:.1f}%** "
             f"({d['clusters']} clusters, {d['tv_clusters']} TV).", "",
             "| condition | clusters | called TV | mean probability |", "|---|---|---|---|"]
    for c, v in d["per_condition"].items():
        lines.append(f"| {c} | {v['clusters']} | {100 * v['called_tv']:.1f}% | {v['mean_probability']:.3f} |")
    if "conversations" in res:
        c, x = res["conversations"], res["conversations_crossfit"]
        lines += ["", f"Speakers found in train conversations ({', '.join(res['conversation_sets'])}), fitted on: "
                  f"ROC AUC with each scored by a detector fitted without its conversation (two folds by "
                  f"conversation): TV vs family **{x['auc_tv_vs_family']}**, TV vs parents across the room "
                  f"**{x['auc_tv_vs_far_parents']}**; the detector the rows were measured with: "
                  f"{x['rows_auc_tv_vs_family']} and {x['rows_auc_tv_vs_far_parents']} "
                  f"({x['clusters']} speakers, {x['tv']} TV, {x['far_parents']} "
                  f"far parents). In-sample, at the threshold:", "",
                  "| condition | clusters | called TV | mean probability |", "|---|---|---|---|"]
        for k, v in c["per_condition"].items():
            lines.append(f"| {k} | {v['clusters']} | {100 * v['called_tv']:.1f}% | {v['mean_probability']:.3f} |")
    lines += ["", "Coefficients (standardised features): " +
              ", ".join(f"{k} {c:+.2f}" for k, c in zip(FEATURES, det.coef)), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
