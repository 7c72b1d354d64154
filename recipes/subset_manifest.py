"""Small subsets for the recipes' small budget: a speaker- and gender-balanced subset of a JSONL
manifest, or the short clips of a noise folder.

    python recipes/subset_manifest.py data/ko-speech/train.jsonl data/ko-speech/train-small.jsonl \
        --speakers-per-gender 2 --per-speaker 4
    python recipes/subset_manifest.py ../shared/data/noise OUT/noise --max-duration 35

Takes, for each gender, the first N speakers in file order and from each its K shortest utterances
(short utterances keep a small run fast), in file order. The output must sit in the same folder as the input: audio
paths in a manifest are relative to its folder, and are copied as they are.

A noise folder (manifest.tsv: path, category, duration, ...) gives OUT/manifest.tsv listing its
clips no longer than --max-duration seconds by absolute path: training loads a noise folder whole,
and the 23-minute baby-cry clip alone is most of that time.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def subset(rows: list[dict], speakers_per_gender: int, per_speaker: int) -> list[dict]:
    by_gender: dict[str, list[str]] = {}
    for r in rows:
        speakers = by_gender.setdefault(r["gender"], [])
        if r["speaker"] not in speakers and len(speakers) < speakers_per_gender:
            speakers.append(r["speaker"])
    keep = set()
    for speakers in by_gender.values():
        for s in speakers:
            mine = sorted((i for i, r in enumerate(rows) if r["speaker"] == s), key=lambda i: float(rows[i]["duration"]))
            keep.update(mine[:per_speaker])
    return [r for i, r in enumerate(rows) if i in keep]


def subset_noise(src: Path, out: Path, max_duration: float) -> int:
    with open(src / "manifest.tsv", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        fields, rows = reader.fieldnames, [r for r in reader if float(r["duration"]) <= max_duration]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.tsv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fields, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows({**r, "path": str((src / r["path"]).resolve())} for r in rows)
    return len(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--speakers-per-gender", type=int, default=2)
    p.add_argument("--per-speaker", type=int, default=4)
    p.add_argument("--max-duration", type=float, default=35.0, help="noise folders: longest clip kept, seconds")
    a = p.parse_args(argv)
    if a.manifest.is_dir():
        n = subset_noise(a.manifest, a.out, a.max_duration)
        if not n:
            p.error(f"{a.manifest}: no clip is at most {a.max_duration} s long")
        print(f"{a.out / 'manifest.tsv'}: {n} noise clips of at most {a.max_duration:g} s")
        return
    if a.out.resolve().parent != a.manifest.resolve().parent:
        p.error(f"{a.out} must be in the folder of {a.manifest} (audio paths are relative to it)")
    rows = [json.loads(line) for line in a.manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = subset(rows, a.speakers_per_gender, a.per_speaker)
    genders = {r["gender"] for r in rows}
    if len(genders) < 2:
        p.error(f"{a.manifest}: the subset needs both genders, it has {sorted(genders)}")
    a.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    seconds = sum(float(r["duration"]) for r in rows)
    print(f"{a.out}: {len(rows)} utterances, {len({r['speaker'] for r in rows})} speakers, {seconds:.0f} s")


if __name__ == "__main__":
    main()
