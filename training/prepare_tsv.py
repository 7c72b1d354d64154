"""A plain TSV (header with at least ``path`` and ``text``) -> JSONL manifest.

Optional columns: ``speaker``, ``gender`` (F/M, 여/남, female/male), ``age``, ``utt``,
``duration`` (seconds; read from the audio header when absent). Without a ``speaker`` column the
audio's folder name stands in for the speaker. Paths are relative to the TSV's
folder or absolute. ``--source`` picks the transcript conventions (plain, kspon, aihub).

    python -m training.prepare_tsv --tsv my_clips/list.tsv --out data/my_clips.jsonl
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from speech.text import SOURCES
from speech.audio import audio_duration
from training.manifest import (add_duration_args, add_split_args, finish, normalize_gender,
                               target_text)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tsv", type=Path, required=True, help="tab-separated file with a header row")
    p.add_argument("--out", required=True, help="manifest to write (.jsonl); the train part with --dev-fraction")
    p.add_argument("--source", choices=SOURCES, default="plain", help="transcript conventions (default plain)")
    p.add_argument("--corpus", default=None, help="corpus name for the rows (default: the TSV's file stem)")
    add_duration_args(p)
    add_split_args(p)
    args = p.parse_args(argv)
    if not args.tsv.is_file():
        p.error(f"--tsv {args.tsv}: file not found")
    corpus = args.corpus or args.tsv.stem

    with open(args.tsv, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "text"} - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{args.tsv}: missing columns {sorted(missing)}; header = {reader.fieldnames}")
        records = list(reader)

    skipped: Counter = Counter()
    rows = []
    for rec in records:
        audio = Path(rec["path"])
        if not audio.is_absolute():
            audio = args.tsv.parent / audio
        if not audio.is_file():
            skipped["audio file not found"] += 1
            continue
        raw = " ".join((rec.get("text") or "").split())
        text, reason = target_text(raw, args.source)
        if reason:
            skipped[reason] += 1
            continue
        duration = rec.get("duration")
        rows.append({
            "audio": str(audio), "text": text, "raw_text": raw,
            "duration": round(float(duration) if duration else audio_duration(audio), 3),
            "speaker": rec.get("speaker") or audio.parent.name,
            "gender": normalize_gender(rec.get("gender")),
            "age": rec.get("age") or None,
            "corpus": corpus, "utt": rec.get("utt") or audio.stem,
        })
    return finish(rows, skipped, args, corpus)


if __name__ == "__main__":
    main()
