"""Whisper base in the tests: present, or absent on purpose.

setup.sh always assembles Whisper base (CI runs it first), so a test that needs the model fails
when it is missing: a silent skip would let CI pass without running it. On a machine where it is
absent on purpose, `SPEECH_TEST_NO_WHISPER=1` says so, and those tests skip with that reason.
Mark a test `@pytest.mark.whisper_base(folder)` (tests/conftest.py checks the mark before set-up)
or call `require_whisper_base()` where the model decides what to expect.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.fetch_whisper_base import default_dir

NO_WHISPER = "SPEECH_TEST_NO_WHISPER"
WHISPER_BASE = default_dir()   # where setup.sh assembles it (KOREAN_SPEECH_CACHE moves it)


def absent_on_purpose() -> bool:
    return os.environ.get(NO_WHISPER, "").strip() not in ("", "0")


def whisper_base_present(folder: Path = WHISPER_BASE, file: str = "model.bin") -> bool:
    """True when the model is there; False only when it is absent on purpose; otherwise the test fails."""
    if (Path(folder) / file).exists():
        return True
    if absent_on_purpose():
        return False
    pytest.fail(f"Whisper base is missing ({Path(folder) / file}): run setup.sh, or set {NO_WHISPER}=1 "
                f"to skip the tests that need it", pytrace=False)


def require_whisper_base(folder: Path = WHISPER_BASE, file: str = "model.bin") -> Path:
    if not whisper_base_present(folder, file):
        pytest.skip(f"{NO_WHISPER} is set: Whisper base is absent on purpose (no {Path(folder) / file})")
    return Path(folder)
