"""Does the n-gram LM help? Decode a manifest greedily, with beam search alone, and with beam search
plus the LM over a grid of weights; tune on some speakers, report on the others.

    python -m training.tune_lm --model checkpoints/ds2-ko --lm checkpoints/ds2-ko/lm.bin \
        --manifest data/ko-speech/dev.jsonl --tune-speakers ava,emf --out results/ds2-lm

The acoustic model runs once per utterance; every decoder reads the same log-probabilities.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from speech.audio import load_audio
from speech.beam import BeamSearchDecoder
from speech.decoding import GreedyDecoder
from speech.level import normalize_level
from speech.metrics import error_counts, rates
from speech.stt import DS2Engine
from training.manifest import read_manifest


def score(decoder, tokenizer, log_probs, rows) -> dict:
    t0 = time.perf_counter()
    hyps = [tokenizer.decode(decoder.decode(lp).ids) for lp in log_probs]
    seconds = time.perf_counter() - t0
    return {**rates(error_counts([r["text"] for r in rows], hyps)),
            "decode_seconds": seconds, "examples": hyps[:2]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--lm", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--tune-speakers", required=True, help="comma-separated speakers to tune on; the rest report")
    p.add_argument("--lm-weights", default="0.2,0.4,0.7,1.0")
    p.add_argument("--word-scores", default="-1,0,1,2")
    p.add_argument("--beam-size", type=int, default=32)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)

    engine = DS2Engine(model=a.model)
    rows = read_manifest(a.manifest)
    tune_spk = set(a.tune_speakers.split(","))
    # the input the engine's transcribe decodes (levelled where the release says so), not the raw file
    audio = [load_audio(r["audio"]) for r in rows]
    log_probs = engine.log_probs([normalize_level(a) for a in audio] if engine.level_input else audio)
    parts = {"tune": [i for i, r in enumerate(rows) if r["speaker"] in tune_spk],
             "test": [i for i, r in enumerate(rows) if r["speaker"] not in tune_spk]}
    if not parts["tune"] or not parts["test"]:
        p.error("--tune-speakers must leave utterances on both sides")
    tok = engine.tokenizer

    def run(decoder, part):
        idx = parts[part]
        return score(decoder, tok, [log_probs[i] for i in idx], [rows[i] for i in idx])

    results = {"greedy": {k: run(GreedyDecoder(), k) for k in parts}}
    beam = BeamSearchDecoder(tok, lm_path=None, beam_size=a.beam_size)
    results["beam"] = {k: run(beam, k) for k in parts}
    grid = []
    for w, s in itertools.product([float(x) for x in a.lm_weights.split(",")],
                                  [float(x) for x in a.word_scores.split(",")]):
        dec = BeamSearchDecoder(tok, lm_path=a.lm, beam_size=a.beam_size, lm_weight=w, word_score=s)
        r = run(dec, "tune")
        grid.append({"lm_weight": w, "word_score": s, "tune_cer": r["cer"], "tune_wer": r["wer"]})
        print(f"lm_weight {w:.2f} word_score {s:+.1f}: tune CER {r['cer']:.4f} WER {r['wer']:.4f}", flush=True)
    best = min(grid, key=lambda g: g["tune_cer"])
    dec = BeamSearchDecoder(tok, lm_path=a.lm, beam_size=a.beam_size, lm_weight=best["lm_weight"],
                            word_score=best["word_score"])
    results["beam+lm"] = {k: run(dec, k) for k in parts}
    summary = {"model": str(engine.folder), "lm": a.lm, "manifest": a.manifest, "tune_speakers": sorted(tune_spk),
               "utterances": {k: len(v) for k, v in parts.items()}, "best": best, "grid": grid,
               "results": results,
               "command": "python -m training.tune_lm " + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    lines = [f"# Does the LM help? {engine.model_name}", "",
             f"Model `{engine.folder}`, LM `{a.lm}`, manifest `{a.manifest}`. LM weights tuned on speakers "
             f"{', '.join(sorted(tune_spk))} ({len(parts['tune'])} utterances); the test columns are the other "
             f"speakers ({len(parts['test'])} utterances). Best: lm_weight {best['lm_weight']}, word_score "
             f"{best['word_score']}.", "",
             "| decoder | tune CER | tune WER | test CER | test WER | decode s (test) |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['tune']['cer']:.4f} | {r['tune']['wer']:.4f} | {r['test']['cer']:.4f} | "
                     f"{r['test']['wer']:.4f} | {r['test']['decode_seconds']:.1f} |")
    lines += ["", "Command: `" + summary["command"] + "`", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
