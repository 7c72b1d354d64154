"""Where the memory of one analysis goes: peak resident memory and CPU time per stage.

    python -m training.memory_stages RECORDING [--transcribe] [--threads 1] [--json OUT.json]

Runs `speech.analysis.analyze` in this process with its stages wrapped (decoding, level, VAD,
speaker embeddings, clustering, each speaker's gender, TV, transcription) and, around each,
reads the peak resident size from /proc/self/status (VmHWM) and resets it (writing 5 to
/proc/self/clear_refs, Linux >= 4.0), so every stage gets its own peak. Stages not wrapped show as
"(between)". The last line is the process's peak over the whole run. Linux only.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

_T0 = time.process_time()


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class Stages:
    """Peak resident memory (MB) and CPU seconds of each stage, in the order they ran."""

    def __init__(self):
        self.rows: list[dict] = []
        self.peak = 0.0

    def mark(self, name: str) -> None:
        s = _status()
        self.peak = max(self.peak, s["VmHWM"])
        self.rows.append({"stage": name, "rss_mb": round(s["VmRSS"]), "peak_mb": round(s["VmHWM"]),
                          "cpu_s": round(time.process_time() - _T0, 2)})
        with open("/proc/self/clear_refs", "w") as f:     # the next stage's peak starts from here
            f.write("5")

    def wrap(self, owner, attr: str, name: str | None = None) -> None:
        fn = getattr(owner, attr)
        label = name or attr

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.mark(f"(between) before {label}")
            try:
                return fn(*args, **kwargs)
            finally:
                self.mark(label)

        setattr(owner, attr, timed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recording")
    p.add_argument("--transcribe", action="store_true", help="also transcribe each turn (the default engine)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--detect-tv", action="store_true")
    p.add_argument("--json", default=None, help="also write the stages here")
    args = p.parse_args(argv)
    if not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("memory_stages needs Linux (/proc/self/clear_refs)")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    st = Stages()
    st.mark("python")
    import torch

    torch.set_num_threads(args.threads)
    st.mark("import torch")
    import speech.analysis as analysis
    import speech.diarize as diarize
    import speech.speaker as speaker
    from speech.gender import GenderClassifier

    st.mark("import speech")
    for owner, attr in [(analysis, "load_speech"), (analysis, "find_speech"), (speaker, "default_encoder"),
                        (diarize, "embed_regions"), (diarize, "assign"), (analysis, "segment_logits"),
                        (analysis, "tv_speakers")]:
        st.wrap(owner, attr)
    clf = GenderClassifier.load()
    st.mark("gender model")
    stt = None
    if args.transcribe:
        from speech.stt import load_engine

        stt = load_engine()
        st.wrap(stt, "transcribe", "transcribe (one turn)")
        st.mark("speech-to-text model")
    report = analysis.analyze(args.recording, clf, stt=stt, detect_tv=args.detect_tv)
    st.mark("(between) end of analyze")
    _ = report.to_json(), report.to_rttm(), report.to_csv()
    st.mark("exports")
    # stages that ran many times (one per speaker, one per turn): their largest peak, their count
    merged: dict = {}
    for r in st.rows:
        m = merged.setdefault(r["stage"], {"stage": r["stage"], "runs": 0, "peak_mb": 0, "rss_mb": 0})
        m["runs"] += 1
        m["peak_mb"] = max(m["peak_mb"], r["peak_mb"])
        m["rss_mb"] = max(m["rss_mb"], r["rss_mb"])
    print(f"{'stage':44s} {'runs':>5s} {'peak MB':>8s} {'RSS after':>10s}")
    for m in merged.values():
        print(f"{m['stage']:44s} {m['runs']:5d} {m['peak_mb']:8d} {m['rss_mb']:10d}")
    cpu = time.process_time() - _T0
    print(f"peak resident memory {st.peak:.0f} MB; CPU {cpu:.1f} s for {report.duration / 60:.1f} min of audio "
          f"({report.n_turns} turns, {len(report.speakers)} speakers)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"recording": args.recording, "transcribe": args.transcribe, "threads": args.threads,
                       "peak_mb": round(st.peak), "cpu_s": round(cpu, 1), "stages": list(merged.values()),
                       "load_average": os.getloadavg()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
