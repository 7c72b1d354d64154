"""Gender model: the shipped default on real held-out speakers, checkpoint round trip, shapes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speech.audio import SAMPLE_RATE, AudioError, SilentAudioError, load_audio
from speech.bundle import load_bundle, save_release
from speech.gender import GenderClassifier, GenderDims, GenderNet, NoSpeechError
from speech.hub import default_model
from speech.pitch import median_f0, pitch_track
from speech.plots import spectrogram_figure

FIX = Path(__file__).parent / "fixtures"
FEMALE = [FIX / "gender" / "avc00010.flac", FIX / "gender" / "ava00021.flac"]
MALE = [FIX / "gender" / "emf00002.flac", FIX / "gender" / "emh00305.flac"]
NOISE = FIX / "noise" / "vacuum_6s.flac"


@pytest.fixture(scope="module")
def clf():
    return GenderClassifier.load()


def test_release_describes_itself():
    bundle = load_bundle(None, "gender-cnn")
    dims = bundle.dims
    assert isinstance(dims, GenderDims) and bundle.folder == default_model("gender")
    assert bundle.labels == dims.labels and dims.labels[:2] == ("female", "male")
    assert dims.labels in (("female", "male"), ("female", "male", "child"))
    assert dims.n_features == bundle.features.n_mels
    assert bundle.calibration["temperature"] > 0
    assert bundle.info["license"].startswith("CC BY-NC-SA")
    size = (default_model("gender") / "model.safetensors").stat().st_size
    assert size < 5_000_000


@pytest.mark.parametrize("path,label", [(p, "female") for p in FEMALE] + [(p, "male") for p in MALE])
def test_unseen_adult_speakers(clf, path, label):
    r = clf.predict(path)
    assert r.label == label
    assert r.probabilities[label] > 0.8
    assert abs(sum(r.probabilities.values()) - 1) < 1e-3
    assert 0 < r.speech <= r.duration


def test_household_noise_5db(clf):
    from training.noise import mix_at_snr

    noise = torch.from_numpy(load_audio(NOISE))
    for path, label in ((FEMALE[0], "female"), (MALE[0], "male")):
        speech = torch.from_numpy(load_audio(path))
        reps = len(speech) // len(noise) + 1
        noisy = mix_at_snr(speech, noise.repeat(reps)[:len(speech)], 5.0).numpy()
        assert clf.predict((SAMPLE_RATE, noisy), vad=False).label == label


def test_silence_noise_and_too_short(clf):
    with pytest.raises(SilentAudioError):
        clf.predict((SAMPLE_RATE, np.zeros(SAMPLE_RATE * 2, dtype=np.float32)))
    with pytest.raises(NoSpeechError, match="No speech"):
        clf.predict(NOISE)
    with pytest.raises(AudioError, match="too short"):
        clf.predict((SAMPLE_RATE, load_audio(FEMALE[0])[:1000]), vad=False)


def test_alone_equals_padded_and_round_trip(clf, tmp_path):
    a = load_audio(FEMALE[0])[:SAMPLE_RATE * 2]
    b = load_audio(MALE[0])
    alone = clf.span_logits([a])
    batched = clf.span_logits([a, b], batch_size=2)
    assert torch.allclose(alone[0], batched[0], atol=1e-4)
    save_release(tmp_path, clf.model.state_dict(), clf.config)
    again = GenderClassifier.load(str(tmp_path))
    assert torch.equal(again.span_logits([a, b]), clf.span_logits([a, b]))


def test_output_lengths_sweep():
    net = GenderNet(GenderDims(n_features=64)).eval()
    for frames in range(16, 420, 7):
        feats = torch.randn(1, frames, 64)
        h, n = net.embed(feats, torch.tensor([frames]))
        assert int(n) == h.shape[1] == frames // 8 == int(net.output_lengths(torch.tensor(frames)))


def test_window_logits_match_whole_utterance(clf):
    a = load_audio(MALE[1])
    logits, fs = clf.window_logits(a, window=4 * len(a) / SAMPLE_RATE)  # every window covers all
    whole = clf.span_logits([a])[0].numpy()
    assert np.allclose(logits, whole[None, :], atol=1e-3)
    assert abs(fs - 0.08) < 1e-9


def test_pitch_track():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    times, f0 = pitch_track(0.5 * np.sin(2 * np.pi * 220 * t).astype(np.float32))
    assert abs(np.nanmedian(f0) - 220) < 3 and times[1] - times[0] == pytest.approx(0.01)
    _, f0 = pitch_track(np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1)
    assert np.isfinite(f0).mean() < 0.1   # white noise is unvoiced
    female = median_f0(load_audio(FEMALE[0]))
    male = median_f0(load_audio(MALE[0]))
    assert 150 < female < 350 and 70 < male < 160


def test_spectrogram_figure(tmp_path):
    a = load_audio(MALE[0])
    fig = spectrogram_figure(a, pitch=pitch_track(a), title="남성 화자")
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == pytest.approx(len(a) / SAMPLE_RATE, rel=1e-3)
    # the pitch track has its own readable axis (not the spectrogram's 0-4000 Hz), over the reference bands
    pax = next(a for a in fig.axes if "pitch" in a.get_ylabel())
    assert pax.get_ylim() == (50.0, 500.0) and ax.get_ylim()[1] > 3000
    track = next(line for line in pax.get_lines() if line.get_label() == "F0")
    f0 = np.asarray(track.get_ydata(), dtype=float)
    assert 50 < np.nanmin(f0) and np.nanmax(f0) <= 500
    bands = {p.get_label() for p in pax.patches}
    assert any("female" in b for b in bands) and any("male" in b and "female" not in b for b in bands), bands
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_cli_gender(capsys):
    from speech.cli import main

    rc = main(["gender", str(FEMALE[0]), str(MALE[0]), str(NOISE), "--format", "jsonl", "--no-progress"])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1                                      # the noise file has no speech
    assert [o["label"] for o in out] == ["female", "male"]
    assert set(out[0]["probabilities"]) == {"female", "male", "child"}   # the default model knows children
    assert out[0]["path"] == str(FEMALE[0])
    rc = main(["gender", str(NOISE), "--no-progress"])
    assert rc == 1 and "No speech" in capsys.readouterr().err
