"""Text from non-speech: how often does a system write something for noise alone?

    python -m training.evaluate_nonspeech --noise-dir ../shared/data/noise --seconds 10 --per-file 3 \
        --system ds2 --system ds2::beam --out results/ds2-nonspeech

Each noise file of the folder's manifest.tsv gives `--per-file` clips of `--seconds` (evenly spaced,
the whole file when shorter), at the file's level and `--quiet-db` dB down (a quiet recording,
16-bit). A clip "writes text" when the transcript is not empty; the right answer is always empty.
DeepSpeech2 is also run with its speech gate off (the behaviour before the gate) for comparison.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from speech.audio import SAMPLE_RATE, load_audio
from training.conditions import quiet
from training.systems import parse_system


def clips(noise_dir: Path, seconds: float, per_file: int) -> list[tuple[str, str, np.ndarray]]:
    """(file, category, audio) clips from every file in noise_dir/manifest.tsv."""
    out = []
    with open(noise_dir / "manifest.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            audio = load_audio(noise_dir / row["path"], check=False)
            n = int(seconds * SAMPLE_RATE)
            starts = [0] if len(audio) <= n else np.linspace(0, len(audio) - n, per_file).astype(int).tolist()
            for s in starts:
                out.append((row["path"], row["category"], audio[s:s + n]))
    return out


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noise-dir", required=True, type=Path)
    p.add_argument("--system", action="append", required=True, metavar="ENGINE[:MODEL[:DECODER]]")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--per-file", type=int, default=3)
    p.add_argument("--quiet-db", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    base = clips(a.noise_dir, a.seconds, a.per_file)
    sets = {"as recorded": [c[2] for c in base], f"{a.quiet_db:g} dB down": [quiet(c[2], a.quiet_db) for c in base]}
    report = {"noise_dir": str(a.noise_dir), "clips": len(base), "seconds": a.seconds,
              "files": sorted({c[0] for c in base}), "command": "python -m training.evaluate_nonspeech " + " ".join(argv),
              "systems": []}
    for spec in a.system:
        system = parse_system(spec.replace("~", str(Path.home()), 1))
        engine = system.load()
        variants = [(system.name, True)] + ([(system.name + ", no gate", False)] if system.engine == "ds2" else [])
        for name, gate in variants:
            if system.engine == "ds2":
                engine.gate = gate
            entry = {"system": name, "sets": {}}
            for set_name, audio in sets.items():
                texts = []
                for x in audio:
                    try:
                        texts.append(engine.transcribe((SAMPLE_RATE, x)).text)
                    except ValueError:  # digitally silent clip: refused, no text
                        texts.append("")
                by_cat: dict[str, list[int]] = {}
                for (_, cat, _), t in zip(base, texts):
                    by_cat.setdefault(cat, [0, 0])
                    by_cat[cat][0] += bool(t)
                    by_cat[cat][1] += 1
                entry["sets"][set_name] = {"with_text": sum(bool(t) for t in texts), "clips": len(texts),
                                           "by_category": by_cat, "texts": texts}
                print(f"{name} | {set_name}: text on {sum(bool(t) for t in texts)} of {len(texts)} clips",
                      file=sys.stderr, flush=True)
            report["systems"].append(entry)
        del engine
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    cats = sorted({c[1] for c in base})
    lines = [f"# Text from non-speech: {a.noise_dir}", "",
             f"{len(base)} clips of at most {a.seconds:g} s from {len(report['files'])} noise files, as recorded "
             f"and {a.quiet_db:g} dB down (16-bit). Cells: clips with any text / clips; the right answer is 0. "
             f"Command: `{report['command']}`", "",
             "| system | audio | total | " + " | ".join(cats) + " |", "|---|---|---|" + "---|" * len(cats)]
    for s in report["systems"]:
        for set_name, r in s["sets"].items():
            cells = [f"{r['by_category'][c][0]}/{r['by_category'][c][1]}" for c in cats]
            lines.append(f"| {s['system']} | {set_name} | {r['with_text']}/{r['clips']} | " + " | ".join(cells) + " |")
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
