"""speech.features: the config validates and round-trips, and compute_features gives the same
features for an utterance however it arrives (file or array, alone or padded in a batch)."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech.audio import load_audio
from speech.features import FeatureConfig, compute_features

CLIPS = sorted((Path(__file__).parent / "fixtures" / "ko-speech").glob("*.flac"))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [load_audio(p) for p in CLIPS]


@pytest.mark.parametrize("field,bad,choices", [
    ("kind", "mfcc", ["logmel", "linear"]),
    ("window", "blackman", ["hann", "hamming"]),
    ("log", "log10", ["log", "log1p"]),
    ("normalize", "utterance", ["per_bin", "global", "none"]),
])
def test_invalid_setting_names_the_choices(field, bad, choices):
    with pytest.raises(ValueError) as e:
        FeatureConfig(**{field: bad})
    msg = str(e.value)
    assert field in msg and bad in msg
    for c in choices:
        assert repr(c) in msg or c in msg, msg


def test_window_longer_than_fft_is_rejected():
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(n_fft=256, win_length=400)


CONFIGS = [
    FeatureConfig(),
    FeatureConfig(kind="linear", n_fft=320, win_length=320, window="hamming", periodic_window=False,
                  power=1.0, log="log1p"),
    FeatureConfig(n_mels=40, hop_length=100, normalize="global"),
    FeatureConfig(center=False, normalize="none"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "linear", "mel40-hop100", "no-center"])
def test_n_features_and_num_frames_match_the_output(cfg):
    g = torch.Generator().manual_seed(0)
    lengths = [1, 99, 159, 160, 161, 399, 400, 401, 1000, 16000, 16001, 36801]
    if not cfg.center:
        lengths = [n for n in lengths if n >= cfg.n_fft]
    for n in lengths:
        wav = 0.1 * torch.randn(n, generator=g)
        x = compute_features(wav, cfg)
        assert x.shape == (cfg.num_frames(n), cfg.n_features), (n, tuple(x.shape))
        assert torch.isfinite(x).all()
    # The tensor form used for batches agrees with the int form.
    t = torch.tensor(lengths)
    wav = 0.1 * torch.randn(len(lengths), max(lengths), generator=g)
    feats, frames = compute_features(wav, cfg, t)
    assert frames.tolist() == [cfg.num_frames(n) for n in lengths]
    assert feats.shape == (len(lengths), cfg.num_frames(max(lengths)), cfg.n_features)


def test_n_features_follows_the_kind():
    assert FeatureConfig(n_mels=64).n_features == 64
    assert FeatureConfig(kind="linear", n_fft=320, win_length=320).n_features == 161


def test_features_from_file_equal_features_from_array():
    cfg = FeatureConfig()
    path = CLIPS[0]
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == cfg.sample_rate
    from_file = compute_features(load_audio(path), cfg)
    from_array = compute_features(data, cfg)
    from_tensor = compute_features(torch.from_numpy(data), cfg)
    torch.testing.assert_close(from_file, from_array, rtol=0, atol=0)
    torch.testing.assert_close(from_tensor, from_array, rtol=0, atol=0)


def test_features_are_normalised_per_bin(clips):
    x = compute_features(clips[0], FeatureConfig(normalize="per_bin"))
    torch.testing.assert_close(x.mean(0), torch.zeros(x.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(x.shape[1]), atol=1e-2, rtol=0)
    g = compute_features(clips[0], FeatureConfig(normalize="global"))
    assert abs(float(g.mean())) < 1e-4 and abs(float(g.std()) - 1) < 1e-2


@pytest.mark.parametrize("kind", ["logmel", "linear"])
@pytest.mark.parametrize("normalize", ["per_bin", "global", "none"])
def test_padded_batch_gives_each_utterance_its_features_alone(clips, kind, normalize):
    cfg = FeatureConfig(kind=kind, normalize=normalize)
    # Different lengths, and a cut that is not a multiple of the hop.
    utts = [clips[0], clips[1][: 16000 + 37], clips[2][5000:]]
    lengths = torch.tensor([len(u) for u in utts])
    assert len(set(lengths.tolist())) == 3
    batch = torch.zeros(len(utts), int(lengths.max()))
    for i, u in enumerate(utts):
        batch[i, : len(u)] = torch.from_numpy(u)
    feats, frames = compute_features(batch, cfg, lengths)
    for i, u in enumerate(utts):
        alone = compute_features(u, cfg)
        assert int(frames[i]) == alone.shape[0]
        torch.testing.assert_close(feats[i, : frames[i]], alone, atol=1e-4, rtol=1e-4)
        assert (feats[i, frames[i]:] == 0).all()  # padding frames are exactly zero


def test_config_round_trip_and_unknown_keys():
    for cfg in CONFIGS:
        d = json.loads(json.dumps(cfg.to_dict()))  # what a checkpoint's config.json holds
        assert FeatureConfig.from_dict(d) == cfg
        assert set(d) == {f.name for f in fields(FeatureConfig)}
    d = FeatureConfig().to_dict()
    d["dither"] = 0.1
    with pytest.raises(ValueError) as e:
        FeatureConfig.from_dict(d)
    assert "dither" in str(e.value)


def test_config_is_frozen():
    cfg = FeatureConfig()
    with pytest.raises(Exception):
        cfg.n_mels = 40  # type: ignore[misc]
