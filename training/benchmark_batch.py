"""Batch throughput: `python -m speech batch` over a folder of long recordings, timed end to end.

    python -m training.make_batch_corpus --out data/batch-corpus --n 40 --minutes 15      # 10 h of audio
    python -m training.benchmark_batch --input data/batch-corpus --jobs 2 --out results/batch-benchmark

For each task set (default: analyze, then analyze,transcribe with the default engine) it runs the
real command with --force in a subprocess and reports the real-time factor of the whole batch
(wall time, model loading included, over the hours of audio), the mean per-recording RTF inside
the workers, and each worker's peak resident memory (from the per-recording records). `--ray`
adds the same analyze run on a new local Ray instance, to measure Ray's overhead. `--limit N`
takes the first N recordings (a reduced run); the machine's load is recorded next to the numbers.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from speech.batch import discover


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(input_path: str, out: Path, tasks: str, jobs: int, ray: bool, extra: list) -> dict:
    cmd = [sys.executable, "-m", "speech", "batch", input_path, "--out", str(out), "--tasks", tasks,
           "--jobs", str(jobs), "--force", "--no-progress", *extra]
    if ray:
        cmd += ["--ray", "local"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    load_before = load()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    with open(out / "summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    audio = sum(float(r["duration"] or 0) for r in rows)
    peaks = defaultdict(float)
    for r in rows:
        peaks[r["worker"]] = max(peaks[r["worker"]], float(r["worker_peak_mb"] or 0))
    rtfs = [float(r["rtf"]) for r in rows if r["rtf"]]
    return {
        "tasks": tasks, "ray": ray, "jobs": jobs, "recordings": len(rows),
        "failed": sum(bool(r["error"]) for r in rows), "audio_hours": round(audio / 3600, 3),
        "wall_seconds": round(wall, 1), "rtf": round(wall / audio, 4),
        "mean_recording_rtf": round(sum(rtfs) / len(rtfs), 4) if rtfs else None,
        "worker_peak_mb": sorted(round(v) for v in peaks.values()),
        "stt_engine": rows[0]["stt_engine"] if rows else "", "load_before": load_before, "load_after": load(),
        "command": " ".join(["python", "-m", "speech", *cmd[3:]]),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", default="data/batch-corpus")
    p.add_argument("--out", default="results/batch-benchmark", help="writes OUT.json and OUT.md")
    p.add_argument("--work", default="data/batch-benchmark", help="batch output folders")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--tasks", nargs="+", default=["analyze", "analyze,transcribe"])
    p.add_argument("--limit", type=int, default=None, help="only the first N recordings")
    p.add_argument("--ray", action="store_true", help="also run the first task set on a local Ray instance")
    p.add_argument("--batch-args", nargs=argparse.REMAINDER, default=[], help="passed on to speech batch")
    args = p.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    items = discover(args.input)
    input_path = args.input
    if args.limit:
        items = items[:args.limit]
        input_path = str(work / "input.txt")
        Path(input_path).write_text("".join(str(Path(i.path).resolve()) + "\n" for i in items), encoding="utf-8")
    runs = []
    plan = [(t, False) for t in args.tasks] + ([(args.tasks[0], True)] if args.ray else [])
    for tasks, ray in plan:
        tag = tasks.replace(",", "+") + ("-ray" if ray else "")
        r = run(input_path, work / tag, tasks, args.jobs, ray, args.batch_args)
        print(json.dumps(r), flush=True)
        runs.append(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "input": args.input, "limit": args.limit,
            "benchmark_command": "python -m training.benchmark_batch " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out.with_suffix(".json").write_text(json.dumps({**meta, "runs": runs}, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Batch throughput ({meta['date']}, {meta['cpus']} CPUs)", "",
             f"`{meta['benchmark_command']}`", "",
             "RTF = wall time of the whole command (workers starting, models loading, summary) / audio duration.",
             "Load average (1/5/15 min) before and after each run: numbers on a busy machine are pessimistic.", "",
             "| tasks | runner | jobs | recordings | audio (h) | wall (s) | RTF | mean RTF per recording | peak MB per worker | engine | load before / after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['tasks']} | {'ray (local)' if r['ray'] else 'processes'} | {r['jobs']} | {r['recordings']} "
                     f"| {r['audio_hours']} | {r['wall_seconds']} | {r['rtf']} | {r['mean_recording_rtf']} "
                     f"| {', '.join(map(str, r['worker_peak_mb']))} | {r['stt_engine'] or '-'} "
                     f"| {r['load_before']} / {r['load_after']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
