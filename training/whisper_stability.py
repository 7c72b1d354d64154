"""How much does Whisper's transcript move when the audio changes inaudibly? The yardstick for
"a 30 dB quieter copy gives the same transcript" (issue 11, item 5).

    python -m training.whisper_stability --out results/whisper-stability

For each clip: the default engine's transcript of the clip; of a copy 30 dB down saved as 16-bit PCM
(tests/test_level.py's quiet copy: after level normalisation it is the clip plus the 16-bit floor
raised by 30 dB, about -71 dBFS); and of the clip with white noise added at a fixed level after
level normalisation (speech at -20 dBFS, so -70 dBFS is 50 dB under it). Reported: clips whose
text changed, and the CER between the changed and the original transcripts (speech.metrics).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speech.audio import SAMPLE_RATE, load_audio
from speech.metrics import cer_wer

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CLIPS = sorted((FIX / "gender").glob("*.flac")) + sorted((FIX / "examples").glob("ko_*.flac"))


def quiet_copy(path: Path, folder: Path, db: float = 30.0) -> Path:
    out = folder / f"{path.stem}.quiet{db:g}.wav"
    sf.write(str(out), load_audio(path) * np.float32(10 ** (-db / 20)), SAMPLE_RATE, subtype="PCM_16")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="Whisper folder (default: the default engine's)")
    p.add_argument("--dither-dbfs", default="-80,-70", help="noise levels added after level normalisation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/whisper-stability")
    args = p.parse_args(argv)
    from speech.stt import load_engine

    engine = load_engine("whisper" if args.model else None, model=args.model, cpu_threads=args.threads)
    recognise = engine.recognise
    folder = Path(tempfile.mkdtemp())
    variants = {"quiet 30 dB, 16-bit": None, **{f"noise at {float(d):g} dBFS": float(d)
                                                 for d in args.dither_dbfs.split(",")}}
    t0 = time.time()
    original = [engine.transcribe(c).text for c in CLIPS]
    rows = []
    for name, dbfs in variants.items():
        if dbfs is None:
            engine.recognise = recognise
            texts = [engine.transcribe(quiet_copy(c, folder)).text for c in CLIPS]
        else:
            def noisy(audio, *a, level=dbfs, **k):
                noise = np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
                return recognise(audio + noise * np.float32(10 ** (level / 20)), *a, **k)

            engine.recognise = noisy
            texts = [engine.transcribe(c).text for c in CLIPS]
        changed = [i for i, (a, b) in enumerate(zip(original, texts)) if a != b]
        rows.append({"variant": name, "clips": len(CLIPS), "changed": len(changed),
                     "cer_vs_original": round(100 * cer_wer(original, texts)[0], 2),
                     "examples": [[CLIPS[i].name, original[i], texts[i]] for i in changed]})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    engine.recognise = recognise
    res = {"command": "python -m training.whisper_stability " + " ".join(sys.argv[1:] if argv is None else argv), "model": engine.model_name,
           "date": time.strftime("%Y-%m-%d"), "minutes": round((time.time() - t0) / 60, 1),
           "load_average": [round(x, 1) for x in os.getloadavg()], "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    lines = ["# Whisper's transcript under inaudible changes", "",
             f"`{res['command'].strip()}` ({res['date']}, model {res['model']}, default decoding): "
             f"{len(CLIPS)} fixture clips (tests/fixtures/gender, tests/fixtures/examples/ko_*).", "",
             "| variant | clips changed | CER against the original transcripts % |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['changed']} of {r['clips']} | {r['cer_vs_original']:.2f} |" for r in rows]
    lines += ["", "Changed transcripts (original, then changed):", ""]
    for r in rows:
        lines += [f"- {r['variant']}, `{clip}`: {a} / {b}" for clip, a, b in r["examples"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
