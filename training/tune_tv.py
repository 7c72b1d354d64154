"""Choose the level rules of speech.tv.tv_speakers on TRAIN conversations.

    python -m training.make_conversations --manifest data/ko-speech/train.jsonl --noise-part train \
        --speakers 2-4 --turns 16 --quiet-prob 0.3 --far-db 8 --out data/13/train-far --n 10 --seed 9
    python -m training.tune_tv --conversations data/13/train-far:noise,tv,household \
        data/13/train-quiet:tv data/13/train-quiet5:household data/13/family-train:noise,tv \
        --out results/tv_speakers_tuning

Every file is analysed once (speakers found, no TV detection); each speaker's seconds, TV
probability and speech level (`speech.tv.speaker_scores`) are kept with how much of its time is
family speech in the truth (a speaker is family when at least half of it is). Then
`speech.tv.judge` runs on those numbers for every (sounds_db, far_db, far_probability, min_speakers)
of the grid: the family seconds it would report as TV and the TV seconds it finds (TV: speakers the
truth calls not family). sounds_db: how far under the loudest family-sounding speaker one that
sounds like a TV must be; far_db, far_probability: the far-and-somewhat-TV-like rule;
min_speakers: how many candidates the far ones need in all (one alone: a far parent, or a TV heard
as one voice). The rows are those of training/tv_rows.py: `--rows` pools the rows of earlier runs
(measured once; tune_tv's or train_tv's JSON), `--skip` leaves sets out of them, `--detector`
scores them with another detector (a refit: train_tv.py) from their features.

The choice: no family speech reported as TV, neither at the setting nor with both levels
`--margin-db` nearer and far_probability `--margin-probability` lower (a parent a little nearer the
TV's level and sound than the material's far parents and children), then the most TV found; ties go
to the higher probability, the farther far_db and more candidates needed (fewer speakers at
risk), then the nearer sounds_db (over the detector's threshold is strong evidence). Use
conversations with a parent across the room (`make_conversations --far-db`), a family quiet while
the TV talks (`--quiet-prob`) and families with a child (`--children`): without them nothing pins
the rules down. The shipped rule: `results/tv_speakers_tuning_far.md` (session 20's rows and
parents 12 and 16 dB further away in rooms without a TV).
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from training.tv_rows import measure, parse_sets, read_rows, rescore

FAR_DB_GRID = (-6.0, -7.0, -8.0, -9.0, -10.0, -12.0, -14.0, -16.0)
FAR_PROBABILITY_GRID = (0.2, 0.3, 0.5, 0.7)    # a far speaker must also sound somewhat like a TV
SOUNDS_DB_GRID = (None, 0.0, -3.0, -6.0, -9.0, -12.0)  # how far under the family one that sounds like a TV must be
MIN_SPEAKERS_GRID = (1, 2)                 # candidates the far ones need (one alone: a far parent or a one-voice TV)


def sweep(rows, threshold: float, far_dbs=FAR_DB_GRID, far_probabilities=FAR_PROBABILITY_GRID,
          sounds_dbs=SOUNDS_DB_GRID, min_speakers=MIN_SPEAKERS_GRID) -> list:
    """-> one entry per grid point: family seconds reported as TV, TV seconds found, per set."""
    from speech.tv import judge

    files = {}
    for r in rows:
        files.setdefault((r["set"], r["file"]), []).append(r)
    scores = {f: {r["speaker"]: (r["seconds"], r["probability"], r["level_db"]) for r in speakers}
              for f, speakers in files.items()}
    out = []
    for sounds_db, far_db, far_p, n in itertools.product(sounds_dbs, far_dbs, far_probabilities, min_speakers):
        per = {}
        for (name, f), speakers in files.items():
            called = judge(scores[(name, f)], threshold, far_db, far_p, sounds_db, min_speakers=n)
            x = per.setdefault(name, {"family_dropped": 0.0, "family": 0.0, "tv_found": 0.0, "tv": 0.0})
            for r in speakers:
                kind = "family" if r["family"] >= 0.5 else "tv"
                x[kind] += r["seconds"]
                if r["speaker"] in called:
                    x["family_dropped" if kind == "family" else "tv_found"] += r["seconds"]
        out.append({"sounds_db": sounds_db, "far_db": far_db, "far_probability": far_p, "min_speakers": n,
                    "sets": per,
                    "family_dropped": sum(v["family_dropped"] for v in per.values()),
                    "tv_found": sum(v["tv_found"] for v in per.values()),
                    "tv": sum(v["tv"] for v in per.values())})
    return out


def choose(rows, threshold: float, grid: list, margin_db: float, margin_probability: float) -> dict:
    """The grid point that finds the most TV among those that report no family speech as TV, neither
    as they are nor `margin_db` dB nearer and `margin_probability` less TV-like (a parent a little
    closer to the TV's level and sound than the material's far parents); None when none is safe.
    Ties: the higher probability, the farther far_db and more candidates needed (fewer speakers at
    risk on the weak evidence), then the nearer sounds_db (a speaker over the detector's threshold is
    strong evidence; alone, a programme heard as one voice, it is found only there)."""
    def safe(g):
        nearer = sweep(rows, threshold, [g["far_db"] + margin_db], [g["far_probability"] - margin_probability],
                       [None if g["sounds_db"] is None else g["sounds_db"] + margin_db], [g["min_speakers"]])[0]
        return g["family_dropped"] == 0 and nearer["family_dropped"] == 0

    candidates = [g for g in grid if safe(g)]
    if not candidates:
        return None
    return max(candidates, key=lambda g: (round(g["tv_found"], 1), g["far_probability"], -g["far_db"], g["min_speakers"],
                                          g["sounds_db"] if g["sounds_db"] is not None else 99.0))


def main(argv=None) -> dict:
    from speech.gender import GenderClassifier
    from speech.speaker import SpeakerEncoder
    from speech.tv import FAR_DB, FAR_PROBABILITY, MIN_TV_SPEAKERS, SOUNDS_DB, TVDetector, default_detector

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", nargs="*", default=[], metavar="FOLDER:VARIANTS",
                   help="train conversation folders (make_conversations) with the variants to use, e.g. DIR:tv,noise")
    p.add_argument("--out", default="results/tv_speakers_tuning", help="writes OUT.md and OUT.json")
    p.add_argument("--margin-db", type=float, default=2.0, help="dB nearer than far_db that must drop no family either")
    p.add_argument("--margin-probability", type=float, default=0.1,
                   help="... and with this much lower far_probability")
    p.add_argument("--rows", nargs="*", default=[], metavar="JSON",
                   help="also use the rows of earlier runs' OUT.json (measured once; sets named in both count twice)")
    p.add_argument("--detector", default=None, metavar="FOLDER",
                   help="score the speakers with this TV detector (default: the shipped checkpoints/tv-ko); "
                        "--rows are scored again from their features")
    p.add_argument("--skip", nargs="*", default=[], metavar="SET",
                   help="leave these sets of the rows out (as the rows name them, e.g. train-far16:tv)")
    args = p.parse_args(argv)

    sets = parse_sets(args.conversations)
    det = TVDetector.load(args.detector) if args.detector else default_detector()
    if not sets and not args.rows:
        p.error("give --conversations, --rows or both")
    rows = read_rows(args.rows)
    if sets:
        rows += measure(sets, GenderClassifier.load(), SpeakerEncoder.load(), det)
    rows = [r for r in rows if r["set"] not in args.skip]
    if args.detector:
        rows = rescore(rows, det)
    grid = sweep(rows, det.threshold)
    best = choose(rows, det.threshold, grid, args.margin_db, args.margin_probability)
    res = {"command": "python -m training.tune_tv " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "detector": args.detector or "checkpoints/tv-ko", "threshold": det.threshold, "margin_db": args.margin_db,
           "margin_probability": args.margin_probability,
           "chosen": best and {k: best[k] for k in ("far_db", "far_probability", "sounds_db", "min_speakers")},
           "shipped": {"far_db": FAR_DB, "far_probability": FAR_PROBABILITY, "sounds_db": SOUNDS_DB,
                       "min_speakers": MIN_TV_SPEAKERS},
           "grid": grid, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    print(json.dumps(res["chosen"]))
    return res


def _db(x) -> str:
    return "any" if x is None else f"{x:g}"


def markdown(res: dict) -> str:
    names = sorted({n for g in res["grid"] for n in g["sets"]})
    c, sh = res["chosen"], res["shipped"]
    chosen = ("**none: every setting of the grid reports family speech as TV**" if c is None else
              f"**sounds_db {_db(c['sounds_db'])}, far_db {c['far_db']:g}, far_probability {c['far_probability']:g}, "
              f"min_speakers {c['min_speakers']}**")
    lines = ["# The TV rules of speech.tv.tv_speakers, chosen on train conversations", "",
             f"`{res['command']}`", "",
             f"Speakers found by the analysis (no TV detection); a speaker is family when at least half of its time is "
             f"family speech in the truth, TV otherwise. Detector threshold {res['threshold']}. sounds_db: how far under "
             f"the loudest family-sounding speaker one that sounds like a TV must be (any: no condition). Chosen: no "
             f"family speech reported as TV, neither at the setting nor {res['margin_db']:g} dB nearer (both levels) "
             f"with {res['margin_probability']:g} less probability, then the most TV seconds found: "
             f"{chosen} (shipped in speech/tv.py: {_db(sh['sounds_db'])}, {sh['far_db']:g}, {sh['far_probability']:g}, "
             f"{sh['min_speakers']}). min_speakers: how many candidates it takes to call any of them TV.", "",
             "| sounds_db | far_db | far_probability | min_speakers | family seconds reported as TV | "
             + " | ".join(f"{n}: TV found / TV seconds" for n in names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for g in res["grid"]:
        lines.append(f"| {_db(g['sounds_db'])} | {g['far_db']:g} | {g['far_probability']:g} | {g['min_speakers']} | "
                     f"{g['family_dropped']:.1f} | "
                     + " | ".join(f"{g['sets'][n]['tv_found']:.0f} / {g['sets'][n]['tv']:.0f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
