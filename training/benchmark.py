"""Speed and memory of a DeepSpeech2 release on this machine: model load time, inference real-time
factor on a 10 s and a 300 s recording, and training throughput of train_ds2's own training loop.

    python -m training.benchmark --model checkpoints/ds2-ko --manifest data/ko-speech/dev.jsonl \
        --train-manifest data/ko-speech/train.jsonl --out results/benchmark

The long recordings are corpus clips joined with short pauses (so the 300 s file goes through the
VAD path like a real long upload). Training runs `training.train_ds2.main` for a few steps on a
subset of --train-manifest with the release's own training settings (model size, unit, batch
seconds, augmentation) and reads the throughput it logs (audio seconds per second of the epoch).
Writes OUT.json and OUT.md and prints the table.
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

import numpy as np
import torch

from speech.audio import SAMPLE_RATE, load_audio
from speech.bundle import load_bundle
from speech.hub import resolve_model
from speech.stt import load_engine
from training.memory import RssSampler, peak_rss_mb
from training.manifest import read_manifest, write_manifest


def long_recording(rows: list[dict], seconds: float, pause: float = 0.4) -> tuple[np.ndarray, list[str]]:
    """Corpus clips joined with `pause` s of silence (looping over rows), cut to exactly `seconds`."""
    n = int(seconds * SAMPLE_RATE)
    parts, texts, total, i = [], [], 0, 0
    gap = np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32)
    while total < n:
        r = rows[i % len(rows)]
        a = load_audio(r["audio"])
        parts += [a, gap]
        texts.append(r["text"])
        total += len(a) + len(gap)
        i += 1
    return np.concatenate(parts)[:n], texts


def time_inference(engine, audio: np.ndarray, repeats: int) -> dict:
    engine.transcribe(audio[: 2 * SAMPLE_RATE])  # warm-up outside the timing
    times = []
    with RssSampler() as mem:
        for _ in range(repeats):
            t = time.perf_counter()
            engine.transcribe(audio)
            times.append(time.perf_counter() - t)
    seconds = len(audio) / SAMPLE_RATE
    return {"audio_seconds": seconds, "repeats": repeats, "seconds": [round(x, 3) for x in times],
            "rtf": round(min(times) / seconds, 4), "rtf_median": round(float(np.median(times)) / seconds, 4),
            "peak_rss_mb": round(mem.peak, 1), "rss_before_mb": round(mem.start, 1)}


def train_argv(cfg: dict) -> list[str]:
    """train_ds2 flags that rebuild the release's model and training settings (its saved TrainConfig)."""
    a = cfg["augment"]
    argv = ["--unit", cfg["unit"], "--feature-kind", cfg["features"]["kind"], "--n-mels", str(cfg["features"]["n_mels"]),
            "--frontend", cfg["frontend"], "--conv-channels", str(cfg["conv_channels"]), "--rnn-type", cfg["rnn_type"],
            "--rnn-hidden", str(cfg["rnn_hidden"]), "--rnn-layers", str(cfg["rnn_layers"]),
            "--dropout", str(cfg["dropout"]), "--optimizer", cfg["optimizer"],
            "--batch-seconds", str(cfg["batch_seconds"]), "--max-duration", str(cfg["max_duration"]),
            "--speed", ",".join(str(s) for s in a["speed"]), "--reverb-prob", str(a["reverb_prob"]),
            "--freq-masks", str(a["freq_masks"]), "--time-masks", str(a["time_masks"])]
    if not cfg["bidirectional"]:
        argv += ["--unidirectional", "--lookahead", str(cfg["lookahead"])]
    if a.get("noise_dir") and Path(a["noise_dir"]).is_dir():
        argv += ["--noise-dir", a["noise_dir"], "--noise-prob", str(a["noise_prob"]),
                 "--snr", f"{a['snr_min']},{a['snr_max']}"]
    return argv


def time_training(config: dict, train_manifest: str, steps: int, device: str) -> dict:
    """A few steps of train_ds2.main with the release's settings; its train.log gives the throughput."""
    from training import train_ds2

    tcfg = config.get("training", {}).get("config")
    if not tcfg:
        raise ValueError("the release config has no training.config; cannot rebuild its training run")
    rows = read_manifest(train_manifest)
    rows = [r for r in rows if r.get("duration", 0) <= tcfg["max_duration"]]
    # Enough audio for `steps` full batches, taken from the start of the manifest.
    need, take = steps * tcfg["batch_seconds"] * 1.2, []
    for r in rows:
        take.append(r)
        if sum(x.get("duration", 0) for x in take) >= need:
            break
    with tempfile.TemporaryDirectory() as tmp:
        write_manifest(Path(tmp) / "train.jsonl", take)
        write_manifest(Path(tmp) / "dev.jsonl", take[:2])
        argv = ["--train", str(Path(tmp) / "train.jsonl"), "--dev", str(Path(tmp) / "dev.jsonl"),
                "--out", str(Path(tmp) / "run"), "--epochs", "1", "--max-steps", str(steps), "--device", device,
                "--warmup-steps", "1"] + train_argv(tcfg)
        with RssSampler() as mem:
            train_ds2.main(argv)
        record = json.loads((Path(tmp) / "run" / "train.log").read_text().splitlines()[-1])
    return {"steps": record["step"], "audio_sec_per_sec": round(record["audio_sec_per_sec"], 2),
            "epoch_seconds": record["epoch_seconds"], "batch_seconds": tcfg["batch_seconds"],
            "utterances": len(take), "device": device, "peak_rss_mb": round(mem.peak, 1),
            "command_args": argv[6:]}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Benchmark: {report['model_name']} ({report['parameters'] / 1e6:.2f}M parameters)", "",
             f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['threads']} threads. "
             f"Command: `{report['command']}`", "",
             "| measure | value | peak RSS MB |", "|---|---|---|",
             f"| model load | {report['load_seconds']:.3f} s | {report['load_peak_rss_mb']:.0f} |"]
    for k, v in report["inference"].items():
        lines.append(f"| inference RTF, {k} file ({report['decoder']}) | {v['rtf']:.4f} "
                     f"(median {v['rtf_median']:.4f}, {v['repeats']} runs) | {v['peak_rss_mb']:.0f} |")
    t = report.get("training")
    if t:
        lines.append(f"| training throughput ({t['steps']} steps, {t['batch_seconds']:.0f} s batches, {t['device']}) "
                     f"| {t['audio_sec_per_sec']:.1f} audio s/s | {t['peak_rss_mb']:.0f} |")
    lines += [f"| process peak RSS | | {report['process_peak_rss_mb']:.0f} |", "",
              "RTF = wall seconds / audio seconds (best of the runs, after a warm-up); the 300 s file is cut into "
              "speech regions by the VAD. Training throughput is what train_ds2 logs for the epoch (augmentation "
              "included, the first steps included).", ""]
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="checkpoints/ds2-ko", help="local folder, Hub repo id or 'default'")
    p.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    p.add_argument("--manifest", default="data/ko-speech/dev.jsonl", help="clips for the test recordings")
    p.add_argument("--train-manifest", default="data/ko-speech/train.jsonl", help="clips for the training steps")
    p.add_argument("--lengths", default="10,300", help="recording lengths in seconds")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per length")
    p.add_argument("--train-steps", type=int, default=4, help="training steps to time (0 = skip)")
    p.add_argument("--device", default="cpu", help="device for the training steps")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="results/benchmark")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [float(x) for x in args.lengths.split(",")]

    folder = resolve_model(args.model, "stt")
    bundle = load_bundle(folder, "deepspeech2", weights=False)
    with RssSampler() as mem:
        t = time.perf_counter()
        engine = load_engine("ds2", model=str(folder), decoder=args.decoder)
        load_s = time.perf_counter() - t
    report = {"model": args.model, "model_name": bundle.name,
              "parameters": sum(p.numel() for p in engine.model.parameters()), "decoder": args.decoder,
              "command": "python -m training.benchmark " + " ".join(argv),
              "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()},
              "load_seconds": round(load_s, 4), "load_peak_rss_mb": round(mem.peak, 1), "inference": {}}
    rows = read_manifest(args.manifest)
    for sec in lengths:
        audio, _ = long_recording(rows, sec)
        key = f"{sec:g} s"
        report["inference"][key] = time_inference(engine, audio, args.repeats if sec <= 60 else 1)
        print(f"inference {key}: RTF {report['inference'][key]['rtf']:.4f}", file=sys.stderr, flush=True)
    del engine
    if args.train_steps:
        report["training"] = time_training(bundle.to_config(), args.train_manifest, args.train_steps, args.device)
    report["process_peak_rss_mb"] = round(peak_rss_mb(), 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    md = markdown(report)
    out.with_name(out.name + ".md").write_text(md, encoding="utf-8")
    print(md)
    return report


if __name__ == "__main__":
    main()
