"""The project's shared corpus (../shared/data/ko-speech) -> train.jsonl and dev.jsonl.

The split is by speaker, and several sentences are read by more than one speaker, so after the
split every train utterance whose sentence is also in dev is removed (the dev score would
otherwise flatter the model). Dev speakers are chosen by an exhaustive search (seeded sampling
when there are too many combinations) over sets of ``--dev-female`` + ``--dev-male`` speakers
that satisfy:

* dev holds ``--dev-min-fraction`` .. ``--dev-max-fraction`` of the audio;
* each gender's share of dev audio is within 10 points of its share of all audio;
* at least one ``teen`` speaker is in dev (when the corpus has one);
* every (gender, note) group with a note (teen, 50+, dialect) keeps a speaker in train;

and among those the set that removes the fewest train utterances wins, then the one closest to
the middle of the fraction range, then the alphabetically first. No randomness is involved
unless sampling is needed, and then ``--seed`` fixes it.

    python -m training.prepare_ko_speech            # -> data/ko-speech/{train,dev}.jsonl
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import Counter, defaultdict
from itertools import combinations, product
from math import comb
from pathlib import Path

from speech.text import text_for_cer
from speech.audio import audio_duration
from training.manifest import (add_duration_args, filter_duration, normalize_gender,
                               remove_sentences, sentence_overlap, summarize, target_text, write_manifest)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ko-speech"
DEFAULT_OUT = REPO / "data" / "ko-speech"
CORPUS = "ko-speech"
MAX_EXHAUSTIVE = 2_000_000
SAMPLES = 200_000
GENDER_SHARE_TOLERANCE = 0.10


def load_rows(data: Path, skipped: Counter) -> list[dict]:
    tsv = data / "manifest.tsv"
    if not tsv.is_file():
        raise SystemExit(f"{tsv} not found; pass --data with the folder that holds manifest.tsv")
    rows = []
    with open(tsv, encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            audio = data / rec["path"]
            if not audio.is_file():
                skipped["audio file not found"] += 1
                continue
            text, reason = target_text(rec["text"], "plain")
            if reason:
                skipped[reason] += 1
                continue
            rows.append({
                "audio": str(audio), "text": text, "raw_text": rec["text"],
                "duration": round(audio_duration(audio), 3), "speaker": rec["speaker"],
                "gender": normalize_gender(rec["gender"]), "age": None, "corpus": CORPUS, "utt": rec["utt"],
                "note": rec.get("note") or None, "subset": rec.get("subset") or None,
                "source_corpus": rec.get("corpus") or None, "script": rec.get("script"),
            })
    return rows


def choose_dev_speakers(rows: list[dict], n_female: int, n_male: int, min_fraction: float,
                        max_fraction: float, seed: int = 0) -> tuple[list[str], int]:
    """(dev speakers, train utterances that sentence-overlap removal will drop). See module doc."""
    dur: dict[str, float] = defaultdict(float)
    gender, note = {}, {}
    sentences: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        s = r["speaker"]
        dur[s] += r["duration"]
        gender[s], note[s] = r["gender"], r.get("note")
        sentences[s].add(text_for_cer(r["text"]))
    total = sum(dur.values())
    female = sorted(s for s in dur if gender[s] == "female")
    male = sorted(s for s in dur if gender[s] == "male")
    if len(female) <= n_female or len(male) <= n_male:
        raise SystemExit(f"need more than {n_female} female and {n_male} male speakers; "
                         f"have {len(female)} and {len(male)}")
    male_share = sum(dur[s] for s in male) / total
    has_teen = any(n == "teen" for n in note.values())
    noted_groups = {(gender[s], note[s]) for s in dur if note[s]}
    utts_by_sentence: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        utts_by_sentence[text_for_cer(r["text"])][r["speaker"]] += 1
    mid = (min_fraction + max_fraction) / 2

    def score(f: tuple[str, ...], m: tuple[str, ...]):
        dev = set(f) | set(m)
        dev_dur = sum(dur[s] for s in dev)
        fraction = dev_dur / total
        if not min_fraction <= fraction <= max_fraction:
            return None
        if abs(sum(dur[s] for s in m) / dev_dur - male_share) > GENDER_SHARE_TOLERANCE:
            return None
        if has_teen and not any(note[s] == "teen" for s in dev):
            return None
        kept = {(gender[s], note[s]) for s in dur if s not in dev and note[s]}
        if kept != noted_groups:
            return None
        dev_sentences = set().union(*(sentences[s] for s in dev))
        lost = sum(n for t in dev_sentences for s, n in utts_by_sentence[t].items() if s not in dev)
        return lost, abs(fraction - mid), sorted(dev)

    n_sets = comb(len(female), n_female) * comb(len(male), n_male)
    if n_sets <= MAX_EXHAUSTIVE:
        candidates = product(combinations(female, n_female), combinations(male, n_male))
    else:
        rng = random.Random(seed)
        candidates = ((tuple(sorted(rng.sample(female, n_female))), tuple(sorted(rng.sample(male, n_male))))
                      for _ in range(SAMPLES))
    best = None
    for f, m in candidates:
        s = score(f, m)
        if s is not None and (best is None or s < best):
            best = s
    if best is None:
        raise SystemExit("no dev speaker set satisfies the constraints; widen --dev-min-fraction/"
                         "--dev-max-fraction or change --dev-female/--dev-male")
    return best[2], best[0]


def main(argv=None) -> tuple[list[dict], list[dict]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"corpus folder (default {DEFAULT_DATA})")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--dev-female", type=int, default=3, help="female dev speakers (default 3)")
    p.add_argument("--dev-male", type=int, default=3, help="male dev speakers (default 3)")
    p.add_argument("--dev-min-fraction", type=float, default=0.15, help="least share of audio in dev (default 0.15)")
    p.add_argument("--dev-max-fraction", type=float, default=0.20, help="most share of audio in dev (default 0.20)")
    p.add_argument("--seed", type=int, default=0, help="seed, used only when the search must sample (default 0)")
    add_duration_args(p)
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data}: folder not found")
    if not 0 < args.dev_min_fraction <= args.dev_max_fraction < 1:
        p.error("need 0 < --dev-min-fraction <= --dev-max-fraction < 1")

    skipped: Counter = Counter()
    rows = load_rows(args.data, skipped)
    kept = filter_duration(rows, args.min_duration, args.max_duration)
    if len(kept) < len(rows):
        skipped[f"duration outside [{args.min_duration}, {args.max_duration}] s"] = len(rows) - len(kept)
    for reason, n in sorted(skipped.items()):
        print(f"{CORPUS}: skipped {n} utterances: {reason}")
    print(summarize(kept, f"{CORPUS} all"))

    dev_speakers, _ = choose_dev_speakers(kept, args.dev_female, args.dev_male,
                                          args.dev_min_fraction, args.dev_max_fraction, args.seed)
    dev = [r for r in kept if r["speaker"] in dev_speakers]
    train = [r for r in kept if r["speaker"] not in dev_speakers]
    overlap = sentence_overlap(train, dev)
    n_before = len(train)
    train = remove_sentences(train, dev)
    assert not sentence_overlap(train, dev)
    print(f"{CORPUS}: removed {n_before - len(train)} train utterances whose sentence is in dev "
          f"({len(overlap)} distinct sentences)")

    write_manifest(args.out_dir / "train.jsonl", train)
    write_manifest(args.out_dir / "dev.jsonl", dev)
    described = [f"{s} ({'F' if g == 'female' else 'M'}{', ' + n if n else ''})"
                 for s, g, n in sorted({(r['speaker'], r['gender'], r.get('note')) for r in dev})]
    print(f"{CORPUS}: dev speakers: {', '.join(described)}")
    print(summarize(train, f"{CORPUS} train -> {args.out_dir / 'train.jsonl'}"))
    print(summarize(dev, f"{CORPUS} dev -> {args.out_dir / 'dev.jsonl'}"))
    return train, dev


if __name__ == "__main__":
    main()
