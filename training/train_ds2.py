"""Train DeepSpeech2 with CTC on manifests (see training/manifest.py), from scratch.

    python -m training.train_ds2 --train data/ko-speech/train.jsonl --dev data/ko-speech/dev.jsonl \
        --out runs/ds2 --unit jamo --epochs 60

Everything runs in one process per device: the audio is decoded once into memory, and
augmentation (speed perturbation, household noise at random SNRs, SpecAugment) runs on the
training device, so a GPU is never starved by data loading. Multi-GPU (or multi-process CPU with
gloo) through `torchrun --nproc_per_node N -m training.train_ds2 ...` (DDP).

Writes to --out: `train.log` (one JSON line per epoch: loss, dev CER/WER, lr, speed), `last.pt`
(resumable: model, optimizer, scheduler, scaler, step, RNG states; --resume continues it) and
`release/` (safetensors + config.json of the best dev-CER epoch: what `speech` loads).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from speech.audio import SAMPLE_RATE, load_audio
from speech.checkpoint import load_release, save_release
from speech.decoding import greedy_decode
from speech.features import FeatureConfig, compute_features
from speech.metrics import error_counts
from speech.models.deepspeech2 import DeepSpeech2, DS2Dims
from speech.text import JamoTokenizer, build_syllable_tokenizer, tokenizer_from_dict
from training.manifest import read_manifest
from training.noise import NoiseBank, mix_at_snr, synthetic_rir


@dataclass(frozen=True)
class AugmentConfig:
    speed: tuple = (0.9, 1.0, 1.1)          # speed perturbation factors, one drawn per utterance
    noise_dir: Optional[str] = None         # folder with manifest.tsv (path, category, ...) of noise
    noise_prob: float = 0.6                 # share of utterances mixed with noise
    snr_min: float = 0.0
    snr_max: float = 20.0
    reverb_prob: float = 0.0                # share given a synthetic room impulse response
    freq_masks: int = 2
    freq_mask_width: int = 15
    time_masks: int = 4
    time_mask_ratio: float = 0.05           # each time mask is at most this share of the utterance
    gain_db: float = 6.0                    # random gain +-


@dataclass(frozen=True)
class TrainConfig:
    train: str
    dev: str
    out: str = "runs/ds2"
    unit: str = "jamo"                      # "jamo" or "syllable"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    frontend: str = "light"
    conv_channels: int = 32
    rnn_type: str = "gru"
    rnn_hidden: int = 320
    rnn_layers: int = 4
    bidirectional: bool = True
    lookahead: int = 0
    dropout: float = 0.15
    optimizer: str = "adamw"                # "adamw" or "sgd"
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    epochs: int = 30
    max_steps: int = 0                      # stop after this many steps (0 = no limit; for tests)
    max_minutes: float = 0.0                # wall-clock budget; the LR schedule spans it (0 = none)
    batch_seconds: float = 160.0            # audio seconds per batch (length bucketing)
    grad_clip: float = 5.0
    amp: bool = True                        # mixed precision (float16 + GradScaler) on CUDA
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    max_duration: float = 20.0
    seed: int = 1234
    device: str = "auto"
    threads: int = 0                        # CPU threads (0 = torch's default)
    eval_every: int = 1                     # epochs between dev evaluations
    save_dtype: str = "float16"             # release weights dtype ("float16" halves the size)
    name: str = "ds2-ko"
    resume: bool = False
    init_from: Optional[str] = None         # release folder to start from (same dimensions and tokenizer)

    def __post_init__(self):
        if self.unit not in ("jamo", "syllable"):
            raise ValueError(f"--unit must be jamo or syllable, got {self.unit!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"--optimizer must be adamw or sgd, got {self.optimizer!r}")
        if self.bidirectional and self.lookahead:
            raise ValueError("--lookahead needs --unidirectional")
        if self.batch_seconds < self.max_duration:
            raise ValueError("--batch-seconds must be at least --max-duration (one utterance per batch)")
        if not 0 <= self.augment.noise_prob <= 1:
            raise ValueError("--noise-prob must be within [0, 1]")
        if self.augment.noise_prob > 0 and self.augment.noise_dir and not Path(self.augment.noise_dir).is_dir():
            raise ValueError(f"--noise-dir {self.augment.noise_dir} is not a folder")

    def dims(self, n_tokens: int) -> DS2Dims:
        return DS2Dims(n_features=self.features.n_features, n_tokens=n_tokens, frontend=self.frontend,
                       conv_channels=self.conv_channels, rnn_type=self.rnn_type, rnn_hidden=self.rnn_hidden,
                       rnn_layers=self.rnn_layers, bidirectional=self.bidirectional,
                       lookahead=self.lookahead, dropout=self.dropout)


def parse_args(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training manifest (JSONL)")
    p.add_argument("--dev", required=True, help="dev manifest (JSONL)")
    p.add_argument("--out", default="runs/ds2")
    p.add_argument("--name", default="ds2-ko", help="model name written into the release config")
    p.add_argument("--unit", default="jamo", choices=["jamo", "syllable"])
    p.add_argument("--feature-kind", default="logmel", choices=["logmel", "linear"])
    p.add_argument("--n-mels", type=int, default=80)
    p.add_argument("--frontend", default="light", choices=["light", "ds2"])
    p.add_argument("--conv-channels", type=int, default=32)
    p.add_argument("--rnn-type", default="gru", choices=["gru", "lstm"])
    p.add_argument("--rnn-hidden", type=int, default=320)
    p.add_argument("--rnn-layers", type=int, default=4)
    p.add_argument("--unidirectional", action="store_true")
    p.add_argument("--lookahead", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.15)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-steps", type=int, default=300)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop after this much training time; the LR schedule is stretched over it")
    p.add_argument("--batch-seconds", type=float, default=160.0)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--speed", default="0.9,1.0,1.1", help="speed factors, comma-separated ('1' disables)")
    p.add_argument("--noise-dir", default=None, help="noise folder with manifest.tsv (e.g. ../shared/data/noise)")
    p.add_argument("--noise-prob", type=float, default=0.6)
    p.add_argument("--snr", default="0,20", help="SNR range in dB for noise mixing, 'min,max'")
    p.add_argument("--reverb-prob", type=float, default=0.0)
    p.add_argument("--freq-masks", type=int, default=2)
    p.add_argument("--time-masks", type=int, default=4)
    p.add_argument("--max-duration", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--save-dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init-from", default=None, help="release folder whose weights start the training")
    a = p.parse_args(argv)
    snr = [float(x) for x in a.snr.split(",")]
    if len(snr) != 2 or snr[0] > snr[1]:
        p.error("--snr must be 'min,max' with min <= max")
    aug = AugmentConfig(speed=tuple(float(x) for x in a.speed.split(",")), noise_dir=a.noise_dir,
                        noise_prob=a.noise_prob if a.noise_dir else 0.0, snr_min=snr[0], snr_max=snr[1],
                        reverb_prob=a.reverb_prob, freq_masks=a.freq_masks, time_masks=a.time_masks)
    feats = FeatureConfig(kind=a.feature_kind, n_mels=a.n_mels)
    try:
        return TrainConfig(train=a.train, dev=a.dev, out=a.out, name=a.name, unit=a.unit, features=feats,
                           frontend=a.frontend, conv_channels=a.conv_channels, rnn_type=a.rnn_type,
                           rnn_hidden=a.rnn_hidden, rnn_layers=a.rnn_layers, bidirectional=not a.unidirectional,
                           lookahead=a.lookahead, dropout=a.dropout, optimizer=a.optimizer, lr=a.lr,
                           weight_decay=a.weight_decay, warmup_steps=a.warmup_steps, epochs=a.epochs,
                           max_steps=a.max_steps, max_minutes=a.max_minutes, batch_seconds=a.batch_seconds, grad_clip=a.grad_clip,
                           amp=not a.no_amp, augment=aug, max_duration=a.max_duration, seed=a.seed,
                           device=a.device, threads=a.threads, eval_every=a.eval_every,
                           save_dtype=a.save_dtype, resume=a.resume, init_from=a.init_from)
    except ValueError as e:
        p.error(str(e))


# ---------------------------------------------------------------------------------------------
# Data: everything in memory as int16, batches bucketed by length.

class AudioSet:
    def __init__(self, rows: list[dict], tokenizer, max_duration: float):
        kept = [r for r in rows if r["duration"] <= max_duration and r["text"].strip()]
        self.rows, self.audio, self.targets = [], [], []
        for r in kept:
            ids = tokenizer.encode(r["text"])
            if not ids:
                continue
            a = load_audio(r["audio"], check=False)
            self.rows.append(r)
            self.audio.append(torch.from_numpy((np.clip(a, -1, 1) * 32767).astype(np.int16)))
            self.targets.append(torch.tensor(ids, dtype=torch.long))
        self.seconds = sum(len(a) for a in self.audio) / SAMPLE_RATE

    def __len__(self):
        return len(self.audio)

    def batches(self, batch_seconds: float, rng: Optional[np.random.Generator]) -> list[list[int]]:
        """Indices grouped by similar length, each group at most batch_seconds of audio."""
        lengths = np.array([len(a) for a in self.audio])
        order = np.argsort(lengths, kind="stable")
        if rng is not None:  # shuffle within similar lengths so batches differ between epochs
            noise = rng.uniform(0.9, 1.1, size=len(lengths))
            order = np.argsort(lengths * noise, kind="stable")
        out, cur, longest = [], [], 0
        for i in order:
            longest2 = max(longest, lengths[i])
            if cur and longest2 * (len(cur) + 1) > batch_seconds * SAMPLE_RATE:
                out.append(cur)
                cur, longest2 = [], lengths[i]
            cur.append(int(i))
            longest = longest2
        if cur:
            out.append(cur)
        if rng is not None:
            rng.shuffle(out)
        return out


class Augmenter:
    def __init__(self, cfg: AugmentConfig, device, seed: int):
        self.cfg = cfg
        self.device = device
        self.gen = torch.Generator().manual_seed(seed)
        self.noise = NoiseBank(cfg.noise_dir, device) if cfg.noise_dir and cfg.noise_prob > 0 else None

    def _u(self) -> float:
        return float(torch.rand((), generator=self.gen))

    def waveform(self, wav: torch.Tensor) -> torch.Tensor:
        import torchaudio.functional as AF

        c = self.cfg
        if len(c.speed) > 1 or c.speed[0] != 1.0:
            f = c.speed[int(torch.randint(len(c.speed), (1,), generator=self.gen))]
            if f != 1.0:  # play `f` times faster: treat as recorded at f*sr, resample to sr
                wav = AF.resample(wav, int(round(SAMPLE_RATE * f)), SAMPLE_RATE)
        if c.reverb_prob and self._u() < c.reverb_prob:
            rir = synthetic_rir(0.2 + 0.6 * self._u(), SAMPLE_RATE, self.gen, wav.device)
            wav = AF.fftconvolve(wav, rir)[: len(wav)]
        if self.noise is not None and self._u() < c.noise_prob:
            snr = c.snr_min + (c.snr_max - c.snr_min) * self._u()
            wav = mix_at_snr(wav, self.noise.sample(len(wav), self.gen), snr)
        if c.gain_db:
            wav = wav * 10 ** ((2 * self._u() - 1) * c.gain_db / 20)
        return wav

    def spec(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """SpecAugment on (B, T, F): frequency and time masks set to 0 (the normalised mean)."""
        c = self.cfg
        b, t, nf = feats.shape
        feats = feats.clone()
        for i in range(b):
            for _ in range(c.freq_masks):
                w = int(torch.randint(c.freq_mask_width + 1, (1,), generator=self.gen))
                f0 = int(torch.randint(max(1, nf - w), (1,), generator=self.gen))
                feats[i, :, f0:f0 + w] = 0
            L = int(lengths[i])
            max_w = max(1, int(L * c.time_mask_ratio))
            for _ in range(c.time_masks):
                w = int(torch.randint(max_w + 1, (1,), generator=self.gen))
                t0 = int(torch.randint(max(1, L - w), (1,), generator=self.gen))
                feats[i, t0:t0 + w, :] = 0
        return feats


# ---------------------------------------------------------------------------------------------

def make_batch(ds: AudioSet, idx: list[int], device, aug: Optional[Augmenter], fcfg: FeatureConfig):
    wavs = [ds.audio[i].to(device, non_blocking=True).float() / 32768.0 for i in idx]
    if aug is not None:
        wavs = [aug.waveform(w) for w in wavs]
    lengths = torch.tensor([len(w) for w in wavs], device=device)
    wav = torch.zeros(len(wavs), int(lengths.max()), device=device)
    for row, w in enumerate(wavs):
        wav[row, :len(w)] = w
    feats, frames = compute_features(wav, fcfg, lengths)
    if aug is not None:
        feats = aug.spec(feats, frames)
    targets = [ds.targets[i] for i in idx]
    tgt_len = torch.tensor([len(t) for t in targets])
    return feats, frames, torch.cat(targets), tgt_len


@torch.no_grad()
def evaluate(model, ds: AudioSet, tokenizer, fcfg, device, batch_seconds: float, amp_dtype) -> dict:
    model.eval()
    refs, hyps, loss_sum, n = [], [], 0.0, 0
    for idx in ds.batches(batch_seconds, rng=None):
        feats, frames, targets, tgt_len = make_batch(ds, idx, device, None, fcfg)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            lp, out_len = model(feats, frames)
        loss = F.ctc_loss(lp.float().transpose(0, 1), targets, out_len.cpu(), tgt_len, blank=0,
                          reduction="sum", zero_infinity=True)
        loss_sum += float(loss)
        n += len(idx)
        lp = lp.float().cpu()
        for row, i in enumerate(idx):
            hyp = greedy_decode(lp[row, :out_len[row]])
            hyps.append(tokenizer.decode(hyp.ids))
            refs.append(ds.rows[i]["text"])
    c = error_counts(refs, hyps)
    model.train()
    return {"dev_loss": loss_sum / max(1, n), "dev_cer": c["char_errors"] / max(1, c["chars"]),
            "dev_wer": c["word_errors"] / max(1, c["words"]), "examples": list(zip(refs[:3], hyps[:3]))}


def lr_at(step: int, total: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak over the steps or the time budget,
    whichever runs out first."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = max((step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps), time_fraction)
    p = min(1.0, p)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def rng_state(np_rng: np.random.Generator, aug: Augmenter) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state,
             "aug": aug.gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def release_config(cfg: TrainConfig, dims: DS2Dims, tokenizer, metrics: dict, train_ds: AudioSet,
                   dev_ds: AudioSet, step: int, epoch: int, n_params: int, command: str) -> dict:
    return {
        "model_type": "deepspeech2",
        "name": cfg.name,
        "dims": dims.to_dict(),
        "features": cfg.features.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "parameters": n_params,
        "training": {"config": to_jsonable(asdict(cfg)), "step": step, "epoch": epoch,
                     "train_utterances": len(train_ds), "train_hours": round(train_ds.seconds / 3600, 3),
                     "dev_utterances": len(dev_ds), "dev_hours": round(dev_ds.seconds / 3600, 3),
                     "command": command},
        "metrics": metrics,
        "license": "CC-BY-NC-SA-4.0",
        "data": "emotiontts_open_db SpeechCorpus (Selvas AI / KAIST), CC BY-NC-SA 4.0; noise: see shared/data/noise",
    }


def launch_command(world: int, argv: list[str]) -> str:
    """How this run was started, for the release's record (torchrun under DDP)."""
    args = " ".join(argv)
    if world == 1:
        return f"python -m training.train_ds2 {args}"
    omp = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    return f"{omp}torchrun --standalone --nproc_per_node {world} -m training.train_ds2 {args}"


def to_jsonable(x):
    if isinstance(x, dict):
        return {k: to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    return x


def main(argv=None):
    cfg = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank, world = 0, 1
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    command = launch_command(world, sys.argv[1:] if argv is None else list(argv))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    np_rng = np.random.default_rng(cfg.seed)  # same on every rank: identical batch plans
    out = Path(cfg.out)
    main_proc = rank == 0
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        if main_proc:
            print(msg, flush=True)

    train_rows, dev_rows = read_manifest(cfg.train), read_manifest(cfg.dev)
    init_state = None
    if cfg.init_from:
        init_state, init_config = load_release(cfg.init_from, expected_type="deepspeech2")
        tokenizer = tokenizer_from_dict(init_config["tokenizer"])
        if tokenizer.unit != cfg.unit or init_config["features"] != cfg.features.to_dict():
            raise SystemExit(f"--init-from {cfg.init_from}: its tokenizer unit or features differ from this run's")
    elif cfg.unit == "jamo":
        tokenizer = JamoTokenizer()
    else:
        tokenizer = build_syllable_tokenizer(r["text"] for r in train_rows)
    t0 = time.time()
    train_ds = AudioSet(train_rows, tokenizer, cfg.max_duration)
    dev_ds = AudioSet(dev_rows, tokenizer, float("inf"))
    log(f"data: train {len(train_ds)} utts {train_ds.seconds / 60:.1f} min, dev {len(dev_ds)} utts "
        f"{dev_ds.seconds / 60:.1f} min, loaded in {time.time() - t0:.0f}s; {len(tokenizer)} {cfg.unit} tokens")

    if device.type == "cuda":  # about 2 MB a minute of int16 audio: keep it all on the GPU
        train_ds.audio = [a.to(device) for a in train_ds.audio]
        dev_ds.audio = [a.to(device) for a in dev_ds.audio]
    dims = cfg.dims(len(tokenizer))
    model = DeepSpeech2(dims)
    if init_state is not None:
        model.load_state_dict(init_state, strict=True)
        log(f"initialised from {cfg.init_from}")
    model = model.to(device)
    n_params = model.num_parameters()
    log(f"model: {n_params / 1e6:.2f}M parameters, {dims}")
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.float16 if use_amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    aug = Augmenter(cfg.augment, device, cfg.seed + 7919 * rank)

    # Every rank takes the same number of batches, or DDP's all-reduce would wait forever.
    steps_per_epoch = max(1, len(train_ds.batches(cfg.batch_seconds, None)) // world)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    step, start_epoch, best = 0, 0, {"dev_cer": float("inf")}
    if cfg.resume and (out / "last.pt").exists():
        ck = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        step, start_epoch, best = ck["step"], ck["epoch"] + 1, ck["best"]
        torch.set_rng_state(ck["rng"]["torch"].cpu())
        np_rng.bit_generator.state = ck["rng"]["numpy"]
        aug.gen.set_state(ck["rng"]["aug"].cpu())
        log(f"resumed from {out / 'last.pt'} at epoch {start_epoch}, step {step}")

    budget = cfg.max_minutes * 60
    t_train = time.time()

    def time_fraction() -> float:
        """Share of the time budget spent. Under DDP all ranks take the largest clock, so they stop
        at the same step and set the same learning rate."""
        if not budget:
            return 0.0
        f = (time.time() - t_train) / budget
        if distributed:
            t = torch.tensor([f], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            f = float(t)
        return f

    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch, seen, loss_sum, n_batches = time.time(), 0.0, 0.0, 0
        plan = train_ds.batches(cfg.batch_seconds, np_rng)
        # Every rank must take exactly steps_per_epoch steps (DDP's all-reduce waits for all), also
        # when this epoch's plan is shorter (e.g. fewer batches than processes): reuse batches.
        need = world * steps_per_epoch
        if world > 1 and len(plan) < need:
            plan = (plan * (need // len(plan) + 1))[:need]
        plan = plan[rank::world][:steps_per_epoch]
        try:
            from tqdm import tqdm
            bar = tqdm(plan, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not main_proc or not sys.stderr.isatty())
        except ImportError:
            bar = plan
        for idx in bar:
            frac = time_fraction()
            # An epoch that starts takes at least one step (the budget may overrun by that step),
            # so no epoch is empty and the last one logged is the last one trained and evaluated.
            if (cfg.max_steps and step >= cfg.max_steps) or (frac >= 1.0 and n_batches):
                break
            feats, frames, targets, tgt_len = make_batch(train_ds, idx, device, aug, cfg.features)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, cfg, frac)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                lp, out_len = ddp_model(feats, frames)
            loss = F.ctc_loss(lp.float().transpose(0, 1), targets.to(device), out_len, tgt_len.to(device),
                              blank=0, reduction="sum", zero_infinity=True) / len(idx)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            n_batches += 1
            loss_sum += float(loss.detach())
            seen += float(frames.sum()) * cfg.features.frame_shift
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / n_batches:.3f}")
        elapsed = time.time() - t_epoch
        frac = time_fraction()
        record = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(1, n_batches),
                  "lr": lr_at(step, total_steps, cfg, frac), "audio_sec_per_sec": seen * world / max(elapsed, 1e-9),
                  "epoch_seconds": round(elapsed, 1)}
        last_epoch = (epoch + 1 == cfg.epochs or (cfg.max_steps and step >= cfg.max_steps)
                      or frac >= 1.0)
        if main_proc and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
            ev = evaluate(model, dev_ds, tokenizer, cfg.features, device, cfg.batch_seconds, amp_dtype)
            record.update({k: v for k, v in ev.items() if k != "examples"})
            log(f"epoch {epoch + 1}: loss {record['train_loss']:.3f} dev_loss {ev['dev_loss']:.2f} "
                f"dev CER {ev['dev_cer']:.3f} WER {ev['dev_wer']:.3f} | {record['audio_sec_per_sec']:.0f} audio s/s"
                f" | {ev['examples'][0][0]} => {ev['examples'][0][1]}")
            if ev["dev_cer"] < best["dev_cer"]:
                best = {"dev_cer": ev["dev_cer"], "dev_wer": ev["dev_wer"], "epoch": epoch + 1, "step": step}
                metrics = {"dev_cer_greedy": round(ev["dev_cer"], 4), "dev_wer_greedy": round(ev["dev_wer"], 4)}
                save_release(out / "release", model.state_dict(),
                             release_config(cfg, dims, tokenizer, metrics, train_ds, dev_ds, step, epoch + 1, n_params, command),
                             dtype=torch.float16 if cfg.save_dtype == "float16" else None)
        if main_proc:
            with open(out / "train.log", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                        "step": step, "epoch": epoch, "best": best, "config": to_jsonable(asdict(cfg)),
                        "rng": rng_state(np_rng, aug)}, out / "last.pt.tmp")
            os.replace(out / "last.pt.tmp", out / "last.pt")
        if last_epoch:
            break
    log(f"best dev CER {best['dev_cer']:.4f} at epoch {best.get('epoch')}; release in {out / 'release'}")
    if distributed:
        dist.destroy_process_group()
    return best


if __name__ == "__main__":
    main()
