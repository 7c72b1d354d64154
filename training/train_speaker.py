"""Make the speaker encoder hear a voice through household noise and a TV: the pretrained encoder
(resemblyzer's, checkpoints/speaker-resemblyzer) teaches a copy of itself.

    python -m training.train_speaker --out runs/speaker-robust --steps 1200 --lr 1e-4
    python -m training.fit_speaker_lda ... --release runs/speaker-robust/release   # its own projection

(recipes/speaker-ko/run.sh runs it with the conversations, tuning and projection around it.)
`--init` takes either speaker network: recipes/speaker-campplus/run.sh teaches CAM++ the same way,
with the speaker term below (`--speaker-weight 1 --dtype float16`): the shipped default encoder.

In 10 dB household noise, resemblyzer's 1.6 s windows of one speaker drift apart more than two
speakers differ (results/diarization_eval.md). Here the frozen encoder embeds a clean 1.6 s crop
of a TRAIN utterance, and the student (initialised from it) must give the same embedding for the
same crop with the room added: household noise (the TRAIN part of each clip, 0-20 dB SNR), TV
speech of the train speakers through training/tv_mix.py's chain (5-15 dB under the voice),
sometimes reverberation. A second term keeps the student's clean embeddings where the teacher's
are. The targets are the teacher's own embeddings, so the 26 train speakers teach the mapping
"room -> clean voice", not a speaker list; an optional third term (`--speaker-weight`) keeps each
train speaker's noisy crops nearer their own centroid than the others' within a batch (without it,
CAM++ learnt to merge voices). Dev speakers and the noise kept for scoring (the held-out part of
each clip) are never seen.

Validation: the same loss on a fixed set of crops of the validation speakers (`--val-speakers`,
held out of training) with noise from the held-out part of each clip.
Writes `release/` (a release of the starting network's type, without a projection; float32, or
float16 with `--dtype float16` when the check clips' embeddings keep a cosine of `--min-cosine`),
`log.jsonl`.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from speech.audio import SAMPLE_RATE
from speech.bundle import load_bundle, save_release
from speech.features import compute_features
from speech.hub import tilde
from speech.speaker import SPEAKER_TYPES, raise_level
from training.data import fast_convolve, load_utterances
from training.diarization import release_dtype
from training.flags import add_flags, flag
from training.manifest import read_manifest
from training.noise import HOUSEHOLD, NoiseBank, add_at_snr, limit_peak, noise_part, synthetic_rir
from training.tv_mix import tv_sound


@dataclass
class SpeakerTrainConfig:
    manifest: str = flag("data/ko-speech/train.jsonl", "TRAIN utterances (speakers of dev never)")
    noise: str = flag("../shared/data/noise", "household noise folder (manifest.tsv)")
    init: str = flag("checkpoints/speaker-resemblyzer", "teacher and starting point")
    out: str = flag("runs/speaker-robust", "output folder")
    name: str = flag("speaker-ko", "the release's name")
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-5
    snr_min: float = 0.0
    snr_max: float = 20.0
    tv_prob: float = flag(0.5, "share of crops with TV speech behind the voice")
    tv_min_db: float = flag(5.0, "TV at least this many dB under the voice")
    tv_max_db: float = flag(15.0, "... and at most this many")
    reverb_prob: float = 0.2
    clean_prob: float = flag(0.1, "share of crops left clean on the student's side too")
    clean_weight: float = flag(0.5, "weight of the clean-to-clean term")
    speaker_weight: float = flag(0.0, "weight of a speaker term: the noisy crops of one speaker nearer their own "
                                      "centroid than the others' (prototypical softmax, scale 10); 0: off")
    speakers_per_batch: int = flag(8, "with --speaker-weight: speakers in a batch (batch / this crops each)")
    val_speakers: str = flag("ada,adc", "comma-separated train speakers held out for validation ('' for none)")
    val_crops: int = 256
    eval_every: int = 250
    tv_tracks: int = 24
    seed: int = 0
    threads: int = 2
    dtype: str = flag("float32", "stored dtype of the release: float16 (half the size) only if no check clip's "
                                 "embedding moves below --min-cosine", choices=["float32", "float16"])
    min_cosine: float = flag(0.999, "with --dtype float16: parity needed on every check clip")


class Room:
    """Clean 1.6 s crops and their noisy copies, all randomness from one generator pair."""

    def __init__(self, cfg: SpeakerTrainConfig, utts: list, tv: list, bank: NoiseBank, seconds: float, seed: int,
                 speakers: Optional[list] = None):
        self.cfg, self.utts, self.tv, self.bank = cfg, utts, tv, bank
        self.n = int(round(seconds * SAMPLE_RATE))
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.by_speaker: dict = {}
        for i, spk in enumerate(speakers or []):
            self.by_speaker.setdefault(spk, []).append(i)

    def crop(self, pool: Optional[list] = None) -> np.ndarray:
        a = self.utts[self.rng.choice(pool) if pool else self.rng.randrange(len(self.utts))]
        if len(a) <= self.n:
            return np.pad(a, (0, self.n - len(a)))
        s = self.rng.randrange(len(a) - self.n + 1)
        return a[s:s + self.n]

    def noisy(self, clean: np.ndarray) -> np.ndarray:
        cfg, rng = self.cfg, self.rng
        x = torch.from_numpy(clean.astype(np.float32))
        if rng.random() < cfg.clean_prob:
            return clean
        if rng.random() < cfg.reverb_prob:
            x = fast_convolve(x, synthetic_rir(rng.uniform(0.2, 0.7), SAMPLE_RATE, self.gen, "cpu"))
        if self.tv and rng.random() < cfg.tv_prob:
            track = self.tv[rng.randrange(len(self.tv))]
            s = rng.randrange(len(track) - self.n)
            x = add_at_snr(x, torch.from_numpy(track[s:s + self.n]), rng.uniform(cfg.tv_min_db, cfg.tv_max_db))
        x = add_at_snr(x, self.bank.sample(self.n, self.gen), rng.uniform(cfg.snr_min, cfg.snr_max))
        return limit_peak(x).numpy().astype(np.float32)

    def pairs(self, k: int, features, target_dbfs: float, groups: int = 0):
        """-> (clean mels, noisy mels), each (k, frames, n_mels), and the speaker index of each crop
        within the batch; each crop raised to the encoder's level as speech.diarize raises a speech
        region. `groups`: crops of that many speakers, k // groups each (else any utterance)."""
        def mel(w):
            return compute_features(raise_level(w, target_dbfs), features)

        if groups:
            names = self.rng.sample(sorted(self.by_speaker), groups)
            who = [j for j in range(groups) for _ in range(k // groups)]
            clean = [self.crop(self.by_speaker[names[j]]) for j in who]
        else:
            who, clean = [0] * k, [self.crop() for _ in range(k)]
        return (torch.stack([mel(c) for c in clean]), torch.stack([mel(self.noisy(c)) for c in clean]),
                torch.tensor(who))


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(a, b, dim=1)).mean()


def speaker_loss(emb: torch.Tensor, who: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """Prototypical softmax: each embedding against the centroids of the batch's speakers (its own
    centroid without itself), cross-entropy on its speaker."""
    k = int(who.max()) + 1
    onehot = F.one_hot(who, k).float()                              # (B, K)
    sums = onehot.T @ emb                                           # (K, E)
    counts = onehot.sum(0)
    own = (sums[who] - emb) / (counts[who] - 1).clamp(min=1).unsqueeze(1)
    cent = sums / counts.unsqueeze(1)
    sim = F.normalize(emb, dim=1) @ F.normalize(cent, dim=1).T     # (B, K)
    own_sim = (F.normalize(emb, dim=1) * F.normalize(own, dim=1)).sum(1)
    sim = torch.where(onehot.bool(), own_sim.unsqueeze(1).expand_as(sim), sim)
    return F.cross_entropy(scale * sim, who)


def train(cfg: SpeakerTrainConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(cfg.init, SPEAKER_TYPES)
    if any(k.startswith("projection.") for k in bundle.state):
        print("note: the starting release's projection is not carried over (fit a new one for this encoder)")
    teacher = bundle.build_model().eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    # eval mode throughout: batch norms (CAM++'s) keep the running statistics they were trained with
    # (batches of 32 noisy crops moved every embedding, clean ones too, within ten steps); gradients
    # flow all the same, and the LSTM encoder has no layer that differs between the modes
    student = copy.deepcopy(teacher).eval()
    for q in student.parameters():
        q.requires_grad_(True)
    dims, features = teacher.dims, bundle.features
    frames = dims.partial_frames * features.hop_length / SAMPLE_RATE

    rows = read_manifest(cfg.manifest)
    held = {s for s in cfg.val_speakers.split(",") if s}
    audio = load_utterances(rows, trim_db=30)
    fit = [a for r, a in zip(rows, audio) if r["speaker"] not in held]
    val = [a for r, a in zip(rows, audio) if r["speaker"] in held]
    rng = random.Random(cfg.seed)
    tv = [tv_sound(30 * SAMPLE_RATE, fit, rng)[0].astype(np.float32) for _ in range(cfg.tv_tracks)]
    noise = NoiseBank(cfg.noise, categories=HOUSEHOLD)
    fit_speakers = [r["speaker"] for r in rows if r["speaker"] not in held]
    room = Room(cfg, fit, tv, noise_part(noise, "train"), frames, cfg.seed + 1, fit_speakers)
    val_set = None
    if val:
        val_room = Room(cfg, val, [tv_sound(30 * SAMPLE_RATE, val, rng)[0].astype(np.float32) for _ in range(4)],
                        noise_part(NoiseBank(cfg.noise, categories=HOUSEHOLD), "test"), frames, cfg.seed + 2)
        val_set = val_room.pairs(cfg.val_crops, features, dims.target_dbfs)[:2]
    print(f"{len(fit)} utterances of {len({r['speaker'] for r in rows} - held)} speakers to train on, "
          f"{len(val)} of {sorted(held)} for validation; {len(tv)} TV tracks", flush=True)

    @torch.no_grad()
    def evaluate() -> dict:
        clean, noisy = val_set
        t = teacher(clean)
        return {"val_noisy_to_clean": float(distance(student(noisy), t)),
                "val_clean": float(distance(student(clean), t)),
                "val_teacher_noisy_to_clean": float(distance(teacher(noisy), t))}

    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    log = open(out / "log.jsonl", "w", encoding="utf-8")
    start, running = time.time(), []

    def emit(d):
        log.write(json.dumps(d) + "\n")
        log.flush()
        print(json.dumps(d), flush=True)

    if val_set is not None:
        emit({"step": 0, **evaluate()})
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * min(1.0, step / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        clean, noisy, who = room.pairs(cfg.batch, features, dims.target_dbfs,
                                       cfg.speakers_per_batch if cfg.speaker_weight else 0)
        with torch.no_grad():
            target = teacher(clean)
        heard = student(noisy)
        loss_noisy = distance(heard, target)
        loss_clean = distance(student(clean), target)
        loss = loss_noisy + cfg.clean_weight * loss_clean
        if cfg.speaker_weight:
            loss = loss + cfg.speaker_weight * speaker_loss(heard, who)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        opt.step()
        running.append((loss_noisy.item(), loss_clean.item()))
        if step % 25 == 0 or step == cfg.steps:
            n, c = np.mean(running, axis=0)
            running = []
            rec = {"step": step, "noisy_to_clean": round(float(n), 5), "clean": round(float(c), 5),
                   "lr": lr, "minutes": round((time.time() - start) / 60, 2)}
            if val_set is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                rec.update(evaluate())
            emit(rec)

    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    dtype, worst = release_dtype(cfg.dtype, cfg.min_cosine, type(student), dims, state, features)
    config = bundle.to_config()
    config = {k: v for k, v in config.items() if k not in ("format", "format_version", "projection")}
    config["name"] = cfg.name
    config["license"] = "CC BY-NC-SA 4.0 (fine-tuned on emotiontts_open_db speech; the starting weights: Apache-2.0)"
    config["provenance"] = {
        "source": f"{config.get('provenance', {}).get('source', cfg.init)}, fine-tuned by this project",
        "training": "python -m training.train_speaker " + " ".join(
            f"--{k.replace('_', '-')} {tilde(v) if isinstance(v, str) else v}" for k, v in asdict(cfg).items()),
        "init": tilde(cfg.init),
        "steps": cfg.steps, "minutes": round((time.time() - start) / 60, 1),
        "stored_dtype": cfg.dtype,
        "float16_worst_cosine": round(worst, 6),
    }
    release = save_release(out / "release", state, config, dtype=dtype)
    print(f"wrote {release}")
    return release


def parse_args(argv=None) -> SpeakerTrainConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_flags(p, SpeakerTrainConfig)
    return SpeakerTrainConfig(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    train(parse_args())
