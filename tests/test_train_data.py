"""The trainer's input pipeline (training/data.py): bucketing and sharding from manifest durations,
a compact manifest, deterministic augmentation, and a run that resumes in the middle of an epoch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training import train_ds2
from training.data import BucketBatchSampler, CompactManifest, SpeechDataset, collate
from training.synth_manifest import synthesize
from speech.text import JamoTokenizer

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "ko-speech" / "manifest.jsonl"
NOISE = FIXTURES / "noise"
# 3 clips of 2.0-2.3 s, batches of at most 2.5 s: one clip a batch, three steps an epoch.
TINY = ["--train", str(MANIFEST), "--dev", str(MANIFEST), "--rnn-hidden", "32", "--rnn-layers", "2",
        "--conv-channels", "4", "--n-mels", "40", "--batch-seconds", "2.5", "--max-duration", "2.5",
        "--noise-dir", str(NOISE), "--noise-prob", "1", "--reverb-prob", "0.5", "--device", "cpu",
        "--threads", "1", "--no-amp", "--warmup-steps", "100", "--dropout", "0.3"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def weights(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model"]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_buckets_cover_every_utterance_once_and_ranks_share_the_plan(world):
    rng = np.random.default_rng(0)
    durations = rng.uniform(0.5, 15.0, size=2000)
    samplers = [BucketBatchSampler(durations, 60.0, seed=7, rank=r, world=world) for r in range(world)]
    for epoch in (0, 1):
        per_rank = []
        for s in samplers:
            s.set_epoch(epoch)
            per_rank.append([[i for i, _ in b] for b in s])
        assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])  # same step count
        batches = [b for p in per_rank for b in p]
        for b in batches:  # padding counts: the longest utterance times the batch size
            assert durations[b].max() * len(b) <= 60.0 + 1e-9
        plan = [list(map(int, b)) for b in samplers[0].plan(epoch)]
        assert sorted(map(tuple, batches)) == sorted(map(tuple, plan))  # the ranks split the one plan
        unique = {tuple(b) for b in plan}
        assert sorted(i for b in unique for i in b) == list(range(len(durations)))  # each utterance once
        assert len(plan) - len(unique) < world  # reused only to give every rank the same count
    first = [[i for i, _ in b] for b in (samplers[0].set_epoch(0) or samplers[0])]
    second = [[i for i, _ in b] for b in (samplers[0].set_epoch(1) or samplers[0])]
    assert first != second  # a new order each epoch


def test_a_sampler_started_mid_epoch_gives_the_rest_of_that_epoch():
    durations = np.random.default_rng(1).uniform(1, 10, size=300)
    s = BucketBatchSampler(durations, 40.0, seed=3, rank=1, world=2)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=5)
    assert list(s) == full[5:]  # same indices and the same augmentation seeds


def test_compact_manifest_reads_a_synthetic_large_manifest(tmp_path):
    out = tmp_path / "big" / "train.jsonl"
    n, hours = synthesize(str(MANIFEST), 0.05, str(out))
    m = CompactManifest.read(out)
    assert len(m) == n and m.seconds / 3600 == pytest.approx(hours, rel=1e-6) and hours >= 0.05
    rows = [json.loads(x) for x in MANIFEST.read_text(encoding="utf-8").splitlines()]
    assert m.text(4) == rows[4 % 3]["text"] and Path(m.audio(4)).is_file()
    assert Path(m.audio(4)).resolve() == (MANIFEST.parent / rows[4 % 3]["audio"]).resolve()
    assert CompactManifest.read(out, max_duration=2.1).durations.max() <= 2.1


def test_augmentation_depends_on_the_seed_not_on_the_worker():
    m = CompactManifest.read(MANIFEST)
    ds = SpeechDataset(m, JamoTokenizer(), train_ds2.TrainConfig(train="", dev="", augment=train_ds2.AugmentConfig(
        noise_dir=str(NOISE), noise_prob=1.0, reverb_prob=1.0)).augment)
    a, b, c = ds[(0, 11)], ds[(0, 11)], ds[(0, 12)]
    torch.testing.assert_close(a[1], b[1])
    assert a[1].shape != c[1].shape or not torch.equal(a[1], c[1])
    batch = collate([a, ds[(1, 5)]])
    assert batch.wav.shape == (2, int(batch.lengths.max())) and batch.targets.numel() == int(batch.target_lengths.sum())


def test_resume_in_the_middle_of_an_epoch_continues_at_the_next_batch(tmp_path, capsys):
    stopped = tmp_path / "stopped"
    train_ds2.main([*TINY, "--out", str(stopped), "--max-steps", "2", "--workers", "0"])
    ck = torch.load(stopped / "last.pt", map_location="cpu", weights_only=True)
    assert (ck["step"], ck["epoch"], ck["batch"]) == (2, 0, 2)  # two of the epoch's three batches
    capsys.readouterr()
    train_ds2.main([*TINY, "--out", str(stopped), "--max-steps", "5", "--resume", "--workers", "0"])
    assert "at epoch 1, batch 2, step 2" in capsys.readouterr().out

    straight = tmp_path / "straight"
    train_ds2.main([*TINY, "--out", str(straight), "--max-steps", "5", "--workers", "2"])
    a, b = weights(stopped), weights(straight)
    for k in a:  # an epoch restarted from its top would have trained on other batches
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    ends = [r["step"] for r in map(json.loads, (straight / "train.log").read_text().splitlines())]
    assert ends == [3, 5]


def test_study_preset_is_deepspeech_pytorch_size():
    cfg = train_ds2.parse_args(["--train", "t", "--dev", "d", "--preset", "study"])
    dims = cfg.dims(len(JamoTokenizer()))
    assert (dims.rnn_type, dims.rnn_hidden, dims.rnn_layers, dims.bidirectional) == ("lstm", 1024, 5, True)
    assert cfg.features.n_features == 161 and dims.frontend == "ds2"
    from speech.models.deepspeech2 import DeepSpeech2
    assert 80e6 < DeepSpeech2(dims).num_parameters() < 95e6  # the study's checkpoint: 89M with 2,538 labels
    small = train_ds2.parse_args(["--train", "t", "--dev", "d", "--rnn-hidden", "256"])
    assert (small.rnn_type, small.rnn_hidden, small.features.n_mels) == ("gru", 256, 80)


def test_benchmark_train_measures_the_pipeline_and_the_training_loop(tmp_path):
    from training import benchmark_train

    out = tmp_path / "bench"
    r = benchmark_train.main(["--manifest", str(MANIFEST), "--noise-dir", str(NOISE), "--presets", "small",
                              "--steps", "2", "--batch-seconds", "2.5", "--pipeline-workers", "0,1",
                              "--pipeline-batches", "2", "--train-args", "--threads 1 --rnn-hidden 32 --rnn-layers 1",
                              "--workers", "0", "--out", str(out)])
    in_process, one_worker = r["pipeline"]
    assert in_process["batches"] == one_worker["batches"] == 2  # the first of the 3 batches is not counted
    assert in_process["per_cpu_second"] > 0 and one_worker["audio_sec_per_sec"] > 0
    (t,) = r["training"]
    assert t["steps"] == 2 and t["audio_sec_per_sec"] > 0 and 0 <= t["data_wait_share"] < 1
    r = t["audio_sec_per_sec"]   # rounded to 0.1: at a low rate (a loaded machine) that moves 1000 / r a lot
    assert 1000 / (r + 0.05) - 0.05 <= t["hours_per_1000h_epoch"] <= 1000 / max(r - 0.05, 1e-9) + 0.05
    assert "| small |" in (tmp_path / "bench.md").read_text() and json.loads((tmp_path / "bench.json").read_text())
