"""Measure the TV/radio detector (speech/tv.py) inside synthetic conversations: false TV, missed TV.

    python -m training.evaluate_tv --conversations data/13/conv-dev --out results/tv_conversations

training/train_tv.py measures the detector on clusters made one at a time; here the clusters sit in
whole conversations of training/make_conversations.py (held-out dev speakers), where the family,
the household noise and the TV share one recording and so one noise floor. For every conversation
and variant (`clean`, `noise`: household noise 10 dB below the conversation, `household`: the same
noise and a TV 15 dB below, `tv`: the TV 10 dB below, noise at 10 dB):

* each family speaker's cluster is that speaker's true segments (perfect diarization): a *false TV*
  when the detector calls it TV;
* the TV's cluster (variants with a TV) is its programme's speech spans minus every family segment
  (what diarization can give the TV); a *missed TV* when it is not called TV.

The decision is the analysis's: speech/tv.py's `tv_speakers` over all clusters of the file together
(`speaker_scores` then `judge`: the detector's threshold, the far-and-TV-like rule, never TV under
MIN_TV_SECONDS of speech in all). With `--analyze`, the whole analysis (`detect_tv=True`, found
speakers) also runs on every file and counts speakers reported as `tv` against the truth.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from speech.audio import SAMPLE_RATE, load_audio

VARIANTS = ("clean", "noise", "household", "tv")


def subtract(spans, cuts, min_len: float = 0.3):
    """Parts of `spans` outside every span of `cuts` (each part at least `min_len` s)."""
    out = []
    cuts = sorted(cuts)
    for s, e in spans:
        t = s
        for a, b in cuts:
            if b <= t or a >= e:
                continue
            if a > t:
                out.append((t, a))
            t = max(t, b)
        if t < e:
            out.append((t, e))
    return [(s, e) for s, e in out if e - s >= min_len]


def clusters(truth: dict, variant: str):
    """-> list of (name, is_tv, spans)."""
    by = {}
    for s, e, _, spk in truth["segments"]:
        by.setdefault(spk, []).append((float(s), float(e)))
    out = [(spk, False, sorted(v)) for spk, v in sorted(by.items())]
    if variant in ("household", "tv") and truth.get("tv_segments"):
        family = [x for v in by.values() for x in v]
        out.append(("TV", True, subtract([tuple(x) for x in truth["tv_segments"]], family)))
    return out


def main(argv=None) -> dict:
    from speech.tv import MIN_TV_SECONDS, default_detector, judge, speaker_scores

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-dev")
    p.add_argument("--out", default="results/tv_conversations", help="writes OUT.md and OUT.json")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--analyze", action="store_true", help="also run the whole analysis with detect_tv=True")
    args = p.parse_args(argv)

    folder = Path(args.conversations)
    truths = [json.loads(line) for line in open(folder / "truth.jsonl", encoding="utf-8")]
    det = default_detector()
    if args.analyze:
        from speech.analysis import analyze
        from speech.gender import GenderClassifier

        clf = GenderClassifier.load()
    rows, per = [], {}
    t0 = time.time()
    for truth in truths:
        for variant in args.variants:
            path = folder / f"{truth['name']}.{variant}.flac"
            if not path.exists():
                continue
            audio = load_audio(path)
            found = clusters(truth, variant)
            scores = speaker_scores(audio, {name: spans for name, _, spans in found if spans}, det)
            called_tv = judge(scores, det.threshold)           # the analysis's decision (tv_speakers)
            for name, tv, spans in found:
                secs = sum(e - s for s, e in spans)
                prob = scores[name][1] if name in scores else 0.0
                called = name in called_tv
                rows.append({"conversation": truth["name"], "variant": variant, "cluster": name, "tv": tv,
                             "seconds": round(secs, 1), "probability": round(prob, 4), "called_tv": called})
            if args.analyze:
                rep = analyze((SAMPLE_RATE, audio), clf, detect_tv=True)
                found_tv = [sp for sp in rep.speakers if sp.cls == "tv"]
                per.setdefault(variant, []).append({"conversation": truth["name"], "speakers": len(rep.speakers),
                                                    "tv_speakers": len(found_tv),
                                                    "tv_seconds": round(sum(sp.seconds for sp in found_tv), 1)})
        print(truth["name"], round(time.time() - t0, 1), "s", flush=True)

    summary = {}
    for variant in args.variants:
        fam = [r for r in rows if r["variant"] == variant and not r["tv"]]
        tvs = [r for r in rows if r["variant"] == variant and r["tv"]]
        long_tv = [r for r in tvs if r["seconds"] >= MIN_TV_SECONDS]
        summary[variant] = {
            "family_clusters": len(fam), "false_tv": sum(r["called_tv"] for r in fam),
            "family_max_probability": max((r["probability"] for r in fam), default=None),
            "tv_clusters": len(tvs), "tv_detected": sum(r["called_tv"] for r in tvs),
            "tv_clusters_long_enough": len(long_tv),
            "tv_probability": [r["probability"] for r in tvs],
        }
        if variant in per:
            summary[variant]["analysis"] = per[variant]
    res = {"command": "python -m training.evaluate_tv " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "detector": det.config.get("provenance"), "threshold": det.threshold, "min_tv_seconds": MIN_TV_SECONDS,
           "summary": summary, "clusters": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "tv_probability"} for k, v in summary.items()}, indent=1))
    return res


def markdown(res: dict) -> str:
    lines = ["# TV detector inside conversations (speech/tv.py, decision of speech.analysis.tv_speakers)", "",
             f"`{res['command']}`", "",
             f"Threshold {res['threshold']:.3f}; never TV under {res['min_tv_seconds']:g} s of speech. Family clusters: each "
             "speaker's true segments; TV cluster: the programme's speech outside every family segment.", "",
             "| variant | family clusters | false TV | highest family probability | TV clusters | TV detected (missed) | TV probability (its speech) |",
             "|---|---|---|---|---|---|---|"]
    for v, d in res["summary"].items():
        fmax = "-" if d["family_max_probability"] is None else f"{d['family_max_probability']:.2f}"
        probs = ", ".join(f"{r['probability']:.2f} ({r['seconds']:.0f} s)" for r in res["clusters"]
                          if r["variant"] == v and r["tv"]) or "-"
        tv = f"{d['tv_detected']} ({d['tv_clusters'] - d['tv_detected']})" if d["tv_clusters"] else "-"
        lines.append(f"| {v} | {d['family_clusters']} | {d['false_tv']} | {fmax} | {d['tv_clusters']} | {tv} | {probs} |")
    if any("analysis" in d for d in res["summary"].values()):
        lines += ["", "Whole analysis (`analyze(..., detect_tv=True)`, speakers found):", "",
                  "| variant | files | speakers reported as tv | tv seconds |", "|---|---|---|---|"]
        for v, d in res["summary"].items():
            if "analysis" in d:
                a = d["analysis"]
                lines.append(f"| {v} | {len(a)} | {sum(x['tv_speakers'] for x in a)} | {sum(x['tv_seconds'] for x in a):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
