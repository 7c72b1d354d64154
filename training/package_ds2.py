"""Assemble a shippable DeepSpeech2 folder: the trainer's release + an optional KenLM + decoder
settings + evaluation metrics, written into the release's config.json (speech.bundle.save_bundle;
the weights file is copied byte for byte).

    python -m training.package_ds2 --release runs/ds2/release --lm data/lm/jamo/lm.bin \
        --lm-weight 2.0 --word-score 0 --metrics results/dev-ds2.json --out checkpoints/ds2-ko

The model card (README.md in --out) is written by hand from the measured numbers; this script
keeps an existing one.
"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

from speech.bundle import CheckpointError, DecoderSettings, load_bundle, save_bundle


def evaluation_summary(report: dict) -> dict:
    """The headline of a training.evaluate_stt results JSON: CER, WER and RTF per system and condition."""
    if not isinstance(report.get("systems"), list):
        raise ValueError("not a training.evaluate_stt results file (it has no 'systems' list)")
    return {
        "manifest": report.get("manifest"), "utterances": report.get("utterances"), "command": report.get("command"),
        "systems": {s["system"]: {c: {k: round(r[k], 4) for k in ("cer", "wer", "rtf")}
                                  for c, r in s["conditions"].items()} for s in report["systems"]},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", required=True, help="release folder written by training.train_ds2")
    p.add_argument("--out", required=True)
    p.add_argument("--lm", default=None, help="KenLM file (lm.bin or lm.arpa) with lm.json beside it")
    p.add_argument("--lm-weight", type=float, default=0.5)
    p.add_argument("--word-score", type=float, default=0.0)
    p.add_argument("--beam-size", type=int, default=32)
    p.add_argument("--metrics", default=None, help="results JSON of training.evaluate_stt to record")
    a = p.parse_args(argv)

    src, out = Path(a.release), Path(a.out)
    try:
        bundle = load_bundle(src, "deepspeech2", weights=False)
    except CheckpointError as e:
        p.error(f"{src} is not a DeepSpeech2 release: {e}")
    if a.metrics:
        try:
            bundle = bundle.with_info(evaluation=evaluation_summary(json.loads(Path(a.metrics).read_text(encoding="utf-8"))))
        except (OSError, ValueError) as e:
            p.error(f"--metrics {a.metrics}: {e}")
    out.mkdir(parents=True, exist_ok=True)
    lm_name = None
    if a.lm:
        lm = Path(a.lm)
        meta = lm.with_name("lm.json")
        if not meta.exists():
            p.error(f"{meta} is missing: build the LM with training.build_lm")
        shutil.copyfile(lm, out / ("lm" + lm.suffix))
        shutil.copyfile(meta, out / "lm.json")
        lm_name = "lm" + lm.suffix
    bundle = replace(bundle, decoder=DecoderSettings(a.beam_size, lm_name, a.lm_weight, a.word_score))
    save_bundle(out, bundle)
    print(f"packaged {src} -> {out} (lm: {lm_name})")


if __name__ == "__main__":
    main()
