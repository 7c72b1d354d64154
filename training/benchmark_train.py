"""Training throughput: the input pipeline per CPU worker, and train_ds2's own loop per device for
each model size, with the share of step time spent waiting for data; the time a 1,000-hour epoch
would take at that rate.

    python -m training.benchmark_train --manifest data/ko-speech/train.jsonl --noise-dir ../shared/data/noise \
        --device cpu --presets small,study --steps 6 --out results/benchmark-train
    # on a GPU (see training/gpu_throughput.sh): --device cuda --workers 8 --steps 200

Input pipeline: a DataLoader with one worker (decode, resample, speed perturbation, reverberation,
household noise, gain: what training asks of it) over --pipeline-batches batches; audio seconds
delivered per second is the throughput of one worker. Training: `training.train_ds2.main` for
--steps steps on --manifest, reading the throughput it logs after its first step (so model
compilation and worker start-up are not counted) and the share of that time spent in data wait.
Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from speech.models.deepspeech2 import DeepSpeech2
from speech.text import JamoTokenizer
from training import train_ds2
from training.data import AugmentConfig, BucketBatchSampler, CompactManifest, SpeechDataset, loader

HOURS = 1000


def pipeline_throughput(manifest: str, noise_dir: str | None, workers: int, batches: int, batch_seconds: float) -> dict:
    if workers == 0:
        torch.set_num_threads(1)  # as in a DataLoader worker
    m = CompactManifest.read(manifest, min(20.0, batch_seconds))
    aug = AugmentConfig(noise_dir=noise_dir, noise_prob=0.6 if noise_dir else 0.0, reverb_prob=0.2)
    sampler = BucketBatchSampler(m.durations, batch_seconds, seed=0)
    dl = loader(SpeechDataset(m, JamoTokenizer(), aug), sampler, workers, pin=False)
    it = iter(dl)
    next(it)  # worker start-up and the first batch are not counted
    t0, cpu0, seconds, n = time.time(), time.process_time(), 0.0, 0
    for batch in it:
        seconds += batch.seconds
        n += 1
        if n >= batches:
            break
    took, cpu = time.time() - t0, time.process_time() - cpu0
    r = {"workers": workers, "batches": n, "audio_seconds": round(seconds, 1),
         "audio_sec_per_sec": round(seconds / took, 1), "per_worker": round(seconds / took / max(1, workers), 1)}
    if workers == 0:  # all the work in this process: audio seconds per CPU second holds on a busy machine too
        r["per_cpu_second"] = round(seconds / cpu, 1)
    return r


def training_throughput(preset: str, manifest: str, dev: str, noise_dir: str | None, device: str, steps: int,
                        workers: int, batch_seconds: float, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--train", manifest, "--dev", dev, "--out", tmp, "--preset", preset, "--device", device,
                "--max-steps", str(steps), "--epochs", "1", "--eval-every", "1000000", "--workers", str(workers),
                "--batch-seconds", str(batch_seconds), "--max-duration", str(min(20.0, batch_seconds)),
                "--warmup-steps", "10", *extra]
        if noise_dir:
            argv += ["--noise-dir", noise_dir]
        t0 = time.time()
        train_ds2.main(argv)
        rec = json.loads((Path(tmp) / "train.log").read_text().splitlines()[0])
    dims = train_ds2.parse_args(["--train", "t", "--dev", "d", "--preset", preset]).dims(len(JamoTokenizer()))
    params = DeepSpeech2(dims).num_parameters()
    rate = rec.get("steady_audio_sec_per_sec", rec["audio_sec_per_sec"])
    return {"preset": preset, "parameters": params, "device": device, "steps": rec["step"],
            "audio_sec_per_sec": round(rate, 1), "data_wait_share": rec.get("steady_data_wait_share"),
            "startup_seconds": rec.get("startup_seconds"), "wall_seconds": round(time.time() - t0, 1),
            "hours_per_1000h_epoch": round(HOURS * 3600 / rate / 3600, 1)}


def markdown(r: dict) -> str:
    lines = ["# Training throughput", "", f"Command: `{r['command']}`", "",
             f"Machine: {r['machine']}; torch {r['torch']}; load average at the start {r['load_average']}.", "",
             "## Input pipeline (decode, resample, augment) per CPU worker", "",
             "Workers 0 is the pipeline in the measuring process itself; its audio seconds per CPU second is what one "
             "worker delivers on an idle core.", "",
             "| workers | batches | audio s/s (wall) | per worker | per CPU second |", "|---|---|---|---|---|"]
    for p in r["pipeline"]:
        lines.append(f"| {p['workers']} | {p['batches']} | {p['audio_sec_per_sec']} | {p['per_worker']} | "
                     f"{p.get('per_cpu_second', '')} |")
    lines += ["", "## Training (train_ds2's loop, after its first step)", "",
              "| model | parameters | device | steps | audio s/s | data wait share | 1,000 h epoch (h) |",
              "|---|---|---|---|---|---|---|"]
    for t in r["training"]:
        lines.append(f"| {t['preset']} | {t['parameters'] / 1e6:.1f}M | {t['device']} | {t['steps']} | "
                     f"{t['audio_sec_per_sec']} | {t['data_wait_share']} | {t['hours_per_1000h_epoch']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True, help="training manifest")
    p.add_argument("--dev", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures/ko-speech/manifest.jsonl"),
                   help="dev manifest, evaluated once at the end (small by default: it is not what is measured)")
    p.add_argument("--noise-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--presets", default="small,study")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers per training run")
    p.add_argument("--pipeline-workers", default="0,1", help="comma-separated worker counts to measure (0: in process)")
    p.add_argument("--pipeline-batches", type=int, default=40)
    p.add_argument("--batch-seconds", type=float, default=160.0)
    p.add_argument("--train-args", default="", help="extra train_ds2 flags, e.g. '--threads 2' or '--compile'")
    p.add_argument("--out", default="results/benchmark-train")
    a = p.parse_args(argv)
    report = {"command": "python -m training.benchmark_train " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs" + (
                  f", {torch.cuda.get_device_name()}" if a.device.startswith("cuda") else ""),
              "torch": torch.__version__, "load_average": [round(x, 1) for x in os.getloadavg()],
              "pipeline": [], "training": []}
    for w in (int(x) for x in a.pipeline_workers.split(",") if x):
        report["pipeline"].append(pipeline_throughput(a.manifest, a.noise_dir, w, a.pipeline_batches, a.batch_seconds))
        print(report["pipeline"][-1], flush=True)
    for preset in (x for x in a.presets.split(",") if x):
        report["training"].append(training_throughput(preset, a.manifest, a.dev, a.noise_dir, a.device,
                                                      a.steps, a.workers, a.batch_seconds, a.train_args.split()))
        print(report["training"][-1], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(report, indent=2) + "\n")
    Path(a.out + ".md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
