"""Train the speaker-gender CNN (speech.gender.GenderNet) on a speaker-disjoint manifest split.

    python -m training.train_gender --train data/ko-speech/train.jsonl --dev data/ko-speech/dev.jsonl \
        --noise ../shared/data/noise --out runs/gender --minutes 8

The audio is decoded once into memory (leading and trailing silence trimmed, so a random crop is
speech). Each batch: one crop length drawn from [crop_min, crop_max] seconds, utterances drawn
gender-balanced and speaker-balanced (a speaker with 325 utterances must not outvote one with 5),
random gain, household noise at a random SNR, sometimes a synthetic room. Noise clips are split in
time: training sees the first `noise_train_fraction` of every clip, evaluation only the rest.

Writes to --out: `train.log` (JSON lines), `last.pt` (resumable training state) and `release/`
(safetensors + config.json with dims, features, labels, temperature, provenance).
The temperature is fitted after training on the dev speakers (clean and noisy), or, with
`--calib-holdout F`, on a share F of every train speaker's utterances held out of training (with
their synthetic copies), so that dev stays a pure test set. `--distill RELEASE` keeps a
female/male release's odds on adult crops while a `child` class is learnt (gender-child-ko's card).
`--band-prob P --band-teacher RELEASE`: a share P of the crops goes through a random telephone-like
band limit (`random_band`) and must give the probabilities RELEASE gives on the same crop's full
band (every teacher hears the full band).

A third class, `child`: `--extra-train` / `--extra-dev` add manifests of training/child_voice.py
(rows with gender `child`, and pitch-raised adult copies that keep their label); the labels become
female, male, child. `--exclude-note teen` holds the teenagers out of training for measuring.

    python -m training.train_gender --train data/ko-speech/train.jsonl --dev data/ko-speech/dev.jsonl \
        --extra-train data/issue-13b/child/train/manifest.jsonl --extra-dev data/issue-13b/child/dev/manifest.jsonl \
        --exclude-note teen --noise ../shared/data/noise --out runs/gender3 --minutes 12
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from speech.audio import SAMPLE_RATE
from speech.bundle import load_bundle, save_bundle, save_release
from speech.features import FeatureConfig, batched_features, compute_features
from speech.models.gender import CHILD, LABELS, MODEL_TYPE, GenderDims, GenderNet
from training.conditions import band_limit
from training.data import load_utterances
from training.manifest import label_name, label_of, read_manifest
from training.noise import HOUSEHOLD, NoiseBank, limit_peak, mix_at_snr, noise_part, noisy_copies, synthetic_rir

# Spectral shape carries gender (formants, tilt): normalise level only ("global"), not per bin.
# A 32 ms window resolves the harmonics of low voices better than 25 ms.
GENDER_FEATURES = FeatureConfig(n_fft=512, win_length=512, hop_length=160, n_mels=64, normalize="global")


@dataclass(frozen=True)
class TrainConfig:
    train: str
    dev: str
    noise: Optional[str] = None
    out: str = "runs/gender"
    features: FeatureConfig = field(default_factory=lambda: GENDER_FEATURES)
    channels: tuple = (8, 16, 32)
    hidden: int = 128
    context: int = 5
    dropout: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 32
    steps: int = 2000
    minutes: float = 0.0            # wall-clock budget; the LR schedule spans it (0 = use steps)
    crop_min: float = 1.0
    crop_max: float = 4.0
    noise_prob: float = 0.8
    snr_min: float = -5.0
    snr_max: float = 25.0
    reverb_prob: float = 0.2
    gain_db: float = 10.0
    noise_train_fraction: float = 0.7
    trim_db: float = 30.0
    eval_every: int = 300
    seed: int = 0
    threads: int = 0
    device: str = "cpu"
    fold: str = ""                  # "K/N": pool train+dev, hold out speaker fold K of N (cross-validation)
    extra_train: tuple = ()         # more manifests (e.g. synthetic children, gender "child")
    extra_dev: tuple = ()
    exclude_note: tuple = ()        # speakers with these notes (e.g. "teen") are left out of train and dev
    init: str = ""                  # start from this release's weights (head rows matched by label)
    distill: str = ""               # teacher release (female/male): adult crops keep its female-vs-male odds
    distill_weight: float = 0.0     # weight of that KL term (0 = off)
    calib_holdout: float = 0.0      # share of every train speaker's utterances held out for the temperature (0 = dev)
    band_prob: float = 0.0          # share of crops through a random telephone-like band limit (random_band)
    band_teacher: str = ""          # release whose probabilities on the full-band crop a band-limited crop must give
    band_teacher_weight: float = 0.0
    name: str = ""                  # the release's name (default: gender-child-ko with a child label, else gender-ko)
    narrowband: str = ""            # the release its config names for telephone-band audio (speech.band)

    def __post_init__(self):
        if not 0 < self.crop_min <= self.crop_max:
            raise ValueError("need 0 < crop_min <= crop_max")
        if self.snr_min > self.snr_max:
            raise ValueError("snr_min must not exceed snr_max")
        if self.steps <= 0 and self.minutes <= 0:
            raise ValueError("give --steps or --minutes")
        if self.distill_weight > 0 and not self.distill:
            raise ValueError("--distill-weight > 0 needs --distill (a female/male release)")
        if self.band_teacher_weight > 0 and not self.band_teacher:
            raise ValueError("--band-teacher-weight > 0 needs --band-teacher (a release with the same labels)")
        if not 0 <= self.calib_holdout < 1:
            raise ValueError("--calib-holdout must be in [0, 1)")
        if self.noise_prob > 0 and not self.noise:
            raise ValueError("--noise-prob > 0 needs --noise (a folder with manifest.tsv)")
        if self.fold:
            k, _, n = self.fold.partition("/")
            if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
                raise ValueError(f"--fold must be K/N with 0 <= K < N, got {self.fold!r}")


# -- data ---------------------------------------------------------------------------------------

def labels_for(rows: list[dict]) -> tuple:
    return LABELS + (CHILD,) if any(label_name(r) == CHILD for r in rows) else LABELS


def speaker_folds(rows: list[dict], n: int) -> list[set]:
    """Speakers dealt into n folds, per gender and note (teen, 50+, dialect) in name order."""
    groups = {}
    for r in rows:
        groups.setdefault((label_of(r), r.get("note") or ""), set()).add(r["speaker"])
    folds = [set() for _ in range(n)]
    i = 0
    for key in sorted(groups):
        for spk in sorted(groups[key]):
            folds[i % n].add(spk)
            i += 1
    return folds


def source_utt(row: dict) -> str:
    """The adult utterance a row comes from (child_voice copies are named UTT.LABELk)."""
    return str(row["utt"]).split(".")[0]


def holdout_split(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(kept, held): `fraction` of every source speaker's utterances held out, each with all of its
    synthetic copies, so the temperature is fitted on train speakers without dev data."""
    by = {}
    for r in rows:
        by.setdefault(r.get("source_speaker") or r["speaker"], set()).add(source_utt(r))
    rng = random.Random(seed)
    held = set()
    for spk in sorted(by):
        utts = sorted(by[spk])
        held.update(rng.sample(utts, int(round(fraction * len(utts)))))
    return [r for r in rows if source_utt(r) not in held], [r for r in rows if source_utt(r) in held]


class Sampler:
    """Gender-balanced, then speaker-balanced, then uniform over a speaker's utterances."""

    def __init__(self, rows, rng: random.Random):
        self.rng = rng
        self.by = {}
        for i, r in enumerate(rows):
            self.by.setdefault(label_of(r), {}).setdefault(r["speaker"], []).append(i)
        if len(self.by) < 2:
            raise ValueError("training data must hold both genders")
        self.classes = sorted(self.by)

    def draw(self) -> int:
        speakers = self.by[self.rng.choice(self.classes)]
        return self.rng.choice(speakers[self.rng.choice(sorted(speakers))])


def random_band(x: np.ndarray, rng: random.Random) -> np.ndarray:
    """A crop as a narrower channel hands it over: a telephone line (8 kHz, a 250-400 Hz to
    3.0-3.7 kHz band-pass), a 250-400 Hz high-pass (the voice's fundamental gone) or a 3.0-4.2 kHz
    low-pass, one of the three at random (results/gender_bandwidth.md: what each does untrained)."""
    kind = rng.choice(("phone", "high", "low"))
    if kind == "phone":
        return band_limit(x, rng.uniform(250, 400), rng.uniform(3000, 3700), narrow=True)
    if kind == "high":
        return band_limit(x, low_hz=rng.uniform(250, 400))
    return band_limit(x, high_hz=rng.uniform(3000, 4200))


def make_batch(cfg: TrainConfig, audio, labels, sampler, bank, gen: torch.Generator, rng: random.Random):
    """-> (wav, lengths, labels, full): `full` is `wav` without the band limits of `cfg.band_prob`
    (what a teacher hears); the same tensor without `cfg.band_prob`."""
    n = int(rng.uniform(cfg.crop_min, cfg.crop_max) * SAMPLE_RATE)
    wav = torch.zeros(cfg.batch_size, n)
    full = torch.zeros_like(wav) if cfg.band_prob else wav
    lengths = torch.zeros(cfg.batch_size, dtype=torch.long)
    y = torch.zeros(cfg.batch_size, dtype=torch.long)
    for b in range(cfg.batch_size):
        i = sampler.draw()
        a = audio[i]
        start = rng.randint(0, max(0, len(a) - n))
        x = torch.from_numpy(a[start:start + n].copy())
        if rng.random() < cfg.reverb_prob:
            from torchaudio.functional import fftconvolve

            rir = synthetic_rir(rng.uniform(0.2, 0.7), SAMPLE_RATE, gen, "cpu")
            x = fftconvolve(x, rir)[:len(x)]
        if bank is not None and rng.random() < cfg.noise_prob:
            x = mix_at_snr(x, bank.sample(len(x), gen), rng.uniform(cfg.snr_min, cfg.snr_max))
        x = limit_peak(x * 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20))
        if cfg.band_prob:
            full[b, :len(x)] = x
            if rng.random() < cfg.band_prob:
                x = limit_peak(torch.from_numpy(random_band(x.numpy(), rng)))
        wav[b, :len(x)] = x
        lengths[b] = len(x)
        y[b] = labels[i]
    return wav, lengths, y, full


@torch.inference_mode()
def logits_for(model: GenderNet, features: FeatureConfig, audio, batch_size: int = 16) -> torch.Tensor:
    model.eval()
    dev = next(model.parameters()).device
    out = torch.zeros(len(audio), len(model.dims.labels), device=dev)
    for idx, feats, frames in batched_features(audio, features, batch_size, dev):
        out[idx] = model(feats, frames)
    return out


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): one scalar minimising the NLL of held-out logits."""
    logits = logits.detach().clone()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


CALIBRATION_SET = ("adult dev speakers (teen speakers excluded: out of scope), whole utterances and "
                   "1 s centre crops, clean and household noise at 0/5/10 dB")
CALIBRATION_SET_CHILD = ("adult dev speakers, their pitch-raised copies and their synthetic-child copies "
                         "(training/child_voice.py; teen speakers excluded), whole utterances and 1 s centre "
                         "crops, clean and household noise at 0/5/10 dB")


CALIBRATION_SET_HOLDOUT = ("utterances of the train speakers held out of training (--calib-holdout), with "
                           "their pitch-raised and synthetic-child copies (teen speakers excluded), whole and "
                           "1 s centre crops, clean and household noise at 0/5/10 dB; no dev speaker")


def calibration_set(labels: tuple, holdout: bool = False) -> str:
    if holdout:
        return CALIBRATION_SET_HOLDOUT
    return CALIBRATION_SET_CHILD if CHILD in labels else CALIBRATION_SET


def calibrate(model: GenderNet, features: FeatureConfig, rows, audio, bank) -> tuple[float, dict]:
    """Temperature on held-out adult speakers. Whole clean utterances are nearly all right, which
    would push the temperature towards 0; short and noisy crops give the errors it needs."""
    keep = [i for i, r in enumerate(rows) if (r.get("note") or "") != "teen"]
    audio = [audio[i] for i in keep]
    y = torch.tensor([label_of(rows[i], model.dims.labels) for i in keep])
    short = [a[max(0, (len(a) - SAMPLE_RATE) // 2):][:SAMPLE_RATE] for a in audio]
    sets = [audio, short]
    for k, snr in enumerate((0.0, 5.0, 10.0)):
        sets += [noisy_copies(audio, bank, snr, seed=10 + k), noisy_copies(short, bank, snr, seed=20 + k)]
    logits = torch.cat([logits_for(model, features, s).cpu() for s in sets])
    labels = y.repeat(len(sets))
    t = fit_temperature(logits, labels)
    return t, {"temperature": round(t, 4), "items": len(labels),
               "errors": int((logits.argmax(1) != labels).sum()),
               "nll_before": round(float(F.cross_entropy(logits, labels)), 4),
               "nll_after": round(float(F.cross_entropy(logits / t, labels)), 4)}


def recalibrate(release: str, dev: str, noise: str, fraction: float = 0.7) -> dict:
    """Refit the temperature of a saved release folder in place (no retraining)."""
    import json as _json
    from dataclasses import replace

    bundle = load_bundle(release, MODEL_TYPE)
    model, features = bundle.build_model(), bundle.features
    rows = [r for m in ([dev] if isinstance(dev, str) else dev) for r in read_manifest(m)]
    bank = noise_part(NoiseBank(noise, categories=HOUSEHOLD), "test", fraction)
    t, cal = calibrate(model, features, rows, load_utterances(rows), bank)
    calibration = {"method": "temperature", "temperature": t,
                   "fitted_on": CALIBRATION_SET_CHILD if CHILD in model.dims.labels else CALIBRATION_SET}
    save_bundle(release, replace(bundle, calibration=calibration, state=None))   # the weights stay as they are
    print(_json.dumps(cal))
    return cal


# -- training -----------------------------------------------------------------------------------

def init_from(model: GenderNet, release: str) -> None:
    """Copy a release's weights into `model`; head rows go by label, so a 2-class release can seed
    a 3-class model (the new class's row keeps its fresh initialisation). Everything else must match."""
    init = load_bundle(release, MODEL_TYPE)
    state, old = init.state, init.dims
    if {**old.to_dict(), "labels": None} != {**model.dims.to_dict(), "labels": None}:
        raise ValueError(f"--init {release}: dims {old.to_dict()} differ from {model.dims.to_dict()}")
    own = model.state_dict()
    for k, v in state.items():
        if k.startswith("head."):
            for i, name in enumerate(old.labels):
                if name in model.dims.labels:
                    own[k][model.dims.labels.index(name)] = v[i]
        else:
            own[k] = v
    model.load_state_dict(own, strict=True)


def load_teacher(release: str, features: FeatureConfig, device, labels: tuple = LABELS) -> GenderNet:
    """A frozen release for distillation (female/male by default); it must read the same features."""
    bundle = load_bundle(release, MODEL_TYPE)
    if bundle.features != features:
        raise ValueError(f"teacher {release}: its features differ from this model's")
    teacher = bundle.build_model()
    if tuple(teacher.dims.labels) != tuple(labels):
        raise ValueError(f"teacher {release}: labels {teacher.dims.labels}, need {tuple(labels)}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device).eval()


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, adult_idx: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the female-vs-male odds, on the adult items of the batch only:
    learning `child` must not move how adults are split into women and men."""
    adult = (y[:, None] == adult_idx[None]).any(1)
    if not adult.any():
        return logits.new_zeros(())
    s = F.log_softmax(logits[adult][:, adult_idx], dim=-1)
    t = F.softmax(teacher_logits[adult], dim=-1)
    return F.kl_div(s, t, reduction="batchmean")


def train(cfg: TrainConfig) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a", encoding="utf-8")

    def emit(d):
        print(json.dumps(d), flush=True)
        log.write(json.dumps(d) + "\n")
        log.flush()

    train_rows, dev_rows = read_manifest(cfg.train), read_manifest(cfg.dev)
    if cfg.fold:
        k, n = (int(v) for v in cfg.fold.split("/"))
        pool = train_rows + dev_rows
        held = speaker_folds(pool, n)[k]
        train_rows = [r for r in pool if r["speaker"] not in held]
        dev_rows = [r for r in pool if r["speaker"] in held]
    train_rows += [r for m in cfg.extra_train for r in read_manifest(m)]
    dev_rows += [r for m in cfg.extra_dev for r in read_manifest(m)]
    if cfg.exclude_note:
        out_spk = {r.get("source_speaker") or r["speaker"] for r in train_rows + dev_rows
                   if (r.get("note") or "") in cfg.exclude_note}
        train_rows = [r for r in train_rows if (r.get("source_speaker") or r["speaker"]) not in out_spk]
        dev_rows = [r for r in dev_rows if (r.get("source_speaker") or r["speaker"]) not in out_spk]
    labels = labels_for(train_rows)
    calib_rows = []
    if cfg.calib_holdout:
        train_rows, calib_rows = holdout_split(train_rows, cfg.calib_holdout, cfg.seed)
    overlap = {r["speaker"] for r in train_rows} & {r["speaker"] for r in dev_rows}
    if overlap:
        raise ValueError(f"train and dev share speakers {sorted(overlap)}: the split must be by speaker")
    t0 = time.time()
    train_audio = load_utterances(train_rows, cfg.trim_db)
    dev_audio = load_utterances(dev_rows, cfg.trim_db)
    train_y = [label_of(r, labels) for r in train_rows]
    dev_y = torch.tensor([label_of(r, labels) for r in dev_rows])
    bank = noise_part(NoiseBank(cfg.noise), "train", cfg.noise_train_fraction) if cfg.noise else None
    test_bank = noise_part(NoiseBank(cfg.noise, categories=HOUSEHOLD), "test", cfg.noise_train_fraction) if cfg.noise else None
    dev_noisy = noisy_copies(dev_audio, test_bank, 5.0, seed=1)
    emit({"event": "data", "train_utts": len(train_rows), "dev_utts": len(dev_rows), "calib_utts": len(calib_rows),
          "train_speakers": len({r["speaker"] for r in train_rows}),
          "dev_speakers": len({r["speaker"] for r in dev_rows}), "load_s": round(time.time() - t0, 1)})

    dims = GenderDims(n_features=cfg.features.n_features, channels=tuple(cfg.channels), hidden=cfg.hidden,
                      context=cfg.context, dropout=cfg.dropout, labels=labels)
    dev = torch.device(cfg.device)
    model = GenderNet(dims)
    if cfg.init:
        init_from(model, cfg.init)
    model = model.to(dev)
    teacher = load_teacher(cfg.distill, cfg.features, dev) if cfg.distill_weight > 0 else None
    band_teacher = load_teacher(cfg.band_teacher, cfg.features, dev, labels) if cfg.band_teacher_weight > 0 else None
    adult_idx = torch.tensor([labels.index(g) for g in LABELS])
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = Sampler(train_rows, rng)
    budget = cfg.minutes * 60 if cfg.minutes > 0 else None
    start = time.time()
    step, seen = 0, 0.0

    def progress():
        return (time.time() - start) / budget if budget else step / cfg.steps

    def lr_at(p):  # linear warm-up over 5%, cosine decay to 2%
        return cfg.lr * (p / 0.05 if p < 0.05 else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (p - 0.05) / 0.95)))

    def evaluate():
        res = {}
        for name, audio in (("dev_clean", dev_audio), ("dev_5db", dev_noisy)):
            lg = logits_for(model, cfg.features, audio).cpu()
            res[f"{name}_acc"] = round(float((lg.argmax(1) == dev_y).float().mean()), 4)
        model.train()
        return res

    model.train()
    losses = []
    while progress() < 1.0:
        for g in opt.param_groups:
            g["lr"] = lr_at(min(progress(), 1.0))
        wav, lengths, y, full = make_batch(cfg, train_audio, train_y, sampler, bank, gen, rng)
        feats, frames = compute_features(wav.to(dev), cfg.features, lengths.to(dev))
        logits = model(feats, frames)
        loss = F.cross_entropy(logits, y.to(dev), label_smoothing=0.05)
        # teachers hear the full band: a band-limited crop must answer as its full-band self would
        teachers = teacher is not None or band_teacher is not None
        full_feats = compute_features(full.to(dev), cfg.features, lengths.to(dev))[0] if full is not wav and teachers else feats
        if teacher is not None:
            loss = loss + cfg.distill_weight * distill_loss(logits, teacher(full_feats, frames), y.to(dev), adult_idx.to(dev))
        if band_teacher is not None and full is not wav:
            banded = (wav != full).any(1).to(dev)
            if banded.any():
                t = F.softmax(band_teacher(full_feats[banded], frames[banded]), dim=-1)
                loss = loss + cfg.band_teacher_weight * F.kl_div(F.log_softmax(logits[banded], dim=-1), t,
                                                                  reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        seen += float(lengths.sum()) / SAMPLE_RATE
        if step % cfg.eval_every == 0:
            emit({"step": step, "loss": round(float(np.mean(losses)), 4), "lr": round(opt.param_groups[0]["lr"], 6),
                  "audio_h": round(seen / 3600, 2), "elapsed_s": round(time.time() - start, 1), **evaluate()})
            losses = []
    final = evaluate()
    emit({"step": step, "final": True, "elapsed_s": round(time.time() - start, 1), **final})

    if calib_rows:
        temperature, cal = calibrate(model, cfg.features, calib_rows, load_utterances(calib_rows, cfg.trim_db), test_bank)
        cal["fitted_on"] = calibration_set(labels, holdout=True)
    else:
        temperature, cal = calibrate(model, cfg.features, dev_rows, dev_audio, test_bank)
    emit({"event": "calibration", **cal})

    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "config": asdict(cfg), "rng": torch.get_rng_state()}, out / "last.pt")
    config = {
        "model_type": MODEL_TYPE,
        "name": cfg.name or ("gender-child-ko" if CHILD in labels else "gender-ko"),
        "dims": dims.to_dict(),
        "features": cfg.features.to_dict(),
        "calibration": {"method": "temperature", "temperature": temperature,
                        "fitted_on": calibration_set(labels, holdout=bool(calib_rows))},
        "provenance": {
            "data": "emotiontts_open_db SpeechCorpus (Selvas AI / KAIST) via ../shared/data/ko-speech",
            "train_manifest": cfg.train, "dev_manifest": cfg.dev,
            "train_speakers": sorted({r["speaker"] for r in train_rows}),
            "dev_speakers": sorted({r["speaker"] for r in dev_rows}),
            "calibration_utterances": sorted(r["utt"] for r in calib_rows),
            "noise": cfg.noise, "steps": step, "parameters": n_params, "init": cfg.init or None,
            "distill": cfg.distill or None, "band_teacher": cfg.band_teacher or None,
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "features"},
        },
        "license": "CC BY-NC-SA 4.0 (inherited from the training data)",
        "metrics": {"dev": final},
    }
    if cfg.narrowband:
        config["narrowband"] = cfg.narrowband
    if cfg.fold:
        per = {}
        lg = logits_for(model, cfg.features, dev_audio).cpu().argmax(1)
        for r, p, y in zip(dev_rows, lg.tolist(), dev_y.tolist()):
            per.setdefault(r["speaker"], []).append(p == y)
        emit({"event": "fold_speakers", "fold": cfg.fold,
              "accuracy": {s: round(sum(v) / len(v), 4) for s, v in sorted(per.items())}})
        config["provenance"]["fold"] = cfg.fold
    release = save_release(out / "release", model.state_dict(), config)
    emit({"event": "saved", "release": str(release), "parameters": n_params})
    return release


def parse_args(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--noise", default=None, help="noise folder with manifest.tsv (e.g. ../shared/data/noise)")
    p.add_argument("--out", default="runs/gender")
    d = TrainConfig(train="", dev="", noise="x")
    for name in ("hidden", "context", "batch_size", "steps", "eval_every", "seed", "threads"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("dropout", "lr", "weight_decay", "minutes", "crop_min", "crop_max", "noise_prob",
                 "snr_min", "snr_max", "reverb_prob", "gain_db", "noise_train_fraction", "trim_db",
                 "distill_weight", "calib_holdout", "band_prob", "band_teacher_weight"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--channels", type=int, nargs="+", default=list(d.channels))
    p.add_argument("--device", default="cpu")
    p.add_argument("--fold", default="", help="K/N: speaker cross-validation fold (pools train and dev)")
    p.add_argument("--extra-train", nargs="*", default=[], help="more training manifests (e.g. synthetic children)")
    p.add_argument("--extra-dev", nargs="*", default=[], help="more held-out manifests (evaluation, calibration)")
    p.add_argument("--exclude-note", nargs="*", default=[], help="leave out speakers with these notes (e.g. teen)")
    p.add_argument("--init", default="", help="start from a release folder's weights (e.g. checkpoints/gender-ko)")
    p.add_argument("--distill", default="", help="female/male teacher release for --distill-weight (e.g. checkpoints/gender-ko)")
    p.add_argument("--band-teacher", default="",
                   help="release (same labels) whose answers on the full band each --band-prob crop must give "
                        "(e.g. checkpoints/gender-child-ko)")
    p.add_argument("--name", default="", help="the release's name (default: gender-child-ko with a child label, else gender-ko)")
    p.add_argument("--narrowband", default="",
                   help="name of the release this one hands telephone-band audio to (e.g. gender-child-ko-narrowband)")
    a = vars(p.parse_args(argv))
    for k in ("channels", "extra_train", "extra_dev", "exclude_note"):
        a[k] = tuple(a[k])
    return TrainConfig(**a)


if __name__ == "__main__":
    import sys

    if "--recalibrate" in sys.argv:  # python -m training.train_gender --recalibrate RELEASE --dev D --noise N
        a = argparse.ArgumentParser()
        a.add_argument("--recalibrate", required=True)
        a.add_argument("--dev", required=True, nargs="+")
        a.add_argument("--noise", required=True)
        a = a.parse_args()
        recalibrate(a.recalibrate, a.dev, a.noise)
    else:
        train(parse_args())
