"""Long household-style recordings for batch throughput: N recordings of M minutes each.

    python -m training.make_batch_corpus --data ../shared/data --out data/batch-corpus --n 40 --minutes 15

Each recording pairs one adult female and one adult male speaker of ko-speech (read sentences,
silence trimmed): alternating turns of 1-3 sentences with 0.3-1.5 s pauses, and every minute or two
a quiet stretch of 5-30 s, so that about half of it is speech, as at home. Household noise
(shared/data/noise) runs under all of it at 15 dB below the speech. Written as Ogg/Opus at 32 kb/s
(a phone's recording, 3.6 MB per 15 minutes) with `truth.jsonl` (female/male seconds per recording).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speech.audio import SAMPLE_RATE, load_audio
from training.noise import HOUSEHOLD, NoiseBank, mix_at_snr


def speakers(data: Path) -> dict:
    with open(data / "ko-speech" / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by: dict = {}
    for r in rows:
        if r["note"] == "teen":
            continue
        by.setdefault(r["speaker"], {"gender": "female" if r["gender"] == "F" else "male", "paths": []})
        by[r["speaker"]]["paths"].append(str(data / "ko-speech" / r["path"]))
    return by


def trimmed(paths: list[str]) -> list[np.ndarray]:
    import librosa

    return [librosa.effects.trim(load_audio(p), top_db=30)[0] for p in paths]


def build(f_utts, m_utts, seconds: float, rng: random.Random) -> tuple[np.ndarray, float, float]:
    """-> (waveform, female seconds, male seconds)."""
    parts, spoken = [], {"female": 0, "male": 0}
    n, gender = 0, rng.choice(["female", "male"])
    next_quiet = rng.uniform(60, 120) * SAMPLE_RATE
    target = int(seconds * SAMPLE_RATE)
    while n < target:
        for _ in range(rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0]):
            a = rng.choice(f_utts if gender == "female" else m_utts)
            parts.append(a)
            spoken[gender] += len(a)
            gap = np.zeros(int(rng.uniform(0.15, 0.4) * SAMPLE_RATE), np.float32)
            parts.append(gap)
            n += len(a) + len(gap)
        pause = rng.uniform(0.3, 1.5)
        if n >= next_quiet:
            pause = rng.uniform(5, 30)
            next_quiet = n + rng.uniform(60, 120) * SAMPLE_RATE
        parts.append(np.zeros(int(pause * SAMPLE_RATE), np.float32))
        n += len(parts[-1])
        gender = "male" if gender == "female" else "female"
    wav = np.concatenate(parts)[:target]
    # What the cut at `target` removed is not counted exactly; the truth is for orientation only.
    return wav, spoken["female"] / SAMPLE_RATE, spoken["male"] / SAMPLE_RATE


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="data/batch-corpus")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    by = speakers(data)
    females = sorted(s for s, v in by.items() if v["gender"] == "female")
    males = sorted(s for s, v in by.items() if v["gender"] == "male")
    bank = NoiseBank(str(data / "noise"), categories=HOUSEHOLD)
    cache: dict = {}
    with open(out / "truth.jsonl", "w", encoding="utf-8") as truth:
        for i in range(args.n):
            f, m = females[i % len(females)], males[i % len(males)]
            for s in (f, m):
                if s not in cache:
                    cache[s] = trimmed(by[s]["paths"])
            if len(cache) > 8:                         # keep memory bounded
                for s in [s for s in cache if s not in (f, m)][:len(cache) - 8]:
                    del cache[s]
            wav, fs, ms = build(cache[f], cache[m], args.minutes * 60, rng)
            speech = torch.from_numpy(wav)
            noisy = mix_at_snr(speech, bank.sample(len(wav), gen), 15.0).numpy()
            name = f"family{i:02d}.ogg"
            sf.write(str(out / name), noisy, SAMPLE_RATE, format="OGG", subtype="OPUS",
                     compression_level=0.9)
            truth.write(json.dumps({"name": name, "female_speaker": f, "male_speaker": m,
                                    "duration": len(wav) / SAMPLE_RATE, "female_seconds": round(fs, 2),
                                    "male_seconds": round(ms, 2)}) + "\n")
            print(f"{name}: {f}+{m}, {len(wav) / SAMPLE_RATE / 60:.1f} min, female share {fs / (fs + ms):.3f}", flush=True)


if __name__ == "__main__":
    main()
