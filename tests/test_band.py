"""speech.band: telephone-band audio is told from 16 kHz speech, and every report on it says so
(the gender model calls men `child` there: results/gender_bandwidth.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from speech.audio import load_audio
from speech.band import NARROWBAND, NARROWBAND_DB, band_warnings, high_band_db
from training.conditions import band_condition

FIX = Path(__file__).parent / "fixtures" / "gender"


@pytest.fixture(scope="module")
def man():
    return load_audio(str(FIX / "emh00305.flac"))


@pytest.fixture(scope="module")
def call(man, tmp_path_factory):
    """The man's clip as an 8 kHz telephone recording (300-3400 Hz), stored at 8 kHz."""
    path = tmp_path_factory.mktemp("band") / "call.wav"
    sf.write(path, resample_poly(band_condition(man, "phone"), 1, 2).astype(np.float32), 8000)
    return path


def test_telephone_band_is_told_from_16_khz_speech(man, call):
    assert band_warnings(man) == [] and high_band_db(man) > NARROWBAND_DB + 5
    for clip in ("ava00021.flac", "avc00010.flac", "pmi00020.flac"):
        assert band_warnings(load_audio(str(FIX / clip))) == [], clip
    assert band_warnings(band_condition(man, "phone")) == [NARROWBAND]
    assert band_warnings(band_condition(man, "lowpass3400")) == [NARROWBAND]
    assert band_warnings(load_audio(str(call))) == [NARROWBAND]       # decoded back to 16 kHz: still narrow
    assert band_warnings(band_condition(man, "lowpass5500")) == []    # a duller microphone is no reason
    assert band_warnings(man[:100]) == []                              # too short to say


def test_telephone_audio_goes_to_the_narrowband_release_and_every_report_says_so(man, call, capsys):
    """The default release names a narrowband one (fine-tuned on band-limited crops): through a
    telephone band the default calls this man `child`; the narrowband release hears a man. A
    release without one (gender-ko) answers itself, with the plain warning."""
    import app
    from speech.analysis import analyze
    from speech.band import narrowband_used
    from speech.cli import main
    from speech.gender import GenderClassifier

    clf = GenderClassifier.load()
    assert clf.for_band(man) == (clf, []) and clf.predict(man).warnings == []
    narrow, warnings = clf.for_band(load_audio(str(call)))
    assert narrow.model_name == "gender-child-ko-narrowband" and narrow is clf.narrowband()
    assert warnings == [narrowband_used("gender-child-ko-narrowband")]
    phone = load_audio(str(call))
    default_label = clf.labels[int(clf.probabilities(clf.span_logits([phone])).argmax())]
    result = clf.predict(str(call))
    assert default_label == "child" and result.label == "male" and result.warnings == warnings
    assert result.model == "gender-child-ko-narrowband" and clf.predict(man).model == "gender-child-ko"
    assert main(["gender", "--format", "jsonl", str(call)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["label"] == "male" and json.loads(out)["warnings"] == warnings
    assert f"warning: {call}: Narrowband audio" in err

    rep = analyze(str(call), clf)
    assert rep.model == "gender-child-ko-narrowband" and [sp.cls for sp in rep.speakers] == ["male"]
    assert json.loads(rep.to_json())["warnings"] == warnings and rep.summary().startswith("warning: Narrowband")
    assert app.summary_markdown(rep).startswith("**⚠ 전화 음질") and "gender-child-ko-narrowband" in app.summary_markdown(rep)
    assert analyze(man, clf).warnings == [] and analyze(man, clf).model == "gender-child-ko"

    plain = GenderClassifier.load(str(Path(__file__).parents[1] / "checkpoints" / "gender-ko"))
    assert plain.narrowband() is None and plain.predict(str(call)).warnings == [NARROWBAND]
    assert analyze(str(call), plain).warnings == [NARROWBAND]


def test_a_narrowband_release_that_cannot_be_found_leaves_the_plain_warning(call, tmp_path):
    import shutil

    from speech.gender import GenderClassifier

    folder = tmp_path / "gender-child-ko"
    shutil.copytree(Path(__file__).parents[1] / "checkpoints" / "gender-child-ko", folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "narrowband": "no-such-release"}), encoding="utf-8")
    clf = GenderClassifier.load(str(folder))
    assert clf.narrowband() is None and clf.predict(str(call)).warnings == [NARROWBAND]
    assert clf.narrowband() is None and clf._narrowband is False          # looked for once


def test_calls_through_real_telephone_codecs_are_narrowband_and_voice_messages_are_not():
    """Telephone codecs (GSM, G.711, Opus and Speex at 8 kHz, read back as the library reads such a
    file) are found narrowband, and the narrowband release labels the voices right; voice-message
    codecs at 16 kHz (Opus 16 kb/s, AAC 32 kb/s) keep the 16 kHz model (results/gender_codecs.md)."""
    from speech.gender import GenderClassifier
    from training.conditions import TELEPHONE_CODECS, speech_codec

    clf = GenderClassifier.load()
    for clip, gender in (("emh00305.flac", "male"), ("ava00021.flac", "female")):
        audio = load_audio(str(FIX / clip))
        phone = band_condition(audio, "phone")
        for codec in TELEPHONE_CODECS:
            coded = band_condition(audio, f"phone-{codec}")
            n = min(len(coded), len(phone))
            assert abs(len(coded) - len(audio)) < 0.05 * 16000, codec           # the same clip, read back
            assert not np.allclose(coded[:n], phone[:n], atol=1e-3), codec      # ... through the codec
            assert band_warnings(coded) == [NARROWBAND], (clip, codec)
            result = clf.predict(coded)
            assert (result.label, result.model) == (gender, "gender-child-ko-narrowband"), (clip, codec)
        for codec in ("opus16k", "aac32k"):
            coded = band_condition(audio, codec)
            assert band_warnings(coded) == [] and not np.array_equal(coded[:len(audio)], audio[:len(coded)])
            result = clf.predict(coded)
            assert (result.label, result.model) == (gender, "gender-child-ko"), (clip, codec)
    with pytest.raises(ValueError, match="Unknown codec"):
        speech_codec(audio, "amr")
    with pytest.raises(ValueError, match="Unknown band"):
        band_condition(audio, "phone-aac32k")


def test_evaluate_gender_routes_each_utterance_as_the_library_does(tmp_path):
    """evaluate_gender --route: telephone-band utterances are labelled by the narrowband release (as
    `gender` and `analyze` label them), the others by the model itself."""
    from speech.gender import GenderClassifier
    from training.evaluate_gender import main as evaluate

    manifest = tmp_path / "dev.jsonl"
    clips = [("avc00010.flac", "avc", "female"), ("emf00002.flac", "emf", "male"), ("emh00305.flac", "emh", "male")]
    manifest.write_text("".join(json.dumps({"audio": str(FIX / f), "text": "", "speaker": s, "gender": g,
                                            "utt": f[:-5]}) + "\n" for f, s, g in clips), encoding="utf-8")
    args = ["--manifest", str(manifest), "--noise", str(FIX.parent / "noise"), "--bands", "phone-gsm", "opus16k"]
    routed = evaluate(args + ["--route", "--out", str(tmp_path / "routed")])
    plain = evaluate(args + ["--out", str(tmp_path / "plain")])
    assert routed["route"] and not plain["route"]
    assert routed["conditions"]["phone-gsm"]["routed"] == 1.0
    assert routed["conditions"]["clean"]["routed"] == routed["conditions"]["opus16k"]["routed"] == 0.0
    assert all(c["routed"] == 0.0 for c in plain["conditions"].values())
    assert routed["conditions"]["clean"] == {**plain["conditions"]["clean"]}           # nothing to route there
    # Through GSM the narrowband release gets every voice right (the default's own answers differ).
    assert routed["conditions"]["phone-gsm"]["model"]["all"] == 1.0
    narrow = GenderClassifier.load().narrowband()
    gsm = [band_condition(load_audio(str(FIX / f)), "phone-gsm") for f, _, _ in clips]
    assert narrow.probabilities(narrow.span_logits(gsm)).argmax(1).tolist() == [0, 1, 1]
    assert "handed to the narrowband release: clean 0.0%" in (tmp_path / "routed.md").read_text(encoding="utf-8")
