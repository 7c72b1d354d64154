"""Train DeepSpeech2 with CTC on manifests (see training/manifest.py), from scratch.

    python -m training.train_ds2 --train data/ko-speech/train.jsonl --dev data/ko-speech/dev.jsonl \
        --out runs/ds2 --unit jamo --epochs 60
    python -m training.train_ds2 --preset study ...          # 5 x BiLSTM-1024, deepspeech.pytorch's size

Input pipeline (training/data.py): DataLoader workers decode, resample and augment (speed
perturbation, room reverberation, household noise at random SNRs, gain); batches are bucketed by
the manifest's durations, so starting needs no pass over the audio and a 1,000-hour manifest costs
tens of MB. Features and SpecAugment run on the training device. Multi-GPU (or multi-process CPU
with gloo) through `torchrun --nproc_per_node N -m training.train_ds2 ...` (DDP); every rank takes
its share of the same batch plan.

Stopping (training.stopping.StopCondition, the one place that decides): the first of --epochs,
--max-steps, --max-minutes (training time, counted over resumes) and --patience dev evaluations
without a better dev CER. The cosine LR schedule spans the steps or the time budget, so a resumed
run continues it where it was; --resume also restores the torch, CUDA, numpy and Python RNGs.

Writes to --out: `train.log` (one JSON line per epoch: loss, dev CER/WER, lr, speed), `last.pt`
(resumable: model, optimizer, scaler, step, epoch and batch within it, training time spent, RNG
states; written at each epoch's end and every --save-every steps; --resume continues from the next
batch) and `release/` (safetensors + config.json of the best dev-CER epoch: what `speech` loads).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from speech.bundle import load_bundle, save_release
from speech.decoding import greedy_decode
from speech.features import FeatureConfig, compute_features
from speech.import_deepspeech import feature_config as study_features
from speech.metrics import error_counts, rate, rates
from speech.models.deepspeech2 import DeepSpeech2, DS2Dims
from speech.text import JamoTokenizer, build_syllable_tokenizer
from training.data import (AugmentConfig, Batch, BucketBatchSampler, CompactManifest, SpeechDataset, loader,
                           spec_augment)
from training.distill import StatesStudent, load_teacher
from training.flags import add_flags, flag
from training.stopping import StopCondition, rng_state, set_rng_state

# Model sizes a recipe can name. "small" is the shipped ds2-ko's family; "study" is
# deepspeech.pytorch's default (5 x bidirectional LSTM-1024 on the study's 161-bin spectrogram).
PRESETS = {
    "small": {"frontend": "light", "conv_channels": 32, "rnn_type": "gru", "rnn_hidden": 320, "rnn_layers": 4},
    "study": {"frontend": "ds2", "conv_channels": 32, "rnn_type": "lstm", "rnn_hidden": 1024, "rnn_layers": 5,
              "features": study_features({})},
}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; the flags are generated from it (training.flags), defaults live here."""
    train: str = flag(MISSING, "training manifest (JSONL)")
    dev: str = flag(MISSING, "dev manifest (JSONL)")
    out: str = "runs/ds2"
    unit: str = flag("jamo", choices=["jamo", "syllable"])
    features: FeatureConfig = field(default_factory=FeatureConfig)
    frontend: str = flag("light", choices=["light", "ds2"], preset=True)
    conv_channels: int = flag(32, preset=True)
    rnn_type: str = flag("gru", choices=["gru", "lstm"], preset=True)
    rnn_hidden: int = flag(320, preset=True)
    rnn_layers: int = flag(4, preset=True)
    bidirectional: bool = flag(True, name="--unidirectional")
    lookahead: int = 0
    dropout: float = 0.15
    optimizer: str = flag("adamw", choices=["adamw", "sgd"])
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    epochs: int = 30
    max_steps: int = flag(0, "stop after this many steps (0 = no limit)")
    max_minutes: float = flag(0.0, "stop after this much training time (over resumes); the LR schedule "
                                   "is stretched over it")
    patience: int = flag(0, "stop after this many dev evaluations without a better dev CER (0 = never)")
    batch_seconds: float = flag(160.0, "audio seconds per batch (length bucketing)")
    grad_clip: float = 5.0
    amp: bool = flag(True, "mixed precision on CUDA: bfloat16 where supported, else float16 + GradScaler",
                     name="--no-amp")
    compile: bool = flag(False, "torch.compile the model (CUDA; measure before turning on)")
    workers: int = flag(2, "DataLoader worker processes per rank (0 = in the training process)")
    save_every: int = flag(0, "steps between mid-epoch checkpoints (0 = at epoch ends only)")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    max_duration: float = 20.0
    seed: int = 1234
    device: str = "auto"
    threads: int = flag(0, "CPU threads (0 = torch's default)")
    eval_every: int = flag(1, "epochs between dev evaluations")
    save_dtype: str = flag("float16", "release weights dtype (float16 halves the size)",
                           choices=["float16", "float32"])
    name: str = flag("ds2-ko", "model name written into the release config")
    resume: bool = flag(False, "continue from OUT/last.pt")
    init_from: Optional[str] = flag(None, "release folder whose weights start the training "
                                          "(same dimensions and tokenizer)")
    teacher: Optional[str] = flag(None, "teacher to distil from: top-k posteriors (training.whisper_teacher "
                                        "posteriors) or Whisper encoder states (training.whisper_teacher states)")
    kd_weight: float = flag(1.0, "weight of the teacher loss beside the CTC loss (with --teacher)")
    kd_temperature: float = flag(1.0, "temperature applied to the teacher's log-probabilities (with --teacher)")

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
        if self.workers < 0 or self.save_every < 0:
            raise ValueError("--workers and --save-every must be >= 0")
        if self.teacher and (self.kd_weight < 0 or self.kd_temperature <= 0):
            raise ValueError("--kd-weight must be >= 0 and --kd-temperature > 0")

    def dims(self, n_tokens: int) -> DS2Dims:
        return DS2Dims(n_features=self.features.n_features, n_tokens=n_tokens, frontend=self.frontend,
                       conv_channels=self.conv_channels, rnn_type=self.rnn_type, rnn_hidden=self.rnn_hidden,
                       rnn_layers=self.rnn_layers, bidirectional=self.bidirectional,
                       lookahead=self.lookahead, dropout=self.dropout)


# Augmentation flags: generated from AugmentConfig, except the two that take lists.
AUGMENT_SPECIAL = ("speed", "snr_min", "snr_max")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, TrainConfig)
    p.add_argument("--preset", default="small", choices=sorted(PRESETS),
                   help="model size and features; the flags above override it")
    p.add_argument("--feature-kind", default=None, choices=["logmel", "linear"])
    p.add_argument("--n-mels", type=int, default=None)
    aug = AugmentConfig()
    add_flags(p, AugmentConfig, skip=AUGMENT_SPECIAL)
    p.add_argument("--speed", default=",".join(map(str, aug.speed)),
                   help="speed factors, comma-separated ('1' disables)")
    p.add_argument("--snr", default=f"{aug.snr_min:g},{aug.snr_max:g}",
                   help="SNR range in dB for noise mixing, 'min,max'")
    return p


def parse_args(argv=None) -> TrainConfig:
    p = build_parser()
    a = vars(p.parse_args(argv))
    snr = [float(x) for x in a.pop("snr").split(",")]
    if len(snr) != 2 or snr[0] > snr[1]:
        p.error("--snr must be 'min,max' with min <= max")
    aug = {f.name: a.pop(f.name) for f in fields(AugmentConfig) if f.name not in AUGMENT_SPECIAL}
    aug.update(speed=tuple(float(x) for x in a.pop("speed").split(",")), snr_min=snr[0], snr_max=snr[1])
    if not aug["noise_dir"]:
        aug["noise_prob"] = 0.0
    model = dict(PRESETS[a.pop("preset")])
    feats = model.pop("features", FeatureConfig())
    kind, n_mels = a.pop("feature_kind"), a.pop("n_mels")
    if kind or n_mels:
        feats = replace(feats, **{k: v for k, v in (("kind", kind), ("n_mels", n_mels)) if v})
    for k in (f.name for f in fields(TrainConfig) if f.metadata.get("preset")):
        v = a.pop(k)  # a flag given overrides the preset; neither: the dataclass default
        if v is not None or k in model:
            a[k] = v if v is not None else model[k]
    try:
        return TrainConfig(**a, features=feats, augment=AugmentConfig(**aug))
    except ValueError as e:
        p.error(str(e))


# ---------------------------------------------------------------------------------------------

def device_batch(batch: Batch, device, fcfg: FeatureConfig, aug: Optional[AugmentConfig]):
    """A collated batch -> (features, frames, targets, target lengths) on the device."""
    wav = batch.wav.to(device, non_blocking=True)
    feats, _ = compute_features(wav, fcfg, batch.lengths.to(device, non_blocking=True))
    # the frame counts compute_features uses, computed on the CPU: the model packs its RNN input with
    # them without waiting for the device
    frames = fcfg.num_frames(batch.lengths).clamp(min=1, max=feats.shape[1])
    if aug is not None:
        feats = spec_augment(feats, frames, aug, torch.Generator().manual_seed(batch.seed))
    return feats, frames, batch.targets.to(device, non_blocking=True), batch.target_lengths


@torch.no_grad()
def evaluate(model, data, tokenizer, fcfg, device, amp_dtype) -> dict:
    model.eval()
    refs, hyps, loss_sum, n = [], [], 0.0, 0
    for batch in data:
        feats, frames, targets, tgt_len = device_batch(batch, device, fcfg, None)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            lp, out_len = model(feats, frames)
        loss = F.ctc_loss(lp.float().transpose(0, 1), targets, out_len, tgt_len.to(device), blank=0,
                          reduction="sum", zero_infinity=True)
        loss_sum += float(loss)
        n += len(batch.index)
        lp, out_len = lp.float().cpu(), out_len.cpu()
        for row, i in enumerate(batch.index.tolist()):
            hyps.append(tokenizer.decode(greedy_decode(lp[row, :out_len[row]]).ids))
            refs.append(data.dataset.manifest.text(i))
    r = rates(error_counts(refs, hyps))
    model.train()
    return {"dev_loss": rate(loss_sum, n), "dev_cer": r["cer"], "dev_wer": r["wer"],
            "examples": list(zip(refs[:3], hyps[:3]))}


def lr_at(step: int, total: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak over the steps or the time budget,
    whichever runs out first."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = max((step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps), time_fraction)
    p = min(1.0, p)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def release_config(cfg: TrainConfig, dims: DS2Dims, tokenizer, metrics: dict, train_ds: CompactManifest,
                   dev_ds: CompactManifest, step: int, epoch: int, n_params: int, command: str) -> dict:
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


def save_checkpoint(path: Path, model, opt, scaler, step: int, epoch: int, batch: int, trained_seconds: float,
                    best: dict, cfg: TrainConfig, stop: Optional[StopCondition] = None, projection=None) -> None:
    """`epoch` (0-based) and `batch`: where the run stands (batches of that epoch done on this rank);
    `projection`: a states teacher's projection (trained with the model, never released)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                "step": step, "epoch": epoch, "batch": batch, "trained_seconds": trained_seconds, "best": best,
                "stop": stop.state_dict() if stop else None,
                "config": to_jsonable(asdict(cfg)), "rng": rng_state(),
                **({"kd_projection": projection.state_dict()} if projection is not None else {})}, tmp)
    os.replace(tmp, path)


def main(argv=None):
    t_launch = time.time()
    cfg = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank, world = 0, 1
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    clock_group = None
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
            clock_group = dist.new_group(backend="gloo")  # the budget clock is all-reduced without a GPU sync
    command = launch_command(world, sys.argv[1:] if argv is None else list(argv))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    out = Path(cfg.out)
    main_proc = rank == 0
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        if main_proc:
            print(msg, flush=True)

    t0 = time.time()
    train_set = CompactManifest.read(cfg.train, cfg.max_duration)
    dev_set = CompactManifest.read(cfg.dev)
    init_state = None
    if cfg.init_from:
        init = load_bundle(cfg.init_from, "deepspeech2")
        init_state, tokenizer = init.state, init.tokenizer
        if tokenizer.unit != cfg.unit or init.features != cfg.features:
            raise SystemExit(f"--init-from {cfg.init_from}: its tokenizer unit or features differ from this run's")
    elif cfg.unit == "jamo":
        tokenizer = JamoTokenizer()
    else:
        tokenizer = build_syllable_tokenizer(train_set.text(i) for i in range(len(train_set)))
    log(f"data: train {len(train_set)} utts {train_set.seconds / 3600:.2f} h, dev {len(dev_set)} utts "
        f"{dev_set.seconds / 60:.1f} min, manifests read in {time.time() - t0:.1f}s "
        f"({(train_set.nbytes() + dev_set.nbytes()) / 2**20:.0f} MB); {len(tokenizer)} {cfg.unit} tokens")

    dims = cfg.dims(len(tokenizer))
    model = DeepSpeech2(dims)
    if init_state is not None:
        model.load_state_dict(init_state, strict=True)
        log(f"initialised from {cfg.init_from}")
    model = model.to(device)
    n_params = model.num_parameters()
    log(f"model: {n_params / 1e6:.2f}M parameters, {dims}")
    teacher = None
    net = model                 # what trains: the model, or with a states teacher the model and its projection
    if cfg.teacher:
        teacher = load_teacher(cfg.teacher, [train_set.audio(i) for i in range(len(train_set))])
        if teacher.needs_hidden:
            net = StatesStudent(model, teacher.dim).to(device)
        log(f"teacher: {cfg.teacher} ({teacher.describe()}), weight {cfg.kd_weight:g}, temperature {cfg.kd_temperature:g}")
    fwd = torch.compile(net) if cfg.compile else net
    ddp_model = torch.nn.parallel.DistributedDataParallel(fwd) if distributed else fwd
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if use_amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    pin = device.type == "cuda"
    sampler = BucketBatchSampler(train_set.durations, cfg.batch_seconds, seed=cfg.seed, rank=rank, world=world)
    train_loader = loader(SpeechDataset(train_set, tokenizer, cfg.augment), sampler, cfg.workers, pin)
    dev_sampler = BucketBatchSampler(dev_set.durations, max(cfg.batch_seconds, float(dev_set.durations.max())),
                                     shuffle=False)
    dev_loader = loader(SpeechDataset(dev_set, tokenizer), dev_sampler, min(cfg.workers, 1), pin)

    steps_per_epoch = len(sampler)
    # The one stop condition; with the training clock (`spent`, restored on resume) it also sets
    # the LR schedule's horizon, so a resumed run follows the schedule of an uninterrupted one.
    stop = StopCondition(max_steps=cfg.max_steps, epochs=cfg.epochs, budget_seconds=cfg.max_minutes * 60,
                         patience=cfg.patience)
    total_steps = stop.schedule_steps(steps_per_epoch)
    step, epoch0, batch0, spent, best = 0, 0, 0, 0.0, {"dev_cer": float("inf")}
    if cfg.resume and (out / "last.pt").exists():
        ck = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        if "kd_projection" in ck and net is not model:
            net.proj.load_state_dict(ck["kd_projection"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        step, epoch0, best = ck["step"], ck["epoch"], ck["best"]
        stop.load_state_dict(ck.get("stop") or {"stale": 0, "best": best["dev_cer"]})
        batch0, spent = ck.get("batch", steps_per_epoch), ck.get("trained_seconds", 0.0)
        sampler.set_epoch(epoch0)
        if batch0 >= len(sampler):  # that epoch was finished
            epoch0, batch0 = epoch0 + 1, 0
        set_rng_state(ck["rng"])
        log(f"resumed from {out / 'last.pt'} at epoch {epoch0 + 1}, batch {batch0}, step {step}")
        before = ck.get("config", {})
        changed = {k: f"{before[k]} -> {getattr(cfg, k)}" for k in ("epochs", "max_steps", "max_minutes", "patience")
                   if k in before and before[k] != getattr(cfg, k)}
        if changed:  # same flags: the schedule of an uninterrupted run; other limits: a new horizon from here
            log(f"resumed with other limits ({', '.join(f'{k} {v}' for k, v in changed.items())}): "
                f"the LR schedule now spans {total_steps} steps" + (f" or {cfg.max_minutes:g} min" if cfg.max_minutes else ""))

    budget = stop.budget_seconds
    t_train = time.time()

    def trained_seconds() -> float:
        """Training time spent, over resumes. Under DDP all ranks take the largest clock, so they stop
        at the same step and set the same learning rate."""
        s = spent + time.time() - t_train
        if distributed and budget:
            t = torch.tensor([s], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=clock_group)
            s = float(t)
        return s

    model.train()
    first_step, reason = None, None
    now = trained_seconds()
    frac = stop.time_fraction(now)
    if step and stop.between_steps(step, now):  # resumed after the run had finished: not one step more
        log(f"nothing to train: {stop.between_steps(step, now)}")
        epoch0 = cfg.epochs
    for epoch in range(epoch0, cfg.epochs):
        start = batch0 if epoch == epoch0 else 0
        sampler.set_epoch(epoch, start)
        n_epoch = len(sampler)
        t_epoch, seen, wait, n_batches, b = time.time(), 0.0, 0.0, 0, start
        steady = None  # (time, audio seconds, data wait) after the epoch's first step: throughput without warm-up
        loss_sum = torch.zeros((), device=device)
        kd_sum = torch.zeros((), device=device)      # the teacher loss's part (with --teacher)
        batches = iter(train_loader)
        while b < n_epoch:
            # An epoch that starts takes at least one step (the budget may overrun by that step),
            # so no epoch is empty and the last one logged is the last one trained and evaluated.
            if n_batches and stop.between_steps(step, now):
                break
            t_wait = time.time()
            batch = next(batches)
            wait += time.time() - t_wait
            feats, frames, targets, tgt_len = device_batch(batch, device, cfg.features, cfg.augment)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, cfg, frac)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                lp, out_len, *hidden = ddp_model(feats, frames)
            loss = F.ctc_loss(lp.float().transpose(0, 1), targets, out_len, tgt_len.to(device, non_blocking=True),
                              blank=0, reduction="sum", zero_infinity=True) / len(batch.index)
            if teacher is not None:
                kd = teacher.loss(hidden[0] if teacher.needs_hidden else lp, out_len, batch.index, cfg.kd_temperature)
                kd_sum += kd.detach()
                loss = loss + cfg.kd_weight * kd
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            step, n_batches, b = step + 1, n_batches + 1, b + 1
            loss_sum += loss.detach()
            seen += batch.seconds
            if steady is None:
                steady = (time.time(), seen, wait)
            if first_step is None:
                first_step = time.time() - t_launch
                log(f"first step {first_step:.1f} s after start")
            now = trained_seconds()  # every rank calls it the same number of times (an all-reduce)
            frac = stop.time_fraction(now)
            if main_proc and cfg.save_every and step % cfg.save_every == 0 and b < n_epoch:
                save_checkpoint(out / "last.pt", model, opt, scaler, step, epoch, b, now, best, cfg, stop,
                                projection=getattr(net, "proj", None))
        del batches
        elapsed = time.time() - t_epoch
        record = {"epoch": epoch + 1, "step": step, "train_loss": float(loss_sum) / max(1, n_batches),
                  **({"train_kd_loss": float(kd_sum) / max(1, n_batches)} if teacher is not None else {}),
                  "lr": lr_at(step, total_steps, cfg, frac), "audio_sec_per_sec": seen * world / max(elapsed, 1e-9),
                  "epoch_seconds": round(elapsed, 1), "data_wait_seconds": round(wait, 2)}
        if epoch == epoch0 and first_step is not None:
            record["startup_seconds"] = round(first_step, 1)
        if steady is not None and n_batches > 1:
            took = time.time() - steady[0]
            record["steady_audio_sec_per_sec"] = (seen - steady[1]) * world / max(took, 1e-9)
            record["steady_data_wait_share"] = round((wait - steady[2]) / max(took, 1e-9), 3)
        now = trained_seconds()
        last_epoch = stop.after_epoch(epoch + 1, step, now) is not None
        if main_proc and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
            ev = evaluate(model, dev_loader, tokenizer, cfg.features, device, amp_dtype)
            record.update({k: v for k, v in ev.items() if k != "examples"})
            stop.evaluated(ev["dev_cer"])
            log(f"epoch {epoch + 1}: loss {record['train_loss']:.3f} dev_loss {ev['dev_loss']:.2f} "
                f"dev CER {ev['dev_cer']:.3f} WER {ev['dev_wer']:.3f} | {record['audio_sec_per_sec']:.0f} audio s/s"
                f" | {ev['examples'][0][0]} => {ev['examples'][0][1]}")
            if ev["dev_cer"] < best["dev_cer"]:
                best = {"dev_cer": ev["dev_cer"], "dev_wer": ev["dev_wer"], "epoch": epoch + 1, "step": step}
                metrics = {"dev_cer_greedy": round(ev["dev_cer"], 4), "dev_wer_greedy": round(ev["dev_wer"], 4)}
                save_release(out / "release", model.state_dict(),
                             release_config(cfg, dims, tokenizer, metrics, train_set, dev_set, step, epoch + 1,
                                            n_params, command),
                             dtype=torch.float16 if cfg.save_dtype == "float16" else None)
        if distributed and stop.patience:  # only rank 0 evaluates: every rank takes its early-stop count
            stale = torch.tensor([stop.stale])
            dist.broadcast(stale, 0, group=clock_group)
            stop.stale = int(stale)
        reason = stop.after_epoch(epoch + 1, step, now)
        if reason:
            record["stopped"] = reason
        if main_proc:
            with open(out / "train.log", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(out / "last.pt", model, opt, scaler, step, epoch, b, now, best, cfg, stop,
                            projection=getattr(net, "proj", None))
        if reason:
            log(f"stopping: {reason}")
            break
    log(f"best dev CER {best['dev_cer']:.4f} at epoch {best.get('epoch')}; release in {out / 'release'}")
    if distributed:
        dist.destroy_process_group()
    return best


if __name__ == "__main__":
    main()
