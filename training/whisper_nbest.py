"""Does an n-gram LM help Whisper? Rescore Whisper base's n-best list with the jamo or the morpheme LM.

    python -m training.whisper_nbest --manifest data/ko-speech/dev.jsonl --noise-dir ../shared/data/noise \
        --conditions clean,noise10,noise5,noise0,farfield --threads 1 --out results/whisper-nbest-lm

Whisper base (CTranslate2, int8, CPU) decodes each utterance of each condition (training.conditions:
the same audio as training.evaluate_stt) as one window: the level-normalised audio
(speech.level, what the engine hears), faster-whisper's log-mel features, the prompt for Korean
transcription without timestamps, beam search with `--beam-size` and `--num-hypotheses` returned
with their scores. No VAD, no temperature fallback and no hallucination guard: the n-best list
of one beam, and its first entry is the baseline. The lists are cached (`--cache`, one JSON line
per condition and utterance), so a rerun only rescores.

Each hypothesis is then scored

    total = whisper + a * LM + b * characters

`whisper` is CTranslate2's score (log-probability per token, natural log: `avg`) or that times the
token count (`sum`); `LM` is the KenLM log10-probability of the sentence, with <s> and </s>, read
through flashlight-text's KenLM (the decoder's own), of the hypothesis with its digits spelled as
read (speech.text.spell_numbers) and normalised as the LMs' text was (training.build_lm): jamo
tokens with `|` between words for the jamo 6-gram, Kiwi surface morphemes for the morpheme
4-gram (an unknown morpheme scores as KenLM's <unk>); `characters` is the length CER counts
(speech.text.text_for_cer). a and b are chosen on a grid by the pooled CER of the tune speakers
over all conditions (ties: the smallest a, then the smallest |b|, so a=b=0 -- Whisper's own
choice -- wins a tie with it); the other speakers report. The oracle picks, per utterance, the
hypothesis with the fewest character errors. CER: speech.metrics, as every other result.
Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from speech.hub import tilde
from speech.metrics import error_counts, rates
from speech.text import normalize_transcript, spell_numbers
from training.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path.home() / ".cache" / "korean-speech" / "whisper-base" / "model"
LMS = {"jamo": "checkpoints/ds2-ko/lm.bin", "morpheme": "data/16lm/morph4/lm.bin"}
KINDS = ("avg", "sum")
A_GRID = "0,0.002,0.005,0.01,0.02,0.03,0.05,0.1,0.2,0.3,0.5,0.75,1,1.5,2,3"
B_GRID = "-8,-5,-3,-2,-1.5,-1,-0.5,-0.2,-0.1,-0.05,-0.02,-0.01,0,0.01,0.02,0.05,0.1,0.2,0.5,1,2"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- n-best lists ---------------------------------------------------------------------------------

def settings_key(args) -> dict:
    return {"model": tilde(args.model), "compute_type": args.compute_type, "beam_size": args.beam_size,
            "num_hypotheses": args.num_hypotheses, "seed": args.seed}


def read_cache(path: Path, key: dict) -> dict:
    """(condition, utt) -> record, for the records made with these settings."""
    out = {}
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    if r["settings"] == key:
                        out[(r["condition"], r["utt"])] = r
    return out


class NBest:
    """Whisper base's n-best list for one window of audio, as faster-whisper would decode it."""

    def __init__(self, model: str, compute_type: str, threads: int, beam_size: int, num_hypotheses: int):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        from speech.engines.whisper import LANGUAGE

        self.model = WhisperModel(str(model), device="cpu", compute_type=compute_type, cpu_threads=threads,
                                  num_workers=1)
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, True, task="transcribe", language=LANGUAGE)
        self.prompt = list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps]
        # faster-whisper's defaults: suppress_tokens=[-1] (non-speech symbols) and suppress_blank
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self.beam_size, self.num_hypotheses = beam_size, num_hypotheses

    def __call__(self, audio: np.ndarray) -> list[dict]:
        from faster_whisper.audio import pad_or_trim

        from speech.level import normalize_level

        features = self.model.feature_extractor(normalize_level(audio))
        # faster-whisper drops the last frame (its padding) and pads the window to 30 s
        encoded = self.model.encode(pad_or_trim(features[:, : features.shape[-1] - 1]))
        result = self.model.model.generate(
            encoded, [self.prompt], beam_size=self.beam_size, num_hypotheses=self.num_hypotheses,
            length_penalty=1.0, max_length=self.model.max_length, return_scores=True,
            suppress_blank=True, suppress_tokens=self.suppress)[0]
        # With length_penalty 1 the score is the summed log-probability over the tokens' count.
        return [{"text": self.tokenizer.decode(ids).strip(), "tokens": len(ids), "avg": float(score),
                 "sum": float(score) * len(ids)}
                for ids, score in zip(result.sequences_ids, result.scores)]


def build_nbest(args, rows: list[dict], conditions: list[str]) -> tuple[dict, dict]:
    """-> ({(condition, utt): record}, timing of what was decoded now)."""
    import torch

    from training.conditions import ConditionSet

    torch.set_num_threads(args.threads)
    key = settings_key(args)
    cache = Path(args.cache)
    have = read_cache(cache, key)
    todo = {c: [i for i, r in enumerate(rows) if (c, r["utt"]) not in have] for c in conditions}
    timing = {"decoded": 0, "audio_seconds": 0.0, "wall_seconds": 0.0, "cpu_seconds": 0.0}
    if not any(todo.values()):
        return have, timing
    conds = ConditionSet(rows, args.noise_dir, args.seed)
    nbest = NBest(args.model, args.compute_type, args.threads, args.beam_size, args.num_hypotheses)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "a", encoding="utf-8") as f:
        for c in conditions:
            if not todo[c]:
                continue
            audio = conds.audio(c)
            t_cond = time.perf_counter()
            for i in todo[c]:
                t0, c0 = time.perf_counter(), time.process_time()
                hyps = nbest(audio[i])
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                seconds = len(audio[i]) / 16000
                r = {"settings": key, "condition": c, "utt": rows[i]["utt"], "audio_seconds": round(seconds, 3),
                     "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "hypotheses": hyps}
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                have[(c, rows[i]["utt"])] = r
                timing["decoded"] += 1
                timing["audio_seconds"] += seconds
                timing["wall_seconds"] += wall
                timing["cpu_seconds"] += cpu
            log(f"{c}: {len(todo[c])} utterances decoded in {time.perf_counter() - t_cond:.0f} s")
    return have, timing


# --- LM scores ------------------------------------------------------------------------------------

def lm_text(text: str) -> str:
    """A hypothesis as the LMs' corpus was written: digits spelled as read, then Hangul and spaces."""
    return normalize_transcript(spell_numbers(text))


def lm_tokens(texts: list[str], lm: str) -> list[list[str]]:
    from training.lm_words import to_lm_words, word_lines

    if lm == "jamo":
        return [to_lm_words(t, "jamo").split() for t in texts]
    return [list(w) for w in word_lines(texts, "morpheme", workers=1)]


def lm_scores(texts: list[str], lm_path: str, lm: str) -> dict[str, float]:
    """text -> KenLM log10-probability of its tokens, <s> and </s> included."""
    from flashlight.lib.text.decoder import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    unique = sorted(set(texts))
    tokens = lm_tokens([lm_text(t) for t in unique], lm)
    vocab = Dictionary(sorted({w for ws in tokens for w in ws} | {"<unk>"}))
    model = KenLM(str(lm_path), vocab)   # words the LM does not know are scored as its <unk>
    out = {}
    for text, ws in zip(unique, tokens):
        state, total = model.start(False), 0.0
        for w in ws:
            state, s = model.score(state, vocab.get_index(w))
            total += s
        total += model.finish(state)[1]
        out[text] = total
    return out


# --- rescoring --------------------------------------------------------------------------------------

def pick(hyps: list[dict], kind: str, lm: str, a: float, b: float) -> int:
    totals = [h[kind] + (a * h["lm"][lm] if lm else 0.0) + b * h["chars"] for h in hyps]
    return int(np.argmax(totals))   # the first of equals: Whisper's order


def score_choice(items: list[dict], choice: list[int], numbers: str = "as-is") -> dict:
    c = error_counts([it["ref"] for it in items], [it["hyps"][k]["text"] for it, k in zip(items, choice)], numbers)
    return {**c, **rates(c)}


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True)
    p.add_argument("--every", type=int, default=1, help="every Nth utterance only (keeps all speakers)")
    p.add_argument("--conditions", default="clean,noise10,noise5,noise0,farfield")
    p.add_argument("--noise-dir", help="needed for the noise and far-field conditions")
    p.add_argument("--seed", type=int, default=2024, help="the conditions' seed (training.evaluate_stt's default)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="CTranslate2 Whisper folder (default: setup.sh's copy)")
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--num-hypotheses", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default="data/whisper-nbest/nbest.jsonl", help="the n-best lists, one JSON line each")
    p.add_argument("--jamo-lm", default=LMS["jamo"])
    p.add_argument("--morpheme-lm", default=LMS["morpheme"])
    p.add_argument("--tune-speakers", default="ava,emf")
    p.add_argument("--lm-weights", default=A_GRID, help="a: weight of the LM's log10-probability")
    p.add_argument("--length-bonus", default=B_GRID, help="b: bonus per character")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    rows = read_manifest(args.manifest)[::args.every]
    conditions = [c for c in args.conditions.split(",") if c]
    tune_spk = set(args.tune_speakers.split(","))
    t0 = time.perf_counter()
    records, timing = build_nbest(args, rows, conditions)
    t_nbest = time.perf_counter() - t0

    # items[condition][part] = [{"ref", "hyps": [{text, tokens, avg, sum, chars, lm: {jamo, morpheme}}]}]
    t1 = time.perf_counter()
    texts = sorted({h["text"] for c in conditions for r in rows for h in records[(c, r["utt"])]["hypotheses"]})
    lm_paths = {"jamo": args.jamo_lm, "morpheme": args.morpheme_lm}
    scores = {lm: lm_scores(texts, path, lm) for lm, path in lm_paths.items()}
    t_lm = time.perf_counter() - t1
    from speech.text import text_for_cer

    items: dict = {c: {"tune": [], "test": []} for c in conditions}
    for c in conditions:
        for r in rows:
            hyps = [{**h, "chars": len(text_for_cer(h["text"])), "lm": {lm: scores[lm][h["text"]] for lm in scores}}
                    for h in records[(c, r["utt"])]["hypotheses"]]
            for h in hyps:
                h["errors"] = error_counts([r["text"]], [h["text"]])["char_errors"]
            items[c]["tune" if r["speaker"] in tune_spk else "test"].append({"ref": r["text"], "hyps": hyps})
    parts = ("tune", "test")
    if not all(items[conditions[0]][k] for k in parts):
        p.error("--tune-speakers must leave utterances on both sides")

    def pooled_tune_errors(kind, lm, a, b) -> int:
        return sum(it["hyps"][pick(it["hyps"], kind, lm, a, b)]["errors"] for c in conditions for it in items[c]["tune"])

    a_grid = [float(x) for x in args.lm_weights.split(",")]
    b_grid = [float(x) for x in args.length_bonus.split(",")]
    systems = {"whisper 1-best": ("avg", None, 0.0, 0.0)}
    grid = []
    # "no LM": the length bonus alone (a = 0), to tell what the LM adds from what the length term does
    for lm, kind in itertools.product([None, *lm_paths], KINDS):
        points = [{"lm": lm, "kind": kind, "a": a, "b": b, "tune_char_errors": pooled_tune_errors(kind, lm, a, b)}
                  for a, b in itertools.product([0.0] if lm is None else a_grid, b_grid)]
        grid += points
        best = min(points, key=lambda g: (g["tune_char_errors"], g["a"], abs(g["b"])))
        name = f"{lm} LM, whisper {kind}" if lm else f"length bonus only, whisper {kind}"
        systems[name] = (kind, lm, best["a"], best["b"])
        log(f"{name}: a {best['a']} b {best['b']} tune char errors {best['tune_char_errors']}")

    results = {}
    for name, (kind, lm, a, b) in systems.items():
        res = {"kind": kind, "lm": lm, "a": a, "b": b, "parts": {}}
        for part in parts:
            res["parts"][part] = {}
            for c in conditions:
                its = items[c][part]
                choice = [pick(it["hyps"], kind, lm, a, b) for it in its]
                res["parts"][part][c] = {**score_choice(its, choice),
                                         "cer_numbers_spelled": score_choice(its, choice, "spelled")["cer"],
                                         "changed": sum(k != 0 for k in choice)}
        results[name] = res
    oracle = {"kind": None, "lm": None, "a": None, "b": None, "parts": {}}
    for part in parts:
        oracle["parts"][part] = {}
        for c in conditions:
            its = items[c][part]
            choice = [min(range(len(it["hyps"])), key=lambda k: it["hyps"][k]["errors"]) for it in its]
            oracle["parts"][part][c] = {**score_choice(its, choice),
                                        "cer_numbers_spelled": score_choice(its, choice, "spelled")["cer"],
                                        "changed": sum(k != 0 for k in choice)}
    results["oracle (best of the list)"] = oracle
    for r in results.values():
        for part in parts:
            r[f"{part}_mean_cer"] = float(np.mean([r["parts"][part][c]["cer"] for c in conditions]))
    rescored = [n for n in results if results[n]["lm"]]   # an LM's best: what this measures
    chosen = min(rescored, key=lambda n: (results[n]["tune_mean_cer"], n))

    cached = [records[(c, r["utt"])] for c in conditions for r in rows]
    report = {
        "command": "python -m training.whisper_nbest " + " ".join(tilde(a) for a in argv),
        "date": datetime.date.today().isoformat(),
        "machine": (f"{platform.machine()}, {os.cpu_count()} CPU cores shared with a training run; "
                    f"{args.threads} thread(s); load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())),
        "manifest": args.manifest, "every": args.every, "conditions": conditions, "seed": args.seed,
        "noise_dir": args.noise_dir, "settings": settings_key(args), "cache": args.cache,
        "lms": lm_paths, "tune_speakers": sorted(tune_spk),
        "utterances": {part: len(items[conditions[0]][part]) for part in parts},
        "n_best": {"hypotheses_per_utterance": float(np.mean([len(r["hypotheses"]) for r in cached])),
                   "distinct_texts_per_utterance": float(np.mean([len({h["text"] for h in r["hypotheses"]})
                                                                  for r in cached])),
                   "decode_wall_seconds": round(sum(r["wall_seconds"] for r in cached), 1),
                   "decode_cpu_seconds": round(sum(r["cpu_seconds"] for r in cached), 1),
                   "audio_seconds": round(sum(r["audio_seconds"] for r in cached), 1)},
        "this_run": {"nbest_wall_seconds": round(t_nbest, 1), "decoded_now": timing["decoded"],
                     "lm_scoring_seconds": round(t_lm, 1), "total_seconds": round(time.perf_counter() - t0, 1)},
        "grids": {"a": a_grid, "b": b_grid}, "results": results, "chosen": chosen,
        "test_gain_points": 100 * (results["whisper 1-best"]["test_mean_cer"] - results[chosen]["test_mean_cer"]),
        "grid": grid,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    out.with_name(out.name + ".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    conds, res = report["conditions"], report["results"]

    def table(part: str, key: str = "cer") -> list[str]:
        head = ["system", "a", "b"] + conds + ["mean", "changed"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in res.items():
            vals = [100 * r["parts"][part][c][key] for c in conds]
            mark = f"**{name}** (chosen)" if name == report["chosen"] else name
            ab = ["—", "—"] if r["a"] is None or name == "whisper 1-best" else [f"{r['a']:g}", f"{r['b']:g}"]
            changed = sum(r["parts"][part][c]["changed"] for c in conds)
            lines.append("| " + " | ".join([mark] + ab + [f"{v:.1f}" for v in vals] + [f"{np.mean(vals):.1f}", str(changed)])
                         + " |")
        return lines

    nb, run = report["n_best"], report["this_run"]
    s = report["settings"]
    return "\n".join([
        "# Whisper base n-best rescored with an n-gram LM", "",
        f"Date {report['date']}. Command: `{report['command']}`", "",
        f"Machine: {report['machine']}.", "",
        f"Whisper `{s['model']}` ({s['compute_type']}, CPU), one window per utterance, level-normalised audio, "
        f"beam {s['beam_size']}, {s['num_hypotheses']} hypotheses returned ({nb['distinct_texts_per_utterance']:.2f} "
        "distinct texts per utterance on average), Korean, no timestamps, no VAD, no fallback, no guard: "
        "the row `whisper 1-best` is the first hypothesis of the same beam, not the engine's output. "
        f"Dev manifest `{report['manifest']}`" + (f", every {report['every']}th utterance" if report["every"] > 1 else
                                                   f", all {sum(report['utterances'].values())} utterances")
        + f"; conditions as training.evaluate_stt (seed {report['seed']}). "
        f"a, b tuned on speakers {', '.join(report['tune_speakers'])} ({report['utterances']['tune']} utterances per "
        f"condition, CER pooled over all conditions); test = the other speakers ({report['utterances']['test']} "
        "utterances per condition). total = whisper score + a · LM log10-prob + b · characters; "
        "`avg` = CTranslate2's per-token log-prob, `sum` = summed log-prob. LMs: "
        + ", ".join(f"{k} `{v}`" for k, v in report["lms"].items()) + ". CER in % (speech.metrics, numbers as written).",
        "", "## Test speakers", "", *table("test"),
        "", "## Tune speakers", "", *table("tune"),
        "", "## Test speakers, numbers spelled on both sides (same choices)", "", *table("test", "cer_numbers_spelled"),
        "", "`changed`: utterances (all conditions) whose pick is not Whisper's first hypothesis.", "",
        f"Chosen (the LM row with the lowest tune CER): **{report['chosen']}**; test gain over the 1-best "
        f"{report['test_gain_points']:+.2f} CER points (mean over conditions): "
        + ("at least" if report["test_gain_points"] >= 0.5 else "below") + " the 0.5-point bar. Headroom: the oracle is "
        f"{100 * (res['whisper 1-best']['test_mean_cer'] - res['oracle (best of the list)']['test_mean_cer']):.1f} "
        "points below the 1-best on the test speakers.", "",
        f"Runtime: n-best lists {nb['decode_wall_seconds']:.0f} s wall / {nb['decode_cpu_seconds']:.0f} s CPU for "
        f"{nb['audio_seconds'] / 60:.1f} min of audio (all conditions); LM scoring {run['lm_scoring_seconds']:.0f} s; "
        f"this run {run['total_seconds']:.0f} s ({run['decoded_now']} decoded now, the rest from `{report['cache']}`).",
        ""])


if __name__ == "__main__":
    main()
