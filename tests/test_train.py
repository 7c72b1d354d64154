"""training/train_ds2.py end to end on the three fixture clips with a tiny model: what it writes,
that --resume continues exactly, that bad option combinations stop at the parser, and DDP on CPU."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speech.bundle import CONFIG_NAME, WEIGHTS_NAME, load_release
from speech.stt import Transcript, load_engine
from training import train_ds2

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "ko-speech" / "manifest.jsonl"
NOISE = FIXTURES / "noise"
CLIP = FIXTURES / "ko-speech" / "kih00023.flac"

# 3 clips of 2.0-2.3 s and batches of at most 5 s: two batches, so two steps an epoch.
TINY = ["--train", str(MANIFEST), "--dev", str(MANIFEST), "--rnn-hidden", "32", "--rnn-layers", "1",
        "--conv-channels", "4", "--n-mels", "40", "--batch-seconds", "5", "--max-duration", "5",
        "--noise-dir", str(NOISE), "--noise-prob", "1", "--reverb-prob", "0.5", "--device", "cpu",
        "--threads", "1", "--no-amp",
        # Warm-up longer than the run keeps the LR independent of --max-steps, so a resumed run
        # can be compared with an uninterrupted one.
        "--warmup-steps", "100"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def train(out: Path, *extra: str):
    return train_ds2.main([*TINY, "--out", str(out), *extra])


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.log").read_text().splitlines()]


def last_checkpoint(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)  # plain tensors only


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_steps")
    n = torch.get_num_threads()
    try:
        train(out, "--max-steps", "2")
    finally:
        torch.set_num_threads(n)
    return out


def test_training_writes_log_checkpoint_and_a_release_the_library_loads(two_steps):
    records = log_records(two_steps)
    assert [r["step"] for r in records] == [2] and records[0]["epoch"] == 1
    r = records[0]
    assert math.isfinite(r["train_loss"]) and r["train_loss"] > 0
    assert 0 <= r["dev_cer"] and math.isfinite(r["dev_loss"])

    ck = last_checkpoint(two_steps)
    assert ck["step"] == 2 and ck["epoch"] == 0
    assert {"model", "optimizer", "scaler", "rng", "config", "best"} <= set(ck)

    release = two_steps / "release"
    assert sorted(p.name for p in release.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    state, config = load_release(release, expected_type="deepspeech2")
    assert config["dims"]["rnn_hidden"] == 32 and config["dims"]["rnn_layers"] == 1
    assert config["features"]["n_mels"] == config["dims"]["n_features"] == 40
    assert config["tokenizer"]["unit"] == "jamo"
    assert config["training"]["step"] == 2 and config["training"]["train_utterances"] == 3
    assert config["metrics"]["dev_cer_greedy"] == pytest.approx(r["dev_cer"], abs=1e-4)
    # The release holds the trained weights (float16 by default), not the initial ones.
    assert state.keys() == ck["model"].keys()
    for k, v in ck["model"].items():
        torch.testing.assert_close(state[k], v.to(state[k].dtype), atol=2e-3, rtol=1e-3)

    engine = load_engine("ds2", model=str(release))
    t = engine.transcribe(CLIP)
    assert isinstance(t, Transcript)
    assert t.duration == pytest.approx(sf.info(str(CLIP)).duration, abs=1e-3)
    for s in t.segments:
        assert 0 <= s.start < s.end <= t.duration


def test_resume_continues_exactly_where_it_stopped(two_steps, tmp_path, capsys):
    resumed = tmp_path / "resumed"
    shutil.copytree(two_steps, resumed)
    train(resumed, "--max-steps", "4", "--resume")
    assert "resumed from" in capsys.readouterr().out
    records = log_records(resumed)
    assert [r["step"] for r in records] == [2, 4]
    assert [r["epoch"] for r in records] == [1, 2]
    assert last_checkpoint(resumed)["step"] == 4

    straight = tmp_path / "straight"
    train(straight, "--max-steps", "4")
    assert [r["step"] for r in log_records(straight)] == [2, 4]
    a, b = last_checkpoint(resumed), last_checkpoint(straight)
    # Same batches, augmentation and optimizer state: the same weights as an uninterrupted run.
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=1e-5)
    assert not all(torch.equal(a["model"][k], last_checkpoint(two_steps)["model"][k]) for k in a["model"])


@pytest.mark.parametrize("args,words", [
    (["--lookahead", "2"], ["--lookahead", "--unidirectional"]),
    (["--batch-seconds", "10", "--max-duration", "20"], ["--batch-seconds", "--max-duration"]),
    (["--snr", "20,0"], ["--snr"]),
    (["--noise-dir", "no/such/folder"], ["--noise-dir", "no/such/folder"]),
    (["--noise-dir", str(NOISE), "--noise-prob", "1.5"], ["--noise-prob"]),
    (["--unit", "word"], ["--unit", "jamo", "syllable"]),
])
def test_invalid_combinations_are_argparse_errors(args, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        train_ds2.main(["--train", str(MANIFEST), "--dev", str(MANIFEST), "--out", str(tmp_path / "x"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "x").exists()  # nothing was started


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    # --batch-seconds 9 puts all three clips in one batch: fewer batches than processes.
    args = list(TINY)
    del args[args.index("--threads"):args.index("--threads") + 2]
    args[args.index("--batch-seconds") + 1] = "9"
    p = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "training.train_ds2",
                        *args, "--out", str(out), "--max-steps", "2", "--epochs", "3"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    records = log_records(out)
    assert records[-1]["step"] == 2 and len(records) == 2  # one step per rank per epoch
    assert last_checkpoint(out)["step"] == 2
    command = json.loads((out / "release" / "config.json").read_text())["training"]["command"]
    assert command.startswith("OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 -m training.train_ds2 --train")
    t = load_engine("ds2", model=str(out / "release")).transcribe(CLIP)
    assert t.duration == pytest.approx(sf.info(str(CLIP)).duration, abs=1e-3)


@pytest.mark.slow
def test_ddp_time_budget_stops_all_ranks_together(tmp_path):
    """With --max-minutes every rank must stop at the same step (the ranks share the largest
    clock); a rank that stopped alone would leave the other waiting in all-reduce forever."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    args = list(TINY)
    del args[args.index("--threads"):args.index("--threads") + 2]
    args[args.index("--batch-seconds") + 1] = "9"
    p = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "training.train_ds2",
                        *args, "--out", str(out), "--max-minutes", "0.1", "--epochs", "10000", "--eval-every", "100000"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    records = log_records(out)
    trained = [r for r in records if "train_loss" in r]
    assert 1 <= len(trained) < 10000
    # One step per epoch and no empty epoch logged, also when the budget runs out at an epoch's top
    # (every record is a trained epoch; none is a bare evaluation).
    assert [r["step"] for r in trained] == list(range(1, len(trained) + 1))
    assert records == trained
    # Only the last weights were evaluated (--eval-every is out of reach), and they were.
    assert [("dev_cer" in r) for r in records] == [False] * (len(records) - 1) + [True]
    assert last_checkpoint(out)["step"] == records[-1]["step"]
