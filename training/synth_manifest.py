"""A synthetic large manifest that reuses a small corpus's files: test the trainer at 1,000 hours
without the data (start-up time, host memory, bucketing, sharding, mid-epoch resume).

    python -m training.synth_manifest --source data/ko-speech/train.jsonl --hours 1000 \
        --out data/synth/train-1000h.jsonl

Rows cycle through the source manifest (same audio, text and duration; a unique `utt` per row) and
audio paths are written relative to the new manifest's folder, like every manifest here.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from training.manifest import read_manifest


def synthesize(source: str, hours: float, out: str) -> tuple[int, float]:
    rows = [r for r in read_manifest(source) if float(r.get("duration", 0)) > 0]
    if not rows:
        raise ValueError(f"{source}: no rows with a duration")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.resolve().parent
    slim = [{"audio": os.path.relpath(r["audio"], folder), "text": r["text"], "duration": float(r["duration"]),
             "speaker": r.get("speaker", ""), "utt": r.get("utt", "")} for r in rows]
    target, total, n = hours * 3600, 0.0, 0
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while total < target:
            r = slim[n % len(slim)]
            f.write(json.dumps({**r, "utt": f"{r['utt']}#{n // len(slim)}"}, ensure_ascii=False) + "\n")
            total += r["duration"]
            n += 1
    os.replace(tmp, out)
    return n, total / 3600


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, help="manifest whose rows are reused")
    p.add_argument("--hours", type=float, default=1000.0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    n, h = synthesize(a.source, a.hours, a.out)
    print(f"{a.out}: {n} rows, {h:.1f} h")


if __name__ == "__main__":
    main()
