"""Pack a training manifest (and a noise folder) as Opus so it fits a small transfer limit.

A lent GPU machine takes at most 64 MiB of files with each command; 68 minutes of FLAC speech
plus the household noise is several times that. Opus at 40 kb/s keeps the speech usable for
training (evaluation in this repo still runs on the original audio):

    python -m training.pack_for_device --manifest data/ko-speech/train.jsonl data/ko-speech/dev.jsonl \
        --noise-dir ../shared/data/noise --out .gpu/data

writes `.gpu/data/ko-speech/{train,dev}.jsonl` (audio paths rewritten to `audio/UTT.ogg`), the
Opus files beside them, and `.gpu/data/noise/manifest.tsv` + clips (each cut to --noise-max-seconds).
Needs ffmpeg with libopus. Files already packed are kept, so a rerun only adds what is missing.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training.manifest import read_manifest


def opus_job(src: Path, dst: Path, bitrate: str, max_seconds: float = 0.0) -> list[str]:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src)]
    if max_seconds:
        cmd += ["-t", f"{max_seconds:g}"]
    return cmd + ["-ac", "1", "-c:a", "libopus", "-b:a", bitrate, str(dst)]


def pack_manifest(manifest: Path, out_dir: Path, bitrate: str) -> list[list[str]]:
    """Rewrite one manifest into out_dir/<its folder name>/ and return the ffmpeg commands."""
    dest = out_dir / manifest.parent.name
    (dest / "audio").mkdir(parents=True, exist_ok=True)
    jobs, rows = [], []
    for r in read_manifest(manifest):  # read_manifest resolves audio paths against the manifest
        dst = dest / "audio" / f"{r.get('utt') or Path(r['audio']).stem}.ogg"
        if not dst.exists():
            jobs.append(opus_job(Path(r["audio"]), dst, bitrate))
        rows.append({**r, "audio": f"audio/{dst.name}"})
    with open(dest / manifest.name, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return jobs


def pack_noise(noise_dir: Path, out_dir: Path, bitrate: str, max_seconds: float) -> list[list[str]]:
    dest = out_dir / "noise"
    dest.mkdir(parents=True, exist_ok=True)
    with open(noise_dir / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    jobs = []
    with open(dest / "manifest.tsv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        for r in rows:
            dst = dest / "_".join(Path(r["path"]).with_suffix(".ogg").parts)
            if not dst.exists():
                jobs.append(opus_job(noise_dir / r["path"], dst, bitrate, max_seconds))
            if "duration" in r and max_seconds:
                r["duration"] = f"{min(float(r['duration']), max_seconds):.3f}"
            w.writerow({**r, "path": dst.name})
    return jobs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", nargs="+", required=True, help="JSONL manifests to pack")
    p.add_argument("--noise-dir", default=None, help="noise folder with manifest.tsv")
    p.add_argument("--out", default=".gpu/data")
    p.add_argument("--bitrate", default="40k", help="Opus bitrate for speech")
    p.add_argument("--noise-bitrate", default="32k")
    p.add_argument("--noise-max-seconds", type=float, default=300.0, help="cut longer noise clips (0 = keep)")
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    out = Path(a.out)
    jobs = []
    for m in a.manifest:
        jobs += pack_manifest(Path(m), out, a.bitrate)
    if a.noise_dir:
        jobs += pack_noise(Path(a.noise_dir), out, a.noise_bitrate, a.noise_max_seconds)
    with ThreadPoolExecutor(max(1, a.jobs)) as ex:
        for r in ex.map(lambda c: subprocess.run(c, capture_output=True, text=True), jobs):
            if r.returncode:
                raise SystemExit(f"ffmpeg failed: {r.stderr.strip()}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {len(jobs)} new files; {out} holds {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
