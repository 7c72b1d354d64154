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


def test_gender_and_analysis_reports_carry_the_warning(man, call, capsys):
    import app
    from speech.analysis import analyze
    from speech.cli import main
    from speech.gender import GenderClassifier

    clf = GenderClassifier.load()
    assert clf.predict(man).warnings == []
    result = clf.predict(str(call))
    assert result.warnings == [NARROWBAND] and result.to_dict()["warnings"] == [NARROWBAND]
    assert main(["gender", "--format", "jsonl", str(call)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warnings"] == [NARROWBAND] and f"warning: {call}: Narrowband" in err

    rep = analyze(str(call), clf)
    assert rep.warnings == [NARROWBAND] and json.loads(rep.to_json())["warnings"] == [NARROWBAND]
    assert rep.summary().startswith("warning: Narrowband")
    assert app.summary_markdown(rep).startswith("**⚠ 전화 음질") and NARROWBAND in app.summary_markdown(rep)
    assert analyze(man, clf).warnings == []
