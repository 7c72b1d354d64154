"""The speakers the analysis finds in synthetic conversations, measured once for the TV detector.

training/tune_tv.py chooses the level rules of `speech.tv.judge` on these rows and
training/train_tv.py fits the detector on them (as well as on clusters made one at a time). One
row per (file, found speaker), the analysis run without TV detection:

    {"set": "train-far:tv", "file": "conv00.tv", "speaker": "S2", "seconds": 26.4,
     "probability": 0.25, "level_db": -20.2,     # speech.tv.speaker_scores with the detector used
     "family": 0.93, "far": 0.93, "child": 0.0,  # share of its time that is family / far parent / child speech
     "features": {...}}                          # speech.tv.cluster_features (MIN_SECONDS of speech or more)

A speaker is family when at least half of its time is family speech in the truth, TV otherwise.
`rescore` puts another detector's probabilities on rows from their features, so a refitted
detector is tuned on the same speakers without analysing the files again.
"""
from __future__ import annotations

import json
from pathlib import Path


def family_fraction(spans, segments) -> float:
    """Share of the spans' time inside the truth's family segments [(start, end, ...)] (at most 1)."""
    total = sum(e - s for s, e in spans)
    inside = sum(max(0.0, min(e, b) - max(s, a)) for s, e in spans for a, b, *_ in segments)
    return min(1.0, inside / total) if total > 0 else 0.0


def parse_sets(specs) -> list:
    """["FOLDER:noise,tv", ...] -> [(FOLDER, ["noise", "tv"]), ...]."""
    return [(c.partition(":")[0], c.partition(":")[2].split(",")) for c in specs]


def measure(sets, clf, enc, detector=None) -> list:
    """[(folder, variants)] -> one row per (file, found speaker) (module docstring)."""
    from speech.analysis import analyze
    from speech.audio import load_audio
    from speech.tv import MIN_SECONDS, cluster_features, default_detector, speaker_scores, spread

    detector = detector or default_detector()
    rows = []
    for folder, variants in sets:
        for truth in [json.loads(line) for line in open(Path(folder) / "truth.jsonl", encoding="utf-8")]:
            far = (truth.get("far") or {}).get("speaker")
            segments = truth["segments"]
            for variant in variants:
                audio = load_audio(Path(folder) / f"{truth['name']}.{variant}.flac")
                rep = analyze(audio, clf, encoder=enc)
                spans_of = {sp.id: [(x.start, x.end) for x in rep.segments if x.speaker == sp.id] for sp in rep.speakers}
                for k, (seconds, prob, level) in speaker_scores(audio, spans_of, detector).items():
                    spans = spans_of[k]
                    row = {"set": f"{Path(folder).name}:{variant}", "file": f"{truth['name']}.{variant}", "speaker": k,
                           "seconds": round(seconds, 2), "probability": round(prob, 4), "level_db": round(level, 2),
                           "family": round(family_fraction(spans, segments), 3),
                           "far": round(family_fraction(spans, [s for s in segments if far and s[3] == far]), 3),
                           "child": round(family_fraction(spans, [s for s in segments if s[2] == "child"]), 3)}
                    if seconds >= MIN_SECONDS:
                        row["features"] = {f: round(v, 4) for f, v in cluster_features(audio, spread(spans)).items()}
                    rows.append(row)
            print(Path(folder).name, truth["name"], flush=True)
    return rows


def read_rows(files, skip=()) -> list:
    """The rows of earlier runs' JSON files (their "rows"), without the sets named in `skip`."""
    rows = [r for f in files for r in json.loads(Path(f).read_text(encoding="utf-8"))["rows"]]
    return [r for r in rows if r["set"] not in set(skip)]


def rescore(rows, detector) -> list:
    """The rows with `detector`'s probability, computed from their features (speakers under
    speech.tv.MIN_SECONDS have none and keep 0.0, as tv_probability gives them)."""
    out = []
    for r in rows:
        if "features" not in r and r["probability"] > 0:
            raise ValueError(f"row {r['set']} {r['file']} {r['speaker']} has no features: measure it again "
                             "(training/tune_tv.py --conversations) to score it with another detector")
        p = round(detector.probability_of(r["features"]), 4) if "features" in r else 0.0
        out.append({**r, "probability": p})
    return out
