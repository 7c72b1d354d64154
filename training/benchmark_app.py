"""End-to-end time of the app's speech-to-text tab for a 10 s clip, as a person gets it.

    python -m training.benchmark_app --out results/app-stt-latency

Starts `app.py` as a real server (its models load and warm up as on a Space), then sends the same
10 s clip (the first 10 s of tests/fixtures/examples/family_conversation.ogg, two speakers) through
gradio_client with the default engine: upload, queue, recognition, figure and downloads included.
The first request after start is reported apart from the rest. Writes OUT.json and OUT.md, with
the machine's load average: numbers from a busy machine say so.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "fixtures" / "examples" / "family_conversation.ogg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) that process `pid` has used: on a shared machine, closer
    to what an idle one would take than the wall clock (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_app(log_path: Path, timeout: float = 600.0) -> tuple[subprocess.Popen, str, float]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    out = open(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s; see {log_path}")


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    p.add_argument("--requests", type=int, default=6, help="requests after the first")
    p.add_argument("--engine", default=None, choices=["whisper", "ds2"], help="default: the app's preselected one")
    p.add_argument("--target", type=float, default=2.5, help="seconds allowed for the clip, end to end")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from gradio_client import Client, handle_file

    from speech.audio import SAMPLE_RATE, load_audio

    tmp = Path(tempfile.mkdtemp(prefix="benchmark-app-"))
    clip = tmp / "clip10s.wav"
    sf.write(clip, load_audio(CLIP)[: int(args.seconds * SAMPLE_RATE)], SAMPLE_RATE, subtype="PCM_16")
    proc, url, start_s = start_app(tmp / "app.log")
    try:
        client = Client(url, verbose=False)
        inputs = (handle_file(str(clip)),) + ((args.engine,) if args.engine else ())
        times, infos, cpus = [], [], []
        for _ in range(1 + args.requests):
            t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
            result = client.predict(*inputs, api_name="/transcribe")
            times.append(time.perf_counter() - t0)
            cpus.append(cpu_seconds(proc.pid) - c0)
            infos.append(result[3])
    finally:
        proc.terminate()
        proc.wait(30)
    processing = [float(m.group(1)) for m in (re.search(r"processing ([\d.]+) s", i) for i in infos) if m]
    rest = times[1:]
    report = {
        "command": "python -m training.benchmark_app " + " ".join(argv), "clip_seconds": args.seconds,
        "engine": re.sub(r"\*\*(.+?)\*\*.*", r"\1", infos[0]).strip(), "app_start_seconds": round(start_s, 2),
        "first_request_seconds": round(times[0], 3), "median_seconds": round(statistics.median(rest), 3),
        "min_seconds": round(min(rest), 3), "max_seconds": round(max(rest), 3),
        "median_recognition_seconds": round(statistics.median(processing[1:]), 3) if processing[1:] else None,
        "median_server_cpu_seconds": round(statistics.median(cpus[1:]), 3),
        "first_server_cpu_seconds": round(cpus[0], 3),
        "target_seconds": args.target, "all_seconds": [round(t, 3) for t in times],
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    md = "\n".join([
        "# App speech-to-text tab, end to end", "",
        f"Command: `{report['command']}`", "",
        f"A {args.seconds:g} s clip through gradio_client (upload, queue, recognition, spectrogram, downloads), "
        f"engine **{report['engine']}**, {report['cpus']} CPUs, load average while measuring "
        f"{' / '.join(str(x) for x in report['load_average'])}.", "",
        "| app start s | first request s | median s (next " + str(args.requests) + ") | min s | max s | "
        "median recognition s | server CPU s (first / median) | target s |", "|---|---|---|---|---|---|---|---|",
        f"| {report['app_start_seconds']} | {report['first_request_seconds']} | {report['median_seconds']} | "
        f"{report['min_seconds']} | {report['max_seconds']} | {report['median_recognition_seconds']} | "
        f"{report['first_server_cpu_seconds']} / {report['median_server_cpu_seconds']} | {args.target} |", "",
        "Seconds are wall-clock as the person waits; server CPU s is the CPU time (all threads) app.py spent "
        "per request, which a shared machine does not inflate. On a busy machine the wall-clock numbers "
        "measure the contention, not the app: rerun the command on a quiet one for the target.", ""])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    out.with_name(out.name + ".md").write_text(md, encoding="utf-8")
    print(md)
    return report


if __name__ == "__main__":
    main()
