"""Does level normalisation (speech.level) help? The VAD and each recogniser, with and without it.

    python -m training.measure_level --manifest data/ko-speech/dev.jsonl --noise-dir ../shared/data/noise \
        --system ds2 --system ds2::beam --system whisper:~/.cache/korean-speech/whisper-base/model \
        --conditions clean,quiet30,noise10,farfield --out results/level

Conditions are those of training.evaluate_stt (same seeds, same audio) plus `quietN`: the clean
utterance attenuated by N dB and quantised to 16-bit PCM, a quiet home recording. For each
condition: the share of utterances where Silero VAD finds speech on the raw and on the normalised
audio, and for each system the CER with the recogniser fed the raw audio ("raw") or the normalised
audio ("levelled"); the VAD always hears the normalised audio (that is not in question).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from speech.audio import SAMPLE_RATE
from speech.level import normalize_level
from speech.metrics import error_counts, rates
from speech.vad import speech_spans
from training.conditions import ConditionSet, quiet
from training.systems import parse_system
from training.manifest import read_manifest

_QUIET = re.compile(r"^quiet(\d+(?:\.\d+)?)$")


def condition_audio(conds: ConditionSet, name: str) -> list[np.ndarray]:
    m = _QUIET.match(name)
    if m:
        return [quiet(a, float(m.group(1))) for a in conds.clean]
    return conds.audio(name)


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True)
    p.add_argument("--system", action="append", required=True, metavar="ENGINE[:MODEL[:DECODER]]")
    p.add_argument("--conditions", default="clean,quiet30,noise10,farfield")
    p.add_argument("--noise-dir", default=None)
    p.add_argument("--every", type=int, default=1, help="every Nth utterance only")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = read_manifest(a.manifest)[::a.every]
    conds = ConditionSet(rows, a.noise_dir, a.seed)
    conditions = [c.strip() for c in a.conditions.split(",") if c.strip()]
    refs = [r["text"] for r in rows]
    report = {"manifest": a.manifest, "utterances": len(rows), "conditions": conditions,
              "command": "python -m training.measure_level " + " ".join(argv), "vad": {}, "systems": []}
    audio = {c: condition_audio(conds, c) for c in conditions}
    for c in conditions:
        raw = sum(bool(speech_spans(x)) for x in audio[c]) / len(rows)
        lev = sum(bool(speech_spans(normalize_level(x))) for x in audio[c]) / len(rows)
        report["vad"][c] = {"raw": raw, "levelled": lev}
        print(f"VAD {c}: speech found in {raw:.3f} raw, {lev:.3f} levelled", file=sys.stderr, flush=True)
    for spec in a.system:
        spec = spec.replace("~", str(Path.home()), 1) if "~" in spec else spec
        system = parse_system(spec)
        engine = system.load()
        entry = {"system": system.name, "conditions": {}}
        for c in conditions:
            entry["conditions"][c] = {}
            for mode in ("raw", "levelled"):
                engine.level_input = mode == "levelled"
                hyps = [engine.transcribe((SAMPLE_RATE, x)).text for x in audio[c]]
                cer = rates(error_counts(refs, hyps))["cer"]
                entry["conditions"][c][mode] = {"cer": cer, "empty": sum(not h for h in hyps)}
                print(f"{system.name} | {c} | {mode}: CER {cer:.4f}", file=sys.stderr, flush=True)
        report["systems"].append(entry)
        del engine
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    lines = [f"# Level normalisation: {a.manifest}", "",
             f"{len(rows)} utterances. Command: `{report['command']}`", "",
             "Share of utterances where Silero VAD finds speech (raw audio / level-normalised audio):", "",
             "| condition | raw | levelled |", "|---|---|---|"]
    lines += [f"| {c} | {v['raw']:.3f} | {v['levelled']:.3f} |" for c, v in report["vad"].items()]
    lines += ["", "CER in % with the recogniser fed the raw or the level-normalised audio (the VAD always hears the "
              "normalised audio; empty transcripts in brackets):", "",
              "| system | " + " | ".join(f"{c} raw | {c} levelled" for c in conditions) + " |",
              "|---|" + "---|---|" * len(conditions)]
    for s in report["systems"]:
        cells = []
        for c in conditions:
            for mode in ("raw", "levelled"):
                r = s["conditions"][c][mode]
                cells.append(f"{100 * r['cer']:.1f}" + (f" ({r['empty']})" if r["empty"] else ""))
        lines.append(f"| {s['system']} | " + " | ".join(cells) + " |")
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
