"""The DeepSpeech2 learning curve: dev CER against hours of training speech.

    python -m training.learning_curve subsets --manifest data/ko-speech/train.jsonl \
        --minutes 10,20,40 --out-dir runs/curve/data
    python -m training.learning_curve eval-every --manifest runs/curve/data/train-10min.jsonl \
        --batch-seconds 20 --nproc 2 --steps 100
    python -m training.learning_curve fit --run 10=runs/curve/exp/10min ... --out results/ds2-learning-curve

`subsets` chooses nested subsets by whole speakers (10 ⊂ 20 ⊂ 40 ⊂ all): the speakers in a seeded
random order, each subset the one before plus the next speakers that keep it within 5% above its
target (a speaker that would overshoot is left for a later subset; a subset that no speaker fits
takes the next one whatever its size, so each subset has more speakers than the one before). The
last subset is the whole manifest. It writes `train-<M>min.jsonl` for each target and `train-all.jsonl`, and `subsets.json`
(minutes, speakers and genders of each).

`eval-every` prints the epochs between dev evaluations that come closest to --steps optimizer
steps for a manifest (so every subset is evaluated about as often in steps: an epoch of 10 minutes is
a seventh of one of 68).

`fit` reads each run's `train.log` (training.train_ds2: one JSON line per epoch) and optional
`training.evaluate_stt` reports, fits CER = a * hours^(-b) by least squares in log-log space, and
writes `OUT.json`, `OUT.md` and `OUT.png`: the measured points, the fit, its predictions at the
study's sizes and the study's own points (AI-Hub 자유대화: 200 h -> 16%, 1,000 h -> 10.2%) beside them.
"""
from __future__ import annotations

import argparse
import json
import math
import random
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np

from training.manifest import read_manifest, write_manifest

# The study's two points (DeepSpeech2 from scratch on AI-Hub 자유대화, clean test CER).
STUDY_POINTS = [(200.0, 0.16), (1000.0, 0.102)]
OVERSHOOT = 1.05


def speaker_minutes(rows: list[dict]) -> "OrderedDict[str, float]":
    minutes: "OrderedDict[str, float]" = OrderedDict()
    for r in rows:
        minutes[r["speaker"]] = minutes.get(r["speaker"], 0.0) + float(r["duration"]) / 60
    return minutes


def nested_subsets(rows: list[dict], targets: list[float], seed: int = 0) -> list[list[str]]:
    """Speaker lists, one per target in increasing order plus the whole manifest; each contains the one
    before. A subset reaches its target (or as close as the speakers allow) without passing it by
    more than 5%."""
    minutes = speaker_minutes(rows)
    order = sorted(minutes)
    random.Random(seed).shuffle(order)
    chosen: list[str] = []
    total = 0.0
    out = []
    for target in sorted(targets):
        for s in order:
            if total >= target:
                break
            if s not in chosen and total + minutes[s] <= target * OVERSHOOT:
                chosen.append(s)
                total += minutes[s]
        if out and len(chosen) == len(out[-1]) or not chosen:   # every subset grows: the next speaker, whatever its size
            s = next((s for s in order if s not in chosen), None)
            if s is not None:
                chosen.append(s)
                total += minutes[s]
        out.append(list(chosen))
    out.append([s for s in order if s in chosen] + [s for s in order if s not in chosen])
    return out


def write_subsets(manifest: Path, targets: list[float], out_dir: Path, seed: int = 0) -> list[dict]:
    rows = read_manifest(manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    minutes = speaker_minutes(rows)
    gender = {r["speaker"]: r.get("gender") for r in rows}
    names = [f"{t:g}min" for t in sorted(targets)] + ["all"]
    summary = []
    for name, speakers in zip(names, nested_subsets(rows, targets, seed)):
        keep = set(speakers)
        subset = [r for r in rows if r["speaker"] in keep]
        path = out_dir / f"train-{name}.jsonl"
        write_manifest(path, subset)    # read_manifest resolved the audio; written relative to the new folder
        genders = [gender[s] for s in speakers]
        summary.append({"name": name, "manifest": str(path), "minutes": round(sum(minutes[s] for s in speakers), 2),
                        "hours": sum(minutes[s] for s in speakers) / 60, "utterances": len(subset),
                        "speakers": speakers, "female": genders.count("female"), "male": genders.count("male")})
    (out_dir / "subsets.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return summary


def eval_every(manifest: Path, batch_seconds: float, nproc: int, steps: int) -> int:
    """Epochs between evaluations closest to `steps` optimizer steps (at least 1)."""
    seconds = sum(float(r["duration"]) for r in read_manifest(manifest))
    steps_per_epoch = max(1.0, seconds / (batch_seconds * nproc))
    return max(1, round(steps / steps_per_epoch))


def read_run(run: Path) -> dict:
    """The best dev CER of a training run and how it ended, from its train.log."""
    records = [json.loads(line) for line in (run / "train.log").read_text(encoding="utf-8").splitlines() if line.strip()]
    evals = [r for r in records if "dev_cer" in r]
    if not evals:
        raise ValueError(f"{run}/train.log has no dev evaluation")
    best = min(evals, key=lambda r: r["dev_cer"])
    last = records[-1]
    steps_between = [b["step"] - a["step"] for a, b in zip(evals, evals[1:])]
    return {"dev_cer_greedy": best["dev_cer"], "dev_wer_greedy": best.get("dev_wer"), "best_step": best["step"],
            "best_epoch": best["epoch"], "steps": last["step"], "epochs": last["epoch"], "evaluations": len(evals),
            "steps_between_evaluations": int(np.median(steps_between)) if steps_between else None,
            "stopped": last.get("stopped", "not recorded (run still going or killed)"),
            "curve": [(r["step"], r["dev_cer"]) for r in evals]}


def beam_cer(report: Path, condition: str = "clean") -> Optional[float]:
    """CER (a fraction) of the beam + LM system in a training.evaluate_stt report, or None."""
    data = json.loads(report.read_text(encoding="utf-8"))
    for system in data["systems"]:
        if "beam" in system["system"]:
            return system["conditions"][condition]["cer"]
    return None


def fit_power_law(hours, cer) -> tuple[float, float]:
    """(a, b) of CER = a * hours^(-b), least squares on log CER against log hours."""
    x, y = np.log(np.asarray(hours, float)), np.log(np.asarray(cer, float))
    slope, intercept = np.polyfit(x, y, 1)
    return float(math.exp(intercept)), float(-slope)


def predict(a: float, b: float, hours: float) -> float:
    return a * hours ** (-b)


def fit(points: list[dict], key: str) -> Optional[dict]:
    usable = [p for p in points if p.get(key) is not None]
    if len(usable) < 2:
        return None
    hours, cer = [p["hours"] for p in usable], [p[key] for p in usable]
    a, b = fit_power_law(hours, cer)
    residuals = [math.log(c) - math.log(predict(a, b, h)) for h, c in zip(hours, cer)]
    # Leave-one-out: each point predicted from the others, the most honest test of the extrapolation
    # the data allow (the last point predicted from the smaller ones says most about it).
    loo = []
    if len(usable) >= 3:
        for i in range(len(usable)):
            ai, bi = fit_power_law(hours[:i] + hours[i + 1:], cer[:i] + cer[i + 1:])
            loo.append({"hours": hours[i], "measured": cer[i], "predicted": predict(ai, bi, hours[i])})
    return {"key": key, "a": a, "b": b, "rms_log_residual": float(np.sqrt(np.mean(np.square(residuals)))),
            "halving_factor": 2 ** (1 / b) if b > 0 else None,
            "predictions": {f"{h:g}": predict(a, b, h) for h, _ in STUDY_POINTS},
            "leave_one_out": loo}


def plot(points: list[dict], fits: list[dict], out: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.logspace(math.log10(min(p["hours"] for p in points) / 1.5), math.log10(1500), 200)
    styles = {"dev_cer_greedy": ("o", "greedy"), "dev_cer_beam": ("s", "beam + LM")}
    for f in fits:
        marker, label = styles[f["key"]]
        pts = [p for p in points if p.get(f["key"]) is not None]
        line, = ax.plot([p["hours"] for p in pts], [100 * p[f["key"]] for p in pts], marker, label=f"ours, {label}")
        ax.plot(grid, [100 * predict(f["a"], f["b"], h) for h in grid], "--", color=line.get_color(), alpha=0.7,
                label=f"fit {100 * f['a']:.0f}% x h^{-f['b']:.2f}")
    ax.plot([h for h, _ in STUDY_POINTS], [100 * c for _, c in STUDY_POINTS], "k*", markersize=12,
            label="study (AI-Hub free conversation)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [5, 10, 20, 30, 50, 70, 100]
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(t) for t in ticks]))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("hours of training speech")
    ax.set_ylabel("dev CER (%)")
    ax.set_title("DeepSpeech2 (GRU 256 x 4) from scratch: CER against hours")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def markdown(report: dict) -> str:
    lines = ["| subset | hours | speakers (f/m) | utterances | steps (best at) | evaluations | stopped | dev CER greedy | dev CER beam + LM |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in report["points"]:
        beam = f"{100 * p['dev_cer_beam']:.1f}" if p.get("dev_cer_beam") is not None else "—"
        lines.append(f"| {p['name']} | {p['hours']:.3f} | {p['female'] + p['male']} ({p['female']}/{p['male']}) | "
                     f"{p['utterances']} | {p['steps']} ({p['best_step']}) | {p['evaluations']} | {p['stopped']} | "
                     f"{100 * p['dev_cer_greedy']:.1f} | {beam} |")
    lines.append("")
    (h0, c0), (h1, c1) = STUDY_POINTS
    lines.append(f"The study's own two points fall with exponent {math.log(c0 / c1) / math.log(h1 / h0):.3f} "
                 f"(CER x {c1 / c0:.2f} for {h1 / h0:g} x the hours).")
    lines.append("")
    for f in report["fits"]:
        pred = ", ".join(f"{h} h: {100 * v:.1f}%" for h, v in f["predictions"].items())
        study = ", ".join(f"{h:g} h: {100 * c:.1f}%" for h, c in STUDY_POINTS)
        lines.append(f"- **{f['key']}**: CER = {100 * f['a']:.1f}% x hours^{-f['b']:.3f} (RMS log residual "
                     f"{f['rms_log_residual']:.3f}); predicts {pred} (study: {study}).")
        for loo in f["leave_one_out"]:
            lines.append(f"  - leave-one-out: {loo['hours']:.3f} h measured {100 * loo['measured']:.1f}%, "
                         f"predicted from the others {100 * loo['predicted']:.1f}%")
    return "\n".join(lines) + "\n"


def cmd_fit(args) -> dict:
    subsets = {s["name"]: s for s in json.loads(Path(args.subsets).read_text(encoding="utf-8"))}
    points = []
    for spec in args.run:
        name, run = spec.split("=", 1)
        point = {**{k: v for k, v in subsets[name].items() if k != "speakers"}, **read_run(Path(run))}
        report = Path(run) / "dev-beam.json"
        point["dev_cer_beam"] = beam_cer(report) if report.exists() else None
        points.append(point)
    points.sort(key=lambda p: p["hours"])
    fits = [f for f in (fit(points, "dev_cer_greedy"), fit(points, "dev_cer_beam")) if f]
    report = {"points": points, "fits": fits, "study_points": STUDY_POINTS, "command": args.command}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    plot(points, fits, out.with_suffix(".png"))
    print(markdown(report))
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("subsets", help="nested subsets by whole speakers")
    s.add_argument("--manifest", required=True)
    s.add_argument("--minutes", required=True, help="targets below the whole manifest, e.g. 10,20,40")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval-every", help="epochs between evaluations for about --steps steps")
    e.add_argument("--manifest", required=True)
    e.add_argument("--batch-seconds", type=float, required=True)
    e.add_argument("--nproc", type=int, default=1)
    e.add_argument("--steps", type=int, required=True)
    f = sub.add_parser("fit", help="fit CER against hours; table, JSON and plot")
    f.add_argument("--subsets", required=True, help="subsets.json from `subsets`")
    f.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (NAME as in subsets.json)")
    f.add_argument("--command", default="", help="the command that made the runs, recorded in the report")
    f.add_argument("--out", required=True, help="output path without suffix")
    args = p.parse_args(argv)
    if args.cmd == "subsets":
        targets = [float(m) for m in args.minutes.split(",") if m]
        for s in write_subsets(Path(args.manifest), targets, Path(args.out_dir), args.seed):
            print(f"{s['name']}: {s['minutes']:.1f} min, {len(s['speakers'])} speakers "
                  f"({s['female']} f / {s['male']} m), {s['utterances']} utterances")
    elif args.cmd == "eval-every":
        print(eval_every(Path(args.manifest), args.batch_seconds, args.nproc, args.steps))
    else:
        cmd_fit(args)


if __name__ == "__main__":
    main()
