"""speech.hub.resolve_model and training/push_to_hub.py against a loopback stand-in for the Hub.

The stand-in implements the endpoints huggingface_hub 2.x calls (read from its source):
snapshot_download -> GET /api/models/{id}/revision/{rev} (sha), GET /api/models/{id}/tree/{sha}
(files), HEAD+GET /{id}/resolve/{sha}/{file} (ETag, X-Repo-Commit, Content-Length); create_repo +
upload_folder -> POST /api/repos/create, /api/validate-yaml, /api/models/{id}/preupload/{rev},
/api/models/{id}/commit/{rev} (NDJSON, files in base64). The hub client reads HF_ENDPOINT and
HF_HOME at import, so every client call runs in a subprocess with its own environment.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

from speech.bundle import load_release, save_release
from speech.hub import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_test_token"


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}   # repo id -> {"sha", "files": {path: bytes}, "private"}
        self.requests: list[tuple[str, str, str]] = []   # (method, path, Authorization)

    def put(self, repo_id: str, files: dict, private: bool = False, sha: str = ""):
        sha = sha or hashlib.sha1(json.dumps({p: git_blob_sha(b) for p, b in sorted(files.items())}).encode()).hexdigest()
        self.repos[repo_id] = {"sha": sha, "files": dict(files), "private": private}
        return sha

    def handler(hub):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status, body=b"", headers=None, head=False):
                if isinstance(body, (dict, list)):
                    body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def repo(self, repo_id, rev, head=False):
                r = hub.repos.get(repo_id)
                if r is None:
                    self.send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head)
                elif rev not in ("main", r["sha"]):
                    self.send(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}, head)
                else:
                    return r

            def route(self, head=False):
                path = urlparse(self.path).path
                hub.requests.append((self.command, path, self.headers.get("Authorization", "")))
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
                    if r := self.repo(m[1], unquote(m[2])):
                        self.send(200, {"id": m[1], "sha": r["sha"], "private": r["private"],
                                        "siblings": [{"rfilename": p} for p in sorted(r["files"])]})
                elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
                    if r := self.repo(m[1], unquote(m[2])):
                        self.send(200, [{"type": "file", "path": p, "size": len(b), "oid": git_blob_sha(b)}
                                        for p, b in sorted(r["files"].items())])
                elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    if r := self.repo(m[1], unquote(m[2]), head):
                        data = r["files"].get(unquote(m[3]))
                        if data is None:
                            self.send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                        else:
                            self.send(200, data, {"ETag": f'"{git_blob_sha(data)}"', "X-Repo-Commit": r["sha"],
                                                  "Content-Type": "application/octet-stream"}, head)
                else:
                    self.send(404, {"error": f"no route {path}"})

            def do_HEAD(self):
                self.route(head=True)

            def do_GET(self):
                self.route()

            def do_POST(self):
                path = urlparse(self.path).path
                hub.requests.append(("POST", path, self.headers.get("Authorization", "")))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.send(401, {"error": "Invalid credentials"}, {"X-Error-Message": "Invalid credentials in Authorization header"})
                if path == "/api/repos/create":
                    d = json.loads(body)
                    repo_id = f"{d['organization']}/{d['name']}"
                    if repo_id in hub.repos:
                        return self.send(409, {"error": "You already created this model repo"})
                    hub.put(repo_id, {}, private=d.get("visibility") == "private")
                    return self.send(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self.send(200, {"errors": [], "warnings": []})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
                    files = json.loads(body)["files"]
                    return self.send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                     for f in files]})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
                    r = hub.repos[m[1]]
                    files = dict(r["files"])
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] != "header":
                            return self.send(400, {"error": f"stand-in does not support {item['key']}"})
                    sha = hub.put(m[1], files, r["private"])
                    return self.send(200, {"commitUrl": f"http://{self.headers['Host']}/{m[1]}/commit/{sha}",
                                           "commitOid": sha})
                self.send(404, {"error": f"no route {path}"})

        return Handler


@pytest.fixture
def hub():
    fake = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from speech.features import FeatureConfig
    from speech.models.deepspeech2 import DeepSpeech2, DS2Dims
    from speech.text import JamoTokenizer

    torch.manual_seed(3)
    tok, feats = JamoTokenizer(), FeatureConfig()
    dims = DS2Dims(n_features=feats.n_features, n_tokens=len(tok), rnn_hidden=16, rnn_layers=1, conv_channels=2)
    folder = save_release(tmp_path_factory.mktemp("rel") / "ds2-tiny", DeepSpeech2(dims).state_dict(),
                          {"model_type": "deepspeech2", "name": "ds2-tiny", "dims": dims.to_dict(),
                           "features": feats.to_dict(), "tokenizer": tok.to_dict(), "license": "CC-BY-NC-SA-4.0"})
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-sa-4.0\nlanguage: ko\n---\n# ds2-tiny\n", encoding="utf-8")
    return folder


def folder_files(folder) -> dict:
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RESOLVE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(name)s: %(message)s")
from speech.hub import resolve_model
try:
    print(json.dumps({"path": str(resolve_model(sys.argv[1], "stt"))}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def client(code, args, endpoint, hf_home, offline=False, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1" if offline else "0",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_XET="1",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    if token:
        env["HF_TOKEN"] = token
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    return proc


def resolve(ref, endpoint, hf_home, offline=False):
    proc = client(RESOLVE, [ref], endpoint, hf_home, offline)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def assert_same_model(a, b):
    (sa, ca), (sb, cb) = load_release(a), load_release(b)
    assert ca == cb and sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_download_then_offline_uses_the_cache(hub, release, tmp_path):
    sha = hub.put("team/ds2-tiny", folder_files(release))
    got, _ = resolve("team/ds2-tiny", hub.endpoint, tmp_path / "hf")
    path = Path(got["path"])
    assert path.parts[-2:] == ("snapshots", sha) and str(path).startswith(str(tmp_path / "hf"))
    assert folder_files(path) == folder_files(release)
    assert_same_model(path, release)
    fetched = {p for m, p, _ in hub.requests if p.startswith("/team/ds2-tiny/resolve/")}
    assert fetched == {f"/team/ds2-tiny/resolve/{sha}/{n}" for n in ("README.md", "config.json", "model.safetensors")}

    # Offline, with the Hub gone: the cached copy, no request anywhere.
    n = len(hub.requests)
    dead = f"http://127.0.0.1:{unused_port()}"
    got, err = resolve("team/ds2-tiny", dead, tmp_path / "hf", offline=True)
    assert Path(got["path"]) == path and "LOG" not in err and len(hub.requests) == n
    # A pinned revision that is cached resolves offline as well.
    got, _ = resolve(f"team/ds2-tiny@{sha}", dead, tmp_path / "hf", offline=True)
    assert Path(got["path"]) == path


def test_unreachable_hub_falls_back_to_the_embedded_default(tmp_path):
    got, err = resolve("team/ds2-tiny", f"http://127.0.0.1:{unused_port()}", tmp_path / "hf")
    assert Path(got["path"]) == DEFAULTS["stt"]
    logs = [line for line in err.splitlines() if line.startswith("LOG")]
    assert len(logs) == 1 and "team/ds2-tiny" in logs[0] and "embedded default" in logs[0]
    # Offline mode with an empty cache: the same fallback.
    got, err = resolve("team/ds2-tiny", f"http://127.0.0.1:{unused_port()}", tmp_path / "hf2", offline=True)
    assert Path(got["path"]) == DEFAULTS["stt"] and sum(line.startswith("LOG") for line in err.splitlines()) == 1


def test_missing_repo_or_revision_is_an_error(hub, release, tmp_path):
    got, err = resolve("team/no-such-model", hub.endpoint, tmp_path / "hf")
    assert got["error"] == "ModelNotFoundError" and "team/no-such-model" in got["message"]
    assert "LOG" not in err  # an error, not a silent fallback
    hub.put("team/ds2-tiny", folder_files(release))
    got, _ = resolve("team/ds2-tiny@v9", hub.endpoint, tmp_path / "hf")
    assert got["error"] == "ModelNotFoundError" and "v9" in got["message"]


PUSH = "import sys; from training.push_to_hub import main; sys.exit(main(sys.argv[1:]))"


def test_push_then_download_round_trip(hub, release, tmp_path):
    release = Path(shutil.copytree(release, tmp_path / "release"))
    # Stray files next to a release (a resumable checkpoint, logs) must not be published.
    (release / "last.pt").write_bytes(b"not for the hub")
    (release / "train.log").write_text("{}\n")
    proc = client(PUSH, [str(release), "team/pushed", "--private", "--token", TOKEN, "--commit-message", "first"],
                  hub.endpoint, tmp_path / "hf-push")
    assert proc.returncode == 0, proc.stderr
    repo = hub.repos["team/pushed"]
    assert repo["private"] and sorted(repo["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert all(auth == f"Bearer {TOKEN}" for m, _, auth in hub.requests if m == "POST")
    got, _ = resolve("team/pushed", hub.endpoint, tmp_path / "hf-pull")
    assert_same_model(got["path"], release)

    # Without a token the stand-in refuses, like the Hub; without a card the script refuses first.
    proc = client(PUSH, [str(release), "team/other"], hub.endpoint, tmp_path / "hf-push")
    assert proc.returncode == 1 and "did not accept" in proc.stderr and "team/other" not in hub.repos
    (release / "README.md").unlink()
    n = len(hub.requests)
    proc = client(PUSH, [str(release), "team/other"], hub.endpoint, tmp_path / "hf-push", token=TOKEN)
    assert proc.returncode == 2 and "model card" in proc.stderr and len(hub.requests) == n
