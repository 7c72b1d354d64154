"""Evaluate a gender model against the pitch baseline on held-out speakers, clean and in noise.

    python -m training.evaluate_gender --manifest data/ko-speech/dev.jsonl --noise ../shared/data/noise \
        --model checkpoints/gender-ko --out results/gender_eval

Conditions: whole utterances clean and mixed with household noise (the held-out part of every
noise clip, see train_gender.noise_part) at 10, 5 and 0 dB; 1-second crops from the middle of each
utterance, clean and at 5 dB; with `--bands`, the whole utterances through a band limit too (`phone`:
8 kHz, 300-3400 Hz, as a telephone line hands speech over; `phone-gsm` etc.: then through a real
codec; `opus16k` etc.: 16 kHz voice-message codecs). With `--route`, each utterance is labelled
by the release the library would hand it to (telephone-band audio: the narrowband one). Methods: the model (argmax of calibrated probabilities, whole input
as one utterance, no VAD) and the pitch baseline (median F0 of voiced frames > `--cut` Hz ->
female; no voiced frame counts as an error). Writes `OUT.md` and `OUT.json`: accuracy per
condition and group, per speaker, and the model's expected calibration error.

More manifests (`--manifest A B ...`) add the proxies for children from training/child_voice.py:
groups `adult`, `teen`, `pitch-raised` (adults with raised F0, formants kept: must stay adult),
`synthetic-child` (the training transform, on held-out speakers), `speed-child` (plain
resampling, a transform the model never saw) and `world-child` (the same change as the training
transform through the WORLD vocoder: child_voice.py --world). For every group the table also gives the share
called `child`; for the child groups, the rest is "child counted as a parent".

    python -m training.evaluate_gender --manifest data/ko-speech/dev.jsonl \
        data/issue-13b/child/dev/manifest.jsonl data/issue-13b/child/dev-speed/manifest.jsonl \
        --model checkpoints/gender-ko --out results/gender_child_eval
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from speech.audio import SAMPLE_RATE
from speech.band import NARROWBAND_DB, high_band_db
from speech.gender import GenderClassifier
from speech.hub import tilde
from speech.pitch import median_f0
from training.conditions import BAND_HELP, band_condition
from training.data import load_utterances
from training.manifest import label_of, read_manifest
from training.noise import HOUSEHOLD, NoiseBank, noise_part, noisy_copies

CHILD_INDEX = 2   # label_of: female 0, male 1, child 2

SNRS = (10.0, 5.0, 0.0)


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top-label confidence."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.5, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0.5 else (conf >= lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def centre_crop(a: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    if len(a) <= n:
        return a
    s = (len(a) - n) // 2
    return a[s:s + n]


OTHER_TRANSFORMS = {"speed": "speed-child", "world": "world-child"}   # child_voice's other transforms


def group_of(row: dict) -> str:
    note = row.get("note") or ""
    if note == "synthetic-child":
        return OTHER_TRANSFORMS.get(row.get("transform"), "synthetic-child")
    if note in ("teen", "pitch-raised"):
        return note
    return "adult"


def speaker_of(row: dict) -> str:
    """The row's speaker; the children another transform made of one source are another speaker."""
    group = group_of(row)
    return f"{group.split('-')[0]}-{row['speaker']}" if group in OTHER_TRANSFORMS.values() else row["speaker"]


def _path(folder) -> str:
    """The model folder relative to the working directory when inside it, else with `~` (speech.hub.tilde)."""
    try:
        return str(Path(folder).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return tilde(folder)


def pitch_predictions(audio, cut: float) -> np.ndarray:
    """0 = female, 1 = male, -1 = no voiced frame."""
    out = []
    for a in audio:
        f0 = median_f0(a)
        out.append(-1 if not np.isfinite(f0) else (0 if f0 > cut else 1))
    return np.array(out)


def model_probabilities(clf: GenderClassifier, audio: list, route: bool) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities per utterance and whether it went to another release: with `route`,
    each utterance is labelled by the release `clf.for_band` picks for it (telephone-band audio: the
    narrowband one), as `gender` and `analyze` label a recording; otherwise all by `clf`."""
    chosen = [clf.for_band(a)[0] if route else clf for a in audio]
    probs = np.zeros((len(audio), len(clf.labels)), dtype=np.float32)
    for model in {id(c): c for c in chosen}.values():
        if tuple(model.labels) != tuple(clf.labels):
            raise ValueError(f"{model.model_name} has labels {model.labels}, {clf.model_name} {clf.labels}")
        idx = [i for i, c in enumerate(chosen) if c is model]
        probs[idx] = model.probabilities(model.span_logits([audio[i] for i in idx])).numpy()
    return probs, np.array([c is not clf for c in chosen])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", nargs="+", default=["data/ko-speech/dev.jsonl"],
                   help="held-out speakers (JSONL); more manifests add child proxies")
    p.add_argument("--noise", default="../shared/data/noise")
    p.add_argument("--model", default=None, help="gender model (default: the embedded checkpoints/gender-child-ko)")
    p.add_argument("--out", default="results/gender_eval", help="writes OUT.md and OUT.json")
    p.add_argument("--cut", type=float, default=165.0, help="pitch baseline: median F0 above this is female")
    p.add_argument("--short", type=float, default=1.0, help="seconds of the short-clip condition")
    p.add_argument("--noise-train-fraction", type=float, default=0.7)
    p.add_argument("--bands", nargs="*", default=[], metavar="BAND",
                   help=f"more conditions: the clean utterances through a band limit ({BAND_HELP})")
    p.add_argument("--route", action="store_true",
                   help="label each utterance with the release the model hands it to (speech.band: telephone-band "
                        "audio to the narrowband release it names), as `gender` and `analyze` do")
    args = p.parse_args(argv)

    clf = GenderClassifier.load(args.model)
    rows = [r for m in args.manifest for r in read_manifest(m)]
    y = np.array([label_of(r) for r in rows])
    speakers = [speaker_of(r) for r in rows]
    groups = [group_of(r) for r in rows]
    full = load_utterances(rows, trim_db=0)
    trimmed = load_utterances(rows, trim_db=30)
    bank = noise_part(NoiseBank(args.noise, categories=HOUSEHOLD), "test", args.noise_train_fraction)
    short = [centre_crop(a, args.short) for a in trimmed]
    conditions = {"clean": full}
    for snr in SNRS:
        conditions[f"noise {snr:g} dB"] = noisy_copies(full, bank, snr, seed=100 + int(snr))
    conditions[f"{args.short:g} s clean"] = short
    conditions[f"{args.short:g} s, 5 dB"] = noisy_copies(short, bank, 5.0, seed=200)
    for band in args.bands:
        conditions[band] = [band_condition(a, band) for a in full]

    results = {"model": _path(clf.folder), "labels": list(clf.labels), "manifest": " ".join(args.manifest), "utterances": len(rows),
               "speakers": sorted(set(speakers)), "pitch_cut_hz": args.cut, "route": args.route, "conditions": {}}
    for name, audio in conditions.items():
        probs, routed = model_probabilities(clf, audio, args.route)
        model_pred = probs.argmax(1)
        pitch_pred = pitch_predictions(audio, args.cut)
        adult = np.array([g == "adult" for g in groups])
        band = np.array([high_band_db(a) for a in audio])
        cond = {"high_band_db": {k: round(float(f(band)), 1) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))},
                "routed": round(float(routed.mean()), 4),
                "ece": round(ece(probs, y), 4), "ece_adult": round(ece(probs[adult], y[adult]), 4) if adult.any() else None,
                "called_child": {g: round(float((model_pred[[x == g for x in groups]] == CHILD_INDEX).mean()), 4)
                                 for g in sorted(set(groups))}}
        for method, pred in (("model", model_pred), ("pitch", pitch_pred)):
            ok = pred == y
            cond[method] = {
                "all": round(float(ok.mean()), 4),
                **{g: round(float(ok[[x == g for x in groups]].mean()), 4) for g in sorted(set(groups))},
                "per_speaker": {s: round(float(ok[[x == s for x in speakers]].mean()), 4) for s in sorted(set(speakers))},
            }
        results["conditions"][name] = cond
        print(f"{name:>14}: model {cond['model']['all']:.4f} (adult {cond['model'].get('adult', float('nan')):.4f})"
              f"  pitch {cond['pitch']['all']:.4f} (adult {cond['pitch'].get('adult', float('nan')):.4f})"
              f"  ECE {cond['ece']:.4f} (adult {cond['ece_adult']})", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(results, rows), encoding="utf-8")
    return results


def markdown(res: dict, rows: list[dict]) -> str:
    info = {}
    for r in rows:
        spk = speaker_of(r)
        info.setdefault(spk, [r.get("gender"), group_of(r) if group_of(r) != "adult" else "", 0])[2] += 1
    conds = list(res["conditions"])
    lines = [f"# Gender evaluation: {res['model']}", "",
             f"Held-out speakers from `{res['manifest']}`: {res['utterances']} utterances, "
             f"{len(res['speakers'])} speakers. Pitch baseline: median F0 > {res['pitch_cut_hz']:g} Hz -> female.", ""]
    groups = sorted(res["conditions"][conds[0]]["called_child"])
    if len(groups) > 2 or "child" in res.get("labels", []):
        lines += [f"Model labels: {', '.join(res.get('labels', []))}. Correct label per group (child groups: "
                  "`child`; adults and teens: their gender), and the share labelled `child`:", "",
                  "| condition | " + " | ".join(f"{g}: correct | {g}: called child" for g in groups) + " |",
                  "|---|" + "---|---|" * len(groups)]
        for c in conds:
            d = res["conditions"][c]
            lines.append(f"| {c} | " + " | ".join(f"{100 * d['model'][g]:.1f}% | {100 * d['called_child'][g]:.1f}%"
                                                   for g in groups) + " |")
        lines += ["", "Female/male (adult and teen groups) against the pitch baseline:", ""]
    lines += [
             "| condition | model, all | model, adult | model, teen | pitch, all | pitch, adult | pitch, teen | model ECE (all / adult) |",
             "|---|---|---|---|---|---|---|---|"]
    for c in conds:
        d = res["conditions"][c]
        f = lambda m, g: f"{100 * d[m][g]:.1f}%" if g in d[m] else "-"
        lines.append(f"| {c} | {f('model', 'all')} | {f('model', 'adult')} | {f('model', 'teen')} | "
                     f"{f('pitch', 'all')} | {f('pitch', 'adult')} | {f('pitch', 'teen')} | {d['ece']:.3f} / {d['ece_adult']:.3f} |")
    lines += ["", f"speech.band's measure (energy 4.3-7.5 kHz against 300-3400 Hz, dB; narrowband warning at "
                  f"{NARROWBAND_DB:g} or under), min / median / max over the utterances: "
              + "; ".join(f"{c} {d['high_band_db']['min']:g} / {d['high_band_db']['median']:g} / {d['high_band_db']['max']:g}"
                          for c, d in res["conditions"].items()) + "."]
    if res.get("route"):
        lines += ["", "Labelled as `gender` and `analyze` label them (`--route`); the share of utterances handed to the "
                      "narrowband release: " + "; ".join(f"{c} {100 * d['routed']:.1f}%" for c, d in res["conditions"].items()) + "."]
    lines += ["", "Per speaker (model / pitch):", "",
              "| speaker | gender | note | utts | " + " | ".join(conds) + " |",
              "|---|---|---|---|" + "---|" * len(conds)]
    for s in res["speakers"]:
        g, note, n = info[s]
        cells = [f"{100 * res['conditions'][c]['model']['per_speaker'][s]:.0f} / "
                 f"{100 * res['conditions'][c]['pitch']['per_speaker'][s]:.0f}" for c in conds]
        lines.append(f"| {s} | {g} | {note} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
