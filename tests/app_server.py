"""Run app.py as a real server, once per test session, for the API and the browser tests.

Both test modules call `app_url()`; the first call starts the server on a free port of 127.0.0.1
and waits until it answers, later calls reuse it, and it is stopped when Python exits. The app
is configured only through its environment, as on a Space: the test sets a 60 s limit for speech
to text and gender so the two-minute family recording can check the "too long" refusal.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "fixtures" / "examples"
ARTIFACTS = ROOT / "tests" / "artifacts"
MAX_SECONDS = 60
STARTUP_TIMEOUT = 180.0

_server: dict = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-n:] if path.exists() else "(no log)"


def _stop() -> None:
    proc = _server.get("proc")
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def app_url() -> str:
    if "url" in _server:
        if _server["proc"].poll() is not None:
            pytest.fail(f"the app server died:\n{_log_tail(_server['log'])}")
        return _server["url"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = ARTIFACTS / "app_server.log"
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "SPEECH_MAX_SECONDS": str(MAX_SECONDS),
           "PYTHONUNBUFFERED": "1"}
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    _server.update(proc=proc, log=log)
    atexit.register(_stop)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode} before serving:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    _server["url"] = url
                    return url
        except OSError:
            pass
        time.sleep(0.5)
    _stop()
    pytest.fail(f"app.py did not answer on {url} within {STARTUP_TIMEOUT:.0f} s:\n{_log_tail(log)}")
