"""Speed and peak memory of the who-spoke analysis (no transcription) on a long recording.

    python -m training.benchmark_analysis --conversations data/13/conv-dev --minutes 60 \
        --out results/analysis_benchmark

Builds a recording of `--minutes` by chaining the clean synthetic conversations (repeated as
needed), writes it as FLAC, then runs `python -m speech analyze` on it in a child process and
reports wall time, real-time factor and the child's peak resident memory (ru_maxrss), with the
machine's load average before and after (a busy machine makes the time longer, not shorter).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speech.audio import SAMPLE_RATE, load_audio


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-dev")
    p.add_argument("--variant", default="noise")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    p.add_argument("--out", default="results/analysis_benchmark")
    args = p.parse_args(argv)
    files = sorted(Path(args.conversations).glob(f"*.{args.variant}.flac"))
    need = int(args.minutes * 60 * SAMPLE_RATE)
    parts, n, i = [], 0, 0
    while n < need:
        a = load_audio(files[i % len(files)])
        parts.append(a[:need - n])
        n += len(parts[-1])
        i += 1
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.flac"
        sf.write(str(wav), np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
        del parts
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "speech", "analyze", str(wav), "--format", "json",
                               "--no-progress"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rep = json.loads(proc.stdout)
    res = {"minutes": args.minutes, "wall_s": round(wall, 1), "rtf": round(wall / (args.minutes * 60), 4),
           "peak_rss_mb": round(peak_mb), "threads": args.threads, "cpu_count": os.cpu_count(),
           "load_before": [round(x, 1) for x in load0], "load_after": [round(x, 1) for x in load1],
           "speakers_found": rep["n_speakers"], "speech_seconds": rep["speech_seconds"],
           "command": f"python -m training.benchmark_analysis --conversations {args.conversations} "
                      f"--minutes {args.minutes:g} --variant {args.variant}"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
