"""Packaging: pyproject.toml is the one list of requirements (setup.sh and the Space's
requirements.txt follow it), and the built wheel, used outside this folder, loads the embedded
default models and answers through its console command."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("ci_requirements", ROOT / ".ci" / "requirements.py")
requirements = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(requirements)

FEMALE = ROOT / "tests" / "fixtures" / "examples" / "ko_female_ava00013.flac"


def test_the_space_requirements_are_generated_from_pyproject():
    assert (ROOT / "requirements.txt").read_text(encoding="utf-8") == requirements.space_file(), \
        "requirements.txt is out of step with pyproject.toml: python .ci/requirements.py --space > requirements.txt"
    space = requirements.requirements(["app"])
    assert any(r.startswith("gradio") for r in space)
    for tool in ("pytest", "playwright", "transformers", "noisereduce", "ray"):
        assert not any(r.startswith(tool) for r in space), f"{tool} is not part of the Space's runtime"


def test_setup_installs_core_and_every_extra():
    everything = requirements.requirements(sorted(requirements.project()["optional-dependencies"]))
    for extra, reqs in requirements.project()["optional-dependencies"].items():
        for r in reqs:
            assert r in everything or r.startswith("korean-speech["), (extra, r)
    assert not any(r.startswith("korean-speech") for r in everything)     # self-references expanded
    setup = (ROOT / "setup.sh").read_text(encoding="utf-8")
    assert ".ci/requirements.py --all" in setup and "requirements.txt" not in setup.replace(".requirements.txt", "")
    assert "bash setup.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match="extras = "):
        requirements.requirements(["gpu"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel `pip install .` would install, unpacked into a folder far from this checkout."""
    dist = tmp_path_factory.mktemp("dist")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and "setuptools" in p.stderr and ("No matching distribution" in p.stderr or "connection" in p.stderr.lower()):
        pytest.skip(f"no build backend available offline: {p.stderr[-300:]}")
    assert p.returncode == 0, p.stderr
    (wheel,) = dist.glob("korean_speech-*.whl")
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


def run_installed(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_loads_the_embedded_models(installed, tmp_path):
    assert (installed / "speech" / "checkpoints" / "ds2-ko" / "model.safetensors").is_file()
    assert (installed / "speech" / "checkpoints" / "gender-ko" / "config.json").is_file()
    assert not (installed / "checkpoints").exists() and not (installed / "tests").exists()
    code = f"""
import json, speech, speech.hub
from speech.gender import GenderClassifier
from speech.stt import load_engine
r = GenderClassifier.load().predict({str(FEMALE)!r})
t = load_engine("ds2").transcribe({str(FEMALE)!r})
print(json.dumps({{"module": speech.__file__, "checkpoints": str(speech.hub.CHECKPOINTS), "label": r.label,
                   "text": t.text}}))
"""
    p = run_installed(installed, code, tmp_path)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert got["module"].startswith(str(installed)) and got["checkpoints"] == str(installed / "speech" / "checkpoints")
    assert got["label"] == "female"
    from speech.stt import load_engine

    assert got["text"] == load_engine("ds2").transcribe(FEMALE).text     # the same model as this checkout's


def test_the_console_command(installed, tmp_path):
    entry = (next(installed.glob("korean_speech-*.dist-info")) / "entry_points.txt").read_text()
    assert "korean-speech = speech.cli:main" in entry
    code = f"""
import sys
from importlib.metadata import entry_points
(ep,) = [e for e in entry_points(group="console_scripts") if e.name == "korean-speech"]
sys.exit(ep.load()(["gender", {str(FEMALE)!r}, "--format", "jsonl"]))
"""
    p = run_installed(installed, code, tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["label"] == "female"
