"""The best engine answers by default: SPEECH_WHISPER_MODEL, else Whisper base pinned on the Hub,
else the copy setup.sh assembles when the Hub is out of reach, else DeepSpeech2 with one log line.

The Hub is the loopback stand-in of tests/test_hub.py; the hub client reads HF_ENDPOINT and
HF_HOME at import, so each resolution runs in a subprocess with its own environment.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speech.default_engine import HUB_DEFAULT, WHISPER_ENV
from speech.metrics import cer_wer
from tests.test_hub import ROOT, client, hub, unused_port  # noqa: F401  (hub is a fixture)
from training.fetch_whisper_base import default_dir

EXAMPLES = ROOT / "tests" / "fixtures" / "examples"
MALE = EXAMPLES / "ko_male_emh00003.flac"
FEMALE = EXAMPLES / "ko_female_ava00013.flac"
BASE = default_dir()
needs_base = pytest.mark.whisper_base(BASE)   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1 (tests/needs.py)
pytestmark = pytest.mark.slow   # each of its tests took 32-98 s on 2 busy cores (load ~11)
REPO, _, PINNED = HUB_DEFAULT.partition("@")

RESOLVE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(name)s: %(message)s")
logging.getLogger("speech").setLevel(logging.INFO)
from speech.default_engine import default_whisper
from speech.stt import load_engine
try:
    if sys.argv[1] == "load":
        e = load_engine()
        print(json.dumps({"engine": e.name, "model": e.model_name}))
    else:
        folder, origin, name = default_whisper()
        print(json.dumps({"path": str(folder), "origin": origin, "name": name}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def fake_whisper(folder: Path, tag: str) -> dict:
    """What resolution looks at: a CTranslate2 Whisper folder (model.bin and its JSON files)."""
    files = {"model.bin": f"weights {tag}".encode(), "config.json": b"{}", "tokenizer.json": b"{}",
             "vocabulary.json": b"[]"}
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def resolve(what, endpoint, tmp_path, cache=None, env=None, offline=False):
    """-> (answer, speech log lines). `cache` is KOREAN_SPEECH_CACHE (where setup.sh's copy lives)."""
    saved = {k: os.environ.get(k) for k in ("KOREAN_SPEECH_CACHE", WHISPER_ENV)}
    os.environ["KOREAN_SPEECH_CACHE"] = str(cache or tmp_path / "no-cache")
    os.environ.pop(WHISPER_ENV, None)
    os.environ.update(env or {})
    try:
        proc = client(RESOLVE, [what], endpoint, tmp_path / "hf", offline=offline)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert proc.returncode == 0, proc.stderr
    logs = [line for line in proc.stderr.splitlines() if line.startswith("LOG") and " speech:" in line]
    return json.loads(proc.stdout.strip().splitlines()[-1]), logs


def test_the_variable_comes_first(hub, tmp_path):
    hub.put(REPO, fake_whisper(tmp_path / "served", "hub"), sha=PINNED)
    mine = tmp_path / "my-whisper"
    fake_whisper(mine, "mine")
    got, logs = resolve("resolve", hub.endpoint, tmp_path, env={WHISPER_ENV: str(mine)})
    assert got == {"path": str(mine), "origin": WHISPER_ENV, "name": str(mine)} and logs == []
    assert not any(path.startswith(f"/{REPO}/resolve/") for _, path, _ in hub.requests)
    # a model that was asked for and cannot be used is an error, not a quiet fallback
    got, _ = resolve("load", hub.endpoint, tmp_path, env={WHISPER_ENV: str(tmp_path / "typo")})
    assert got["error"] == "ModelNotFoundError" and "typo" in got["message"]


def test_the_pinned_hub_copy_then_offline(hub, tmp_path):
    files = fake_whisper(tmp_path / "served", "hub")
    hub.put(REPO, files, sha=PINNED)
    fake_whisper(tmp_path / "cache" / "whisper-base" / "model", "setup")   # present, but the Hub comes first
    got, logs = resolve("resolve", hub.endpoint, tmp_path, cache=tmp_path / "cache")
    path = Path(got["path"])
    assert path.parts[-2:] == ("snapshots", PINNED) and str(path).startswith(str(tmp_path / "hf")), got
    assert got["origin"] == "hub" and got["name"] == "whisper-base" and logs == []
    assert (path / "model.bin").read_bytes() == files["model.bin"]
    fetched = {p for _, p, _ in hub.requests if p.startswith(f"/{REPO}/resolve/")}
    assert fetched and all(p.startswith(f"/{REPO}/resolve/{PINNED}/") for p in fetched)   # the pinned commit only
    # Later, with the Hub gone: the cached pinned copy, with no request and no log line.
    n = len(hub.requests)
    got, logs = resolve("resolve", f"http://127.0.0.1:{unused_port()}", tmp_path, cache=tmp_path / "cache")
    assert Path(got["path"]) == path and logs == [] and len(hub.requests) == n


def test_unreachable_hub_uses_the_setup_copy(tmp_path):
    copy = tmp_path / "cache" / "whisper-base" / "model"
    fake_whisper(copy, "setup")
    for offline in (False, True):   # a dead endpoint, or offline mode
        got, logs = resolve("resolve", f"http://127.0.0.1:{unused_port()}", tmp_path, cache=tmp_path / "cache",
                            offline=offline)
        assert got == {"path": str(copy), "origin": "setup.sh", "name": "whisper-base"}, got
        assert len(logs) == 1 and "setup.sh" in logs[0] and REPO in logs[0], logs


def test_no_whisper_at_all_gives_deepspeech2_with_one_log_line(tmp_path):
    got, logs = resolve("load", f"http://127.0.0.1:{unused_port()}", tmp_path)
    assert got == {"engine": "ds2", "model": "ds2-ko"}, got
    assert len(logs) == 1 and "WARNING" in logs[0] and "DeepSpeech2" in logs[0], logs
    got, _ = resolve("resolve", f"http://127.0.0.1:{unused_port()}", tmp_path)   # asked for Whisper itself
    assert got["error"] == "ModelNotFoundError" and "fetch_whisper_base" in got["message"], got


# -- the real model, offline: the CLI with no --engine, --compare, analyze --transcribe -------------

def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if k != WHISPER_ENV}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "speech", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@needs_base
def test_cli_default_is_whisper_and_compare_shows_both():
    p = run_cli("transcribe", str(MALE), "--format", "jsonl", "--no-progress")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)
    assert row["engine"] == "whisper" and row["model"] == "whisper-base", row
    assert cer_wer(["이 값이 실제 질량이라고 가정하면 토성보다도 가볍습니다."], [row["text"]])[0] < 0.15, row["text"]
    p = run_cli("transcribe", str(MALE), "--compare", "--no-progress")
    assert p.returncode == 0, p.stderr
    lines = [line.split("\t") for line in p.stdout.splitlines()]
    assert [len(x) for x in lines] == [4, 4], p.stdout
    assert lines[0][1].startswith("Whisper base (OpenAI, 74M) · CER ") and lines[1][1].startswith("DeepSpeech2 (")
    assert lines[0][3] == row["text"] and lines[1][3] and lines[1][3] != row["text"]
    assert all(float(x[2].removesuffix(" s")) > 0 for x in lines)
    p = run_cli("transcribe", str(MALE), "--model", str(BASE), "--no-progress")   # a model needs its engine
    assert p.returncode == 2 and "--engine" in p.stderr


@needs_base
def test_analyze_transcribes_turns_with_the_default_engine():
    p = run_cli("analyze", str(FEMALE), "--transcribe", "--format", "json", "--no-progress")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    text = " ".join(t.get("text") or "" for t in report["turns"])
    assert "어둠 속을" in text and "자동차" in text, text
