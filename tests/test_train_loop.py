"""train_ds2's loop: the one stop condition, resume equivalence with a live LR schedule, the
training clock across a resume, RNG state on every generator, and the flags generated from
TrainConfig (same names and defaults as the hand-written parser they replaced)."""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from speech.features import FeatureConfig
from training import train_ds2
from training.data import AugmentConfig
from training.stopping import StopCondition, rng_state, set_rng_state

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "ko-speech" / "manifest.jsonl"
NOISE = FIXTURES / "noise"

# Three clips, batches of at most 5 s: two batches an epoch (seed 1234). Warm-up of one step, so the cosine
# schedule moves at every step and a resume that lost its place in it would train other weights; two
# RNN layers, so dropout draws from the torch RNG between them.
TINY = ["--train", str(MANIFEST), "--dev", str(MANIFEST), "--rnn-hidden", "32", "--rnn-layers", "2",
        "--conv-channels", "4", "--n-mels", "40", "--batch-seconds", "5", "--max-duration", "5",
        "--noise-dir", str(NOISE), "--noise-prob", "1", "--reverb-prob", "0.5", "--device", "cpu",
        "--threads", "1", "--no-amp", "--workers", "0", "--warmup-steps", "1", "--lr", "3e-3"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


class Preempted(Exception):
    pass


def preempt_after(monkeypatch, at_step: int):
    """The job is killed right after the checkpoint of step `at_step` is written."""
    save = train_ds2.save_checkpoint

    def save_then_die(path, model, opt, scaler, step, *rest, **options):
        save(path, model, opt, scaler, step, *rest, **options)
        if step == at_step:
            raise Preempted

    monkeypatch.setattr(train_ds2, "save_checkpoint", save_then_die)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.log").read_text().splitlines()]


def checkpoint(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)


def test_n_steps_straight_equal_k_steps_resume_and_the_rest(tmp_path, monkeypatch):
    n, k = 5, 3   # stopped in the middle of the second epoch
    args = [*TINY, "--max-steps", str(n), "--save-every", "1", "--max-minutes", "600"]
    straight = tmp_path / "straight"
    train_ds2.main([*args, "--out", str(straight)])

    stopped = tmp_path / "stopped"
    with monkeypatch.context() as m:
        preempt_after(m, k)
        with pytest.raises(Preempted):
            train_ds2.main([*args, "--out", str(stopped)])
    ck = checkpoint(stopped)
    assert (ck["step"], ck["epoch"], ck["batch"]) == (k, 1, 1) and [r["step"] for r in records(stopped)] == [2]
    train_ds2.main([*args, "--out", str(stopped), "--resume"])  # the same command, restarted
    assert [r["step"] for r in records(stopped)] == [r["step"] for r in records(straight)] == [2, 4, 5]

    a, b = checkpoint(stopped), checkpoint(straight)
    assert a["step"] == b["step"] == n
    for key in b["model"]:  # same batches, augmentation, dropout draws and learning rates
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-6, rtol=1e-5)
    for key in ("exp_avg", "exp_avg_sq"):
        for p, s in b["optimizer"]["state"].items():
            torch.testing.assert_close(a["optimizer"]["state"][p][key], s[key], atol=1e-6, rtol=1e-5)
    # The epoch both runs trained whole (step 5) has the same loss, learning rate and dev scores.
    last_a, last_b = records(stopped)[-1], records(straight)[-1]
    assert last_a["step"] == last_b["step"] == n
    for key in ("train_loss", "lr", "dev_loss", "dev_cer"):
        assert last_a[key] == pytest.approx(last_b[key], rel=1e-5), key
    assert last_b["stopped"] == f"max_steps {n} reached"


def test_a_resume_with_other_limits_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        preempt_after(m, 1)
        with pytest.raises(Preempted):
            train_ds2.main([*TINY, "--max-steps", "4", "--save-every", "1", "--out", str(out)])
    capsys.readouterr()
    train_ds2.main([*TINY, "--max-steps", "2", "--out", str(out), "--resume"])
    printed = capsys.readouterr().out
    assert "resumed with other limits (max_steps 4 -> 2): the LR schedule now spans 2 steps" in printed
    train_ds2.main([*TINY, "--max-steps", "2", "--out", str(out), "--resume"])   # same limits: nothing to say,
    printed = capsys.readouterr().out
    assert "other limits" not in printed and "nothing to train: max_steps 2 reached" in printed
    assert checkpoint(out)["step"] == 2                                        # and no step past the limit


def test_resume_continues_the_training_clock_and_its_schedule(tmp_path, monkeypatch):
    """A resumed run with --max-minutes keeps the time it already spent: here 29 of 30 s, so it
    stops within about a second, and its learning rate is at the end of the schedule. A clock that
    restarted would train for another 30 s at nearly the peak rate."""
    args = [*TINY, "--max-minutes", "0.5", "--epochs", "1000", "--save-every", "1", "--eval-every", "1000"]
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        preempt_after(m, 1)
        with pytest.raises(Preempted):
            train_ds2.main([*args, "--out", str(out)])
    ck = checkpoint(out)
    ck["trained_seconds"] = 29.0
    torch.save(ck, out / "last.pt")
    train_ds2.main([*args, "--out", str(out), "--resume"])
    end = records(out)[-1]
    assert end["stopped"].startswith("time budget")
    assert checkpoint(out)["trained_seconds"] >= 30.0
    assert end["step"] < 1 + 40, end       # ~1 s of tiny steps, not 30 s
    assert end["lr"] <= 0.06 * 3e-3         # cosine at >= 97% of the budget: ~5% of the peak


def test_early_stop_after_patience_evaluations_without_a_better_dev_cer(tmp_path, monkeypatch):
    # Dev CERs set by the test: best at epoch 2, then two epochs without a better one.
    cers = iter([0.9, 0.5, 0.6, 0.5, 0.1, 0.1])
    real = train_ds2.evaluate

    def evaluate(*a, **k):
        return {**real(*a, **k), "dev_cer": next(cers)}

    monkeypatch.setattr(train_ds2, "evaluate", evaluate)
    out = tmp_path / "flat"
    train_ds2.main([*TINY, "--patience", "2", "--epochs", "50", "--out", str(out)])
    log = records(out)
    assert [r["dev_cer"] for r in log] == [0.9, 0.5, 0.6, 0.5]
    assert [r.get("stopped") for r in log] == [None] * 3 + ["no better dev CER in 2 evaluations (early stop)"]
    assert checkpoint(out)["stop"] == {"stale": 2, "best": 0.5}
    assert json.loads((out / "release" / "config.json").read_text())["training"]["epoch"] == 2


def test_stop_condition_decides_every_limit():
    s = StopCondition(max_steps=10, epochs=3, budget_seconds=60.0, patience=2)
    assert s.schedule_steps(steps_per_epoch=4) == 10 and StopCondition(epochs=3).schedule_steps(4) == 12
    assert s.between_steps(9, 59.0) is None
    assert s.between_steps(10, 0.0) == "max_steps 10 reached"
    assert s.between_steps(1, 60.0).startswith("time budget")
    assert s.after_epoch(2, 8, 10.0) is None and s.after_epoch(3, 9, 10.0) == "3 epochs done"
    assert s.evaluated(0.5) and not s.evaluated(0.6) and s.after_epoch(1, 1, 1.0) is None
    assert not s.evaluated(0.5) and "early stop" in s.after_epoch(1, 1, 1.0)
    assert s.evaluated(0.4) and s.stale == 0
    t = StopCondition(patience=2)
    t.load_state_dict(s.state_dict())
    assert (t.stale, t.best) == (0, 0.4)
    assert StopCondition().time_fraction(100.0) == 0.0 and s.time_fraction(30.0) == 0.5


def test_rng_state_restores_torch_numpy_and_python():
    state = rng_state()
    saved = torch.load(_roundtrip(state), weights_only=True)   # what a checkpoint holds
    draws = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]
    if torch.cuda.is_available():
        assert "cuda" in state


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


# -- flags ----------------------------------------------------------------------------------------

def legacy_parse_args(argv) -> train_ds2.TrainConfig:
    """The hand-written parser train_ds2 had before its flags were generated from TrainConfig."""
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--out", default="runs/ds2")
    p.add_argument("--name", default="ds2-ko")
    p.add_argument("--unit", default="jamo", choices=["jamo", "syllable"])
    p.add_argument("--preset", default="small", choices=sorted(train_ds2.PRESETS))
    p.add_argument("--feature-kind", default=None, choices=["logmel", "linear"])
    p.add_argument("--n-mels", type=int, default=None)
    p.add_argument("--frontend", default=None, choices=["light", "ds2"])
    p.add_argument("--conv-channels", type=int, default=None)
    p.add_argument("--rnn-type", default=None, choices=["gru", "lstm"])
    p.add_argument("--rnn-hidden", type=int, default=None)
    p.add_argument("--rnn-layers", type=int, default=None)
    p.add_argument("--unidirectional", action="store_true")
    p.add_argument("--lookahead", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.15)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-steps", type=int, default=300)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--batch-seconds", type=float, default=160.0)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--speed", default="0.9,1.0,1.1")
    p.add_argument("--noise-dir", default=None)
    p.add_argument("--noise-prob", type=float, default=0.6)
    p.add_argument("--snr", default="0,20")
    p.add_argument("--reverb-prob", type=float, default=0.0)
    p.add_argument("--freq-masks", type=int, default=2)
    p.add_argument("--time-masks", type=int, default=4)
    p.add_argument("--max-duration", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--save-dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", default=None)
    a = p.parse_args(argv)
    snr = [float(x) for x in a.snr.split(",")]
    aug = AugmentConfig(speed=tuple(float(x) for x in a.speed.split(",")), noise_dir=a.noise_dir,
                        noise_prob=a.noise_prob if a.noise_dir else 0.0, snr_min=snr[0], snr_max=snr[1],
                        reverb_prob=a.reverb_prob, freq_masks=a.freq_masks, time_masks=a.time_masks)
    model = dict(train_ds2.PRESETS[a.preset])
    feats = model.pop("features", FeatureConfig())
    if a.feature_kind or a.n_mels:
        feats = replace(feats, **{k: v for k, v in (("kind", a.feature_kind), ("n_mels", a.n_mels)) if v})
    model.update({k: getattr(a, k) for k in ("frontend", "conv_channels", "rnn_type", "rnn_hidden", "rnn_layers")
                  if getattr(a, k) is not None})
    return train_ds2.TrainConfig(
        train=a.train, dev=a.dev, out=a.out, name=a.name, unit=a.unit, features=feats, **model,
        bidirectional=not a.unidirectional, lookahead=a.lookahead, dropout=a.dropout, optimizer=a.optimizer,
        lr=a.lr, weight_decay=a.weight_decay, warmup_steps=a.warmup_steps, epochs=a.epochs, max_steps=a.max_steps,
        max_minutes=a.max_minutes, batch_seconds=a.batch_seconds, grad_clip=a.grad_clip, amp=not a.no_amp,
        compile=a.compile, workers=a.workers, save_every=a.save_every, augment=aug, max_duration=a.max_duration,
        seed=a.seed, device=a.device, threads=a.threads, eval_every=a.eval_every, save_dtype=a.save_dtype,
        resume=a.resume, init_from=a.init_from)


def option_names(parser: argparse.ArgumentParser) -> set:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


@pytest.mark.parametrize("argv", [
    [],
    ["--preset", "study"],
    ["--preset", "study", "--rnn-hidden", "512", "--n-mels", "64", "--feature-kind", "logmel"],
    ["--unidirectional", "--lookahead", "2", "--no-amp", "--compile", "--resume", "--init-from", "rel"],
    ["--noise-dir", str(NOISE), "--noise-prob", "0.3", "--snr", "2,15", "--speed", "1", "--reverb-prob", "0.2",
     "--freq-masks", "1", "--time-masks", "2"],
    ["--unit", "syllable", "--optimizer", "sgd", "--lr", "0.1", "--epochs", "3", "--max-steps", "7",
     "--max-minutes", "1.5", "--batch-seconds", "90", "--workers", "0", "--save-every", "5", "--seed", "7",
     "--device", "cpu", "--threads", "2", "--eval-every", "2", "--save-dtype", "float32", "--name", "x",
     "--out", "o", "--max-duration", "15", "--grad-clip", "1", "--dropout", "0", "--weight-decay", "0",
     "--warmup-steps", "10", "--conv-channels", "8", "--rnn-type", "lstm", "--rnn-layers", "2", "--frontend", "ds2"],
])
def test_generated_flags_parse_like_the_old_parser(argv):
    argv = ["--train", "t", "--dev", "d", *argv]
    assert train_ds2.parse_args(argv) == legacy_parse_args(argv)


def test_generated_parser_keeps_every_old_flag_and_default():
    new = train_ds2.build_parser()
    old_defaults = {
        "--out": "runs/ds2", "--name": "ds2-ko", "--unit": "jamo", "--preset": "small", "--lookahead": 0,
        "--dropout": 0.15, "--optimizer": "adamw", "--lr": 1.5e-3, "--weight-decay": 1e-2, "--warmup-steps": 300,
        "--epochs": 30, "--max-steps": 0, "--max-minutes": 0.0, "--batch-seconds": 160.0, "--grad-clip": 5.0,
        "--workers": 2, "--save-every": 0, "--speed": "0.9,1.0,1.1", "--noise-prob": 0.6, "--snr": "0,20",
        "--reverb-prob": 0.0, "--freq-masks": 2, "--time-masks": 4, "--max-duration": 20.0, "--seed": 1234,
        "--device": "auto", "--threads": 0, "--eval-every": 1, "--save-dtype": "float16",
        # no default: the preset (or the user) decides
        "--feature-kind": None, "--n-mels": None, "--frontend": None, "--conv-channels": None, "--rnn-type": None,
        "--rnn-hidden": None, "--rnn-layers": None, "--noise-dir": None, "--init-from": None}
    switches = {"--unidirectional", "--no-amp", "--compile", "--resume"}
    old = set(old_defaults) | switches | {"--train", "--dev"}
    names = option_names(new)
    assert old <= names
    # flags added since the generated parser replaced the hand-written one (each with a default that changes nothing)
    added = {"--patience", "--freq-mask-width", "--time-mask-ratio", "--gain-db",
             "--teacher", "--kd-weight", "--kd-temperature"}
    assert names - old == added
    by_flag = {s: a for a in new._actions for s in a.option_strings}
    assert by_flag["--teacher"].default is None   # no teacher, no distillation: the old behaviour
    for f, default in old_defaults.items():
        assert by_flag[f].default == default, f
    for f in switches:
        assert by_flag[f].nargs == 0, f   # a switch, taking no value
    assert by_flag["--train"].required and by_flag["--dev"].required


def test_ddp_ranks_stop_early_together(tmp_path):
    """Only rank 0 evaluates; the early-stop count must reach every rank, or rank 1 trains on alone
    and waits in all-reduce forever. lr 0: the weights stay, only batch-norm statistics move, so the
    dev CER stops improving within a few epochs (1.25, 1.125, 1.375 here)."""
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(FIXTURES.parent.parent), "CUDA_VISIBLE_DEVICES": ""}
    args = list(TINY)
    del args[args.index("--threads"):args.index("--threads") + 2]
    args[args.index("--batch-seconds") + 1] = "9"
    args[args.index("--rnn-layers") + 1] = "1"
    p = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "training.train_ds2", *args,
                        "--lr", "0", "--patience", "1", "--epochs", "8", "--out", str(out)],
                       cwd=FIXTURES.parent.parent, env=env, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    log = records(out)
    assert len(log) < 8 and log[-1]["stopped"] == "no better dev CER in 1 evaluations (early stop)"
