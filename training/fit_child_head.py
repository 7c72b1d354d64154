"""Add the `child` class to a trained 2-class gender release by fitting its head on frozen embeddings.

    python -m training.fit_child_head --release checkpoints/gender-ko \
        --train data/ko-speech/train.jsonl data/issue-13b/child/train/manifest.jsonl \
        --dev data/ko-speech/dev.jsonl data/issue-13b/child/dev/manifest.jsonl \
        --noise ../shared/data/noise --out runs/gender-child/release

Why a head and not a retrained network: the female/male network is kept exactly (its conv stack,
temporal layer and the female and male rows of the head are copied), so adult female/male
decisions change only where the new `child` logit wins. Only the child row (2H + 1 numbers) is
learned, from the pooled mean+std embeddings of the training speakers' utterances (clean, household
noise at 0-20 dB, a synthetic room, and 1-3 s crops), adults against synthetic children
(training/child_voice.py; the pitch-raised adult copies count as adults, so a high voice alone
does not make a child). Teenagers are left out (`--exclude-note teen`) to be measured.
Then the temperature is refitted on the dev speakers (train_gender.calibrate) and the release saved
with labels (female, male, child).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from speech.audio import SAMPLE_RATE
from speech.checkpoint import load_release, save_release
from speech.features import FeatureConfig, batched_features
from speech.gender import CHILD, LABELS, MODEL_TYPE, GenderDims, GenderNet
from training.manifest import read_manifest
from training.noise import NoiseBank, mix_at_snr, synthetic_rir
from training.train_gender import (CALIBRATION_SET_CHILD, HOUSEHOLD, calibrate, init_from, label_of,
                                   load_utterances, noise_part)

LABELS3 = LABELS + (CHILD,)


@torch.inference_mode()
def pooled(model: GenderNet, features: FeatureConfig, audio, batch_size: int = 16) -> torch.Tensor:
    """Waveforms -> (N, 2H) pooled embeddings (the head's input)."""
    model.eval()
    out = torch.zeros(len(audio), 2 * model.dims.hidden)
    for idx, feats, frames in batched_features(audio, features, batch_size):
        h, n = model.embed(feats, frames)
        out[idx] = model.pool(h, n)
    return out


def augmented(audio, bank: NoiseBank, rng: random.Random, gen: torch.Generator, copies: int):
    """`copies` random variants per utterance: a 1-3 s crop (half the time) or the whole utterance,
    household noise at 0-20 dB (70 %), a synthetic room (20 %), random gain."""
    from torchaudio.functional import fftconvolve

    out = []
    for a in audio:
        for _ in range(copies):
            x = a
            if rng.random() < 0.5:
                n = int(rng.uniform(1.0, 3.0) * SAMPLE_RATE)
                s = rng.randint(0, max(0, len(x) - n))
                x = x[s:s + n]
            x = torch.from_numpy(np.ascontiguousarray(x))
            if rng.random() < 0.2:
                x = fftconvolve(x, synthetic_rir(rng.uniform(0.2, 0.7), SAMPLE_RATE, gen, "cpu"))[:len(x)]
            if rng.random() < 0.7:
                x = mix_at_snr(x, bank.sample(len(x), gen), rng.uniform(0.0, 20.0))
            x = x * 10 ** (rng.uniform(-10, 10) / 20)
            out.append((x / max(1.0, float(x.abs().max()))).numpy())
    return out


def fit_child_row(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3,
                  weight: torch.Tensor | None = None) -> None:
    """Learn the child row of `head` (female/male rows fixed) by class-weighted cross-entropy."""
    w = torch.zeros(head.in_features, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    fixed_w, fixed_b = head.weight[:2].detach(), head.bias[:2].detach()
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.cat([x @ fixed_w.T + fixed_b, (x @ w + b)[:, None]], dim=1)
        loss = F.cross_entropy(logits, y, weight=weight) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        head.weight[2] = w.detach()
        head.bias[2] = b.detach()


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", default="checkpoints/gender-ko", help="the 2-class release to extend")
    p.add_argument("--train", nargs="+", required=True, help="training manifests (adults and synthetic children)")
    p.add_argument("--dev", nargs="+", required=True, help="held-out manifests for the temperature")
    p.add_argument("--noise", default="../shared/data/noise")
    p.add_argument("--out", default="runs/gender-child/release")
    p.add_argument("--copies", type=int, default=3, help="augmented variants per training utterance")
    p.add_argument("--exclude-note", nargs="*", default=["teen"])
    p.add_argument("--l2", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-train-fraction", type=float, default=0.7)
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    _, config = load_release(args.release, expected_type=MODEL_TYPE)
    dims = GenderDims.from_dict({**config["dims"], "labels": list(LABELS3)})
    model = GenderNet(dims)
    init_from(model, args.release)
    features = FeatureConfig.from_dict(config["features"])

    def rows_of(paths):
        rows = [r for m in paths for r in read_manifest(m)]
        skip = {r.get("source_speaker") or r["speaker"] for r in rows if (r.get("note") or "") in args.exclude_note}
        return [r for r in rows if (r.get("source_speaker") or r["speaker"]) not in skip]

    train_rows, dev_rows = rows_of(args.train), rows_of(args.dev)
    overlap = ({r.get("source_speaker") or r["speaker"] for r in train_rows}
               & {r.get("source_speaker") or r["speaker"] for r in dev_rows})
    if overlap:
        raise ValueError(f"train and dev share (source) speakers {sorted(overlap)}")
    bank = noise_part(NoiseBank(args.noise), "train", args.noise_train_fraction)
    audio = load_utterances(train_rows)
    y = torch.tensor([label_of(r, LABELS3) for r in train_rows])
    x = [pooled(model, features, audio)]
    ys = [y]
    aug = augmented(audio, bank, rng, gen, args.copies)
    x.append(pooled(model, features, aug))
    ys.append(y.repeat_interleave(args.copies))
    x, y = torch.cat(x), torch.cat(ys)
    counts = torch.bincount(y, minlength=3).float()
    # adults (female + male) and children weigh the same in the loss
    weight = torch.tensor([1.0, 1.0, float(counts[:2].sum() / counts[2])])
    fit_child_row(model.head, x, y, args.l2, weight)
    with torch.no_grad():
        pred = model.head(x).argmax(1)
    train_acc = {name: round(float((pred[y == i] == i).float().mean()), 4) for i, name in enumerate(LABELS3)}
    print(json.dumps({"event": "fit", "items": len(y), "counts": counts.tolist(), "train_acc": train_acc}), flush=True)

    dev_audio = load_utterances(dev_rows)
    test_bank = noise_part(NoiseBank(args.noise, categories=HOUSEHOLD), "test", args.noise_train_fraction)
    t, cal = calibrate(model, features, dev_rows, dev_audio, test_bank)
    print(json.dumps({"event": "calibration", **cal}), flush=True)

    new = dict(config)
    new["dims"] = dims.to_dict()
    new["labels"] = list(LABELS3)
    new["calibration"] = {"method": "temperature", "temperature": t, "fitted_on": CALIBRATION_SET_CHILD}
    prov = dict(config.get("provenance", {}))
    prov["child_head"] = {
        "method": "training/fit_child_head.py: conv stack, temporal layer and female/male head rows "
                  f"copied from {config.get('name', 'gender-ko')}; child row fitted on frozen pooled embeddings",
        "train_manifests": args.train, "dev_manifests": args.dev, "copies": args.copies, "l2": args.l2,
        "excluded_notes": args.exclude_note, "items": len(y), "train_acc": train_acc,
        "child_source_speakers": sorted({r.get("source_speaker") for r in train_rows if r["gender"] == CHILD}),
        "calibration": cal,
    }
    new["provenance"] = prov
    release = save_release(Path(args.out), model.state_dict(), new)
    print(json.dumps({"event": "saved", "release": str(release)}), flush=True)
    return release


if __name__ == "__main__":
    main()
