"""Speed and peak memory of the who-spoke analysis (no transcription) on a long recording.

    python -m training.benchmark_analysis --conversations data/13/conv-dev --minutes 60 \
        --out results/analysis_benchmark

Builds a recording of `--minutes` by chaining the clean synthetic conversations (repeated as
needed), writes it as FLAC, then runs `python -m speech analyze` on it in a child process and
reports wall time, the child's CPU time (user + system: steadier than wall time on a busy
machine), real-time factor and the child's peak resident memory (ru_maxrss), with the machine's
load average before and after (a busy machine makes the time longer, not shorter). `--transcribe`
adds transcription of every turn (the default engine, Whisper base); `--detect-tv` adds the TV
judgement. `--keep PATH` keeps the
recording (FLAC) for `python -m training.memory_stages PATH`, which shows the memory per stage;
`--recording PATH` analyses that file instead of building one (before/after comparisons).
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


def build(conversations: str, variant: str, minutes: float, wav: Path) -> None:
    """Chain the `variant` conversations (repeated as needed) into `minutes` of 16-bit FLAC."""
    files = sorted(Path(conversations).glob(f"*.{variant}.flac"))
    if not files:
        raise SystemExit(f"no *.{variant}.flac in {conversations}")
    need = int(minutes * 60 * SAMPLE_RATE)
    parts, n, i = [], 0, 0
    while n < need:
        a = load_audio(files[i % len(files)])
        parts.append(a[:need - n])
        n += len(parts[-1])
        i += 1
    sf.write(str(wav), np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-dev")
    p.add_argument("--variant", default="noise")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    p.add_argument("--transcribe", action="store_true", help="also transcribe every turn")
    p.add_argument("--detect-tv", action="store_true", help="also judge which speakers are a TV or radio")
    p.add_argument("--keep", default=None, metavar="FLAC", help="keep the long recording here")
    p.add_argument("--recording", default=None, help="analyse this file instead of building one")
    p.add_argument("--report", default=None, metavar="JSON",
                   help="save the analysis itself here (to compare two versions of the code: only rtf may differ)")
    p.add_argument("--out", default="results/analysis_benchmark")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.recording:
            wav = Path(args.recording)
            args.minutes = sf.info(str(wav)).duration / 60
        else:
            wav = Path(args.keep) if args.keep else Path(tmp) / "long.flac"
            build(args.conversations, args.variant, args.minutes, wav)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "speech", "analyze", str(wav), "--format", "json",
                               "--no-progress"] + ["--transcribe"] * args.transcribe
                              + ["--detect-tv"] * args.detect_tv,
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb = usage.ru_maxrss / 1024
        cpu = usage.ru_utime + usage.ru_stime
    rep = json.loads(proc.stdout)
    if args.report:
        Path(args.report).write_text(proc.stdout, encoding="utf-8")
    source = (f"--recording {args.recording}" if args.recording else
              f"--conversations {args.conversations} --minutes {args.minutes:g} --variant {args.variant}")
    res = {"minutes": args.minutes, "transcribe": args.transcribe, "detect_tv": args.detect_tv, "wall_s": round(wall, 1),
           "rtf": round(wall / (args.minutes * 60), 4), "cpu_s": round(cpu, 1),
           "peak_rss_mb": round(peak_mb), "threads": args.threads, "cpu_count": os.cpu_count(),
           "load_before": [round(x, 1) for x in load0], "load_after": [round(x, 1) for x in load1],
           "speakers_found": rep["n_speakers"], "speech_seconds": rep["speech_seconds"],
           "command": f"python -m training.benchmark_analysis {source} --threads {args.threads}"
                      + " --transcribe" * args.transcribe + " --detect-tv" * args.detect_tv}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
