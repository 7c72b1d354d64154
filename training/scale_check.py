"""The trainer at 1,000 hours without the data: start-up time and host memory of each rank on a
synthetic manifest (training/synth_manifest.py), under DDP with gloo on this CPU, and a mid-epoch
resume.

    python -m training.scale_check --train data/synth/train-1000h.jsonl --dev data/ko-speech/dev.jsonl \
        --out results/scale-1000h

Runs `torchrun --nproc_per_node 2 -m training.train_ds2` for a few steps with a small model, samples
the proportional set size (PSS: shared pages split between the processes that share them) of each
rank together with its DataLoader workers, then resumes the run from its mid-epoch checkpoint and
checks that it continues at the next batch. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--rnn-hidden", "64", "--rnn-layers", "2", "--batch-seconds", "40", "--device", "cpu", "--threads", "1",
         "--warmup-steps", "10", "--eval-every", "1000", "--epochs", "1"]


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreeSampler:
    """Peak PSS of each rank (a child of torchrun) plus its own children (DataLoader workers)."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root, self.interval = root, interval
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            for rank_pid in _children(self.root):
                total = _pss_mb(rank_pid) + sum(_pss_mb(w) for w in _children(rank_pid))
                self.peaks[rank_pid] = max(self.peaks.get(rank_pid, 0.0), total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def torchrun(args: list[str], world: int) -> tuple[subprocess.CompletedProcess, dict, float]:
    exe = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.time()
    p = subprocess.Popen([str(exe), "--standalone", "--nproc_per_node", str(world), "-m", "training.train_ds2", *args],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeSampler(p.pid) as s:
        out, _ = p.communicate()
    return subprocess.CompletedProcess(p.args, p.returncode, out, ""), dict(s.peaks), time.time() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="large manifest (training/synth_manifest.py)")
    p.add_argument("--dev", required=True)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--run-dir", default="runs/scale-check")
    p.add_argument("--out", default="results/scale-1000h")
    a = p.parse_args(argv)
    run = Path(a.run_dir)
    if run.exists():
        raise SystemExit(f"{run} exists: remove it or give --run-dir")
    base = ["--train", a.train, "--dev", a.dev, "--out", str(run), "--workers", str(a.workers), "--save-every", "1",
            *SMALL]
    first, peaks, wall = torchrun([*base, "--max-steps", str(a.steps)], a.world)
    if first.returncode:
        raise SystemExit(first.stdout[-4000:])
    rec = [json.loads(x) for x in (run / "train.log").read_text().splitlines()]
    ck_batch = _checkpoint_position(run)
    second, peaks2, wall2 = torchrun([*base, "--max-steps", str(a.steps + 2), "--resume"], a.world)
    if second.returncode:
        raise SystemExit(second.stdout[-4000:])
    resumed_line = next(x for x in second.stdout.splitlines() if x.startswith("resumed from"))
    data_line = next(x for x in first.stdout.splitlines() if x.startswith("data:"))
    report = {
        "train": a.train, "world": a.world, "workers_per_rank": a.workers, "data": data_line,
        "startup_seconds": rec[0]["startup_seconds"], "first_run_wall_seconds": round(wall, 1),
        "peak_pss_mb_per_rank_with_workers": sorted(round(v) for v in peaks.values()),
        "resume_peak_pss_mb_per_rank_with_workers": sorted(round(v) for v in peaks2.values()),
        "checkpoint": ck_batch, "resumed": resumed_line,
        "resumed_at_next_batch": f"batch {ck_batch['batch']}," in resumed_line and ck_batch["epoch"] == 0,
        "load_average": os.getloadavg(),
        "command": "python -m training.scale_check " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    Path(a.out + ".md").write_text(markdown(report))
    print(markdown(report))
    return report


def _checkpoint_position(run: Path) -> dict:
    import torch

    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    return {"step": ck["step"], "epoch": ck["epoch"], "batch": ck["batch"]}


def markdown(r: dict) -> str:
    return "\n".join([
        "# The trainer on a synthetic 1,000-hour manifest (2 gloo ranks on this CPU)", "",
        f"Command: `{r['command']}`", "",
        f"- {r['data']}",
        f"- First training step {r['startup_seconds']} s after launch (target: under 60 s).",
        f"- Peak host memory per rank, its {r['workers_per_rank']} DataLoader worker(s) included (PSS): "
        f"{', '.join(f'{m} MB' for m in r['peak_pss_mb_per_rank_with_workers'])} (target: under 2 GB); "
        f"on resume {', '.join(f'{m} MB' for m in r['resume_peak_pss_mb_per_rank_with_workers'])}.",
        f"- Checkpoint after the first run: step {r['checkpoint']['step']}, epoch {r['checkpoint']['epoch'] + 1}, "
        f"{r['checkpoint']['batch']} batches of it done; the resumed run says: `{r['resumed']}` "
        f"(continues at the next batch: {r['resumed_at_next_batch']}).",
        f"- Load average while measured: {', '.join(f'{x:.1f}' for x in r['load_average'])} (2 cores).", ""])


if __name__ == "__main__":
    main()
