"""Whisper base as a teacher for the DeepSpeech2 student: frame posteriors of a small CTC head on
frozen Whisper encoder states, cached compactly for `training.train_ds2 --teacher`.

    python -m training.whisper_teacher states --manifest data/ko-speech/train.jsonl data/ko-speech/dev.jsonl \
        --out runs/teacher/states
    python -m training.whisper_teacher head --states runs/teacher/states --train data/ko-speech/train.jsonl \
        --eval data/ko-speech/dev.jsonl --out runs/teacher/head
    python -m training.whisper_teacher posteriors --states runs/teacher/states --head runs/teacher/head \
        --manifest data/ko-speech/train.jsonl --out runs/teacher/train-top8

Stages:
- `states`: Whisper base's encoder (CTranslate2, the model setup.sh assembles; any CTranslate2 Whisper
  folder with --model) over every utterance of the manifests, one 30 s window each (as Whisper
  always sees audio), cropped to the utterance's own frames (50 per second), stored float16 in
  `states.npy` with `index.json` (audio path relative to the working directory -> first frame,
  frame count). Utterances over 30 s
  are skipped.
- `head`: a convolutional CTC head on the frozen states (LayerNorm, conv 512->64 of stride 2,
  conv 64->jamo: about 121k parameters) that writes jamo at 25 frames per second, the student's
  rate. Trained on the train manifest only: the step kept is chosen on speakers held out of the
  train manifest (--holdout-speakers), never on dev. `--eval` only reports a manifest's greedy CER
  at the end (the dev figure the card quotes); nothing is chosen by it.
- `posteriors`: the head's top-k log-probabilities per frame (k ids int16, k log-probs float16),
  `ids.npy`, `logp.npy`, `index.json`: a few MB for the 68-minute train split. The student reads
  them by audio path, so any subset manifest of the same utterances works.

The teacher sees clean audio; the student is trained on its augmented copy (noise, reverberation,
speed), so distillation also teaches it to answer on noisy input as the teacher does on clean.
Speed perturbation changes the number of frames; `TeacherPosteriors.loss` maps each student frame
to the teacher frame at the same relative time.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from speech.audio import SAMPLE_RATE, load_audio
from speech.bundle import Bundle, load_bundle, save_bundle
from speech.decoding import greedy_decode
from speech.hub import tilde
from speech.metrics import error_counts, rates
from speech.models.teacher import TeacherHead, TeacherHeadDims
from speech.text import JamoTokenizer
from training.distill import audio_key, write_posteriors
from training.manifest import read_manifest

WINDOW_SECONDS = 30.0
STATE_RATE = 50               # Whisper encoder frames per second
SAMPLES_PER_STATE = SAMPLE_RATE // STATE_RATE


def state_frames(samples: int) -> int:
    return math.ceil(samples / SAMPLES_PER_STATE)


# --- stage 1: encoder states ------------------------------------------------------------------

def encode_states(manifests: list[str], model_dir: str, out: Path, threads: int = 0, batch: int = 4) -> dict:
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
    rows, seen = [], set()
    for m in manifests:
        for r in read_manifest(m):
            if audio_key(r["audio"]) not in seen:
                seen.add(audio_key(r["audio"]))
                rows.append(r)
    chunks, index, offset, skipped = [], {}, 0, 0
    t0 = time.time()
    for start in range(0, len(rows), batch):
        group, feats, lengths = [], [], []
        for r in rows[start:start + batch]:
            audio = load_audio(r["audio"])
            if len(audio) > WINDOW_SECONDS * SAMPLE_RATE:
                skipped += 1
                continue
            group.append(r["audio"])
            lengths.append(state_frames(len(audio)))
            feats.append(pad_or_trim(model.feature_extractor(audio)))
        if not group:
            continue
        enc = np.asarray(model.encode(np.stack(feats)))          # (B, 1500, 512)
        for path, n, states in zip(group, lengths, enc):
            chunks.append(states[:n].astype(np.float16))
            index[audio_key(path)] = [offset, n]
            offset += n
        if start // batch % 25 == 0:
            print(f"{start + len(group)}/{len(rows)} utterances, {time.time() - t0:.0f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "states.npy", np.concatenate(chunks))
    info = {"model": tilde(model_dir), "frames": offset, "rate": STATE_RATE, "utterances": len(index),
            "skipped_over_30s": skipped, "manifests": manifests, "seconds": round(time.time() - t0, 1)}
    (out / "index.json").write_text(json.dumps({"info": info, "index": index}, ensure_ascii=False) + "\n", encoding="utf-8")
    return info


class States:
    """Encoder states by audio path (memory-mapped)."""

    def __init__(self, folder):
        folder = Path(folder)
        data = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        self.info, self.index = data["info"], data["index"]
        self.array = np.load(folder / "states.npy", mmap_mode="r")

    def __contains__(self, path) -> bool:
        return audio_key(path) in self.index

    def get(self, path) -> np.ndarray:
        first, n = self.index[audio_key(path)]
        return np.asarray(self.array[first:first + n], dtype=np.float32)


# --- stage 2: the CTC head --------------------------------------------------------------------

def _batches(items: list, size: int, rng: random.Random | None):
    items = list(items)
    if rng is not None:
        rng.shuffle(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _collate(states: States, rows: list[dict], tok: JamoTokenizer):
    xs = [torch.from_numpy(states.get(r["audio"])) for r in rows]
    lengths = torch.tensor([len(x) for x in xs])
    x = nn.utils.rnn.pad_sequence(xs, batch_first=True)
    targets = [torch.tensor(tok.encode(r["text"])) for r in rows]
    return x, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets])


def head_cer(head: TeacherHead, states: States, rows: list[dict], tok: JamoTokenizer) -> dict:
    head.eval()
    hyps = []
    with torch.no_grad():
        for group in _batches(rows, 32, None):
            x, lengths, _, _ = _collate(states, group, tok)
            lp, out_len = head(x, lengths)
            hyps += [tok.decode(greedy_decode(lp[b, :out_len[b]]).ids) for b in range(len(group))]
    head.train()
    return rates(error_counts([r["text"] for r in rows], hyps))


def train_head(states: States, train: list[dict], holdout_speakers: set, steps: int, lr: float, batch: int,
               seed: int = 0, log=print) -> tuple[TeacherHead, dict]:
    torch.manual_seed(seed)
    tok = JamoTokenizer()
    rows = [r for r in train if r["audio"] in states]
    fit = [r for r in rows if r["speaker"] not in holdout_speakers]
    hold = [r for r in rows if r["speaker"] in holdout_speakers]
    if not fit or not hold:
        raise ValueError("--holdout-speakers must leave utterances on both sides of the train manifest")
    head = TeacherHead(TeacherHeadDims(d_in=states.array.shape[1], n_tokens=len(tok)))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    rng, step, best, best_state = random.Random(seed), 0, {"cer": float("inf")}, None
    while step < steps:
        for group in _batches(fit, batch, rng):
            x, lengths, targets, tgt_len = _collate(states, group, tok)
            lp, out_len = head(x, lengths)
            loss = F.ctc_loss(lp.transpose(0, 1), targets, out_len, tgt_len, zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            opt.step()
            step += 1
            if step % 100 == 0 or step == steps:
                held = head_cer(head, states, hold, tok)
                log(f"step {step}: loss {loss.item():.3f} held-out train speakers CER {held['cer']:.4f}")
                if held["cer"] < best["cer"]:
                    best = {"cer": held["cer"], "wer": held["wer"], "step": step}
                    best_state = {k: v.clone() for k, v in head.state_dict().items()}
            if step >= steps:
                break
    head.load_state_dict(best_state)
    return head, {"holdout": best, "fit_utterances": len(fit), "holdout_utterances": len(hold),
                  "holdout_speakers": sorted(holdout_speakers), "parameters": sum(p.numel() for p in head.parameters())}


# --- command line ------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("states")
    s.add_argument("--manifest", nargs="+", required=True)
    s.add_argument("--model", default=str(Path.home() / ".cache" / "korean-speech" / "whisper-base" / "model"))
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--out", required=True)
    h = sub.add_parser("head")
    h.add_argument("--states", required=True)
    h.add_argument("--train", required=True)
    h.add_argument("--holdout-speakers", default="", help="train speakers the kept step is chosen on "
                   "(default: two, one of each gender, from the train manifest)")
    h.add_argument("--eval", default=None, help="manifest scored at the end only (e.g. dev)")
    h.add_argument("--steps", type=int, default=3000)
    h.add_argument("--lr", type=float, default=3e-3)
    h.add_argument("--batch", type=int, default=16)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--out", required=True)
    q = sub.add_parser("posteriors")
    q.add_argument("--states", required=True)
    q.add_argument("--head", required=True)
    q.add_argument("--manifest", required=True)
    q.add_argument("--k", type=int, default=8)
    q.add_argument("--out", required=True)
    a = p.parse_args(argv)
    command = "python -m training.whisper_teacher " + " ".join(argv if argv is not None else sys.argv[1:])

    if a.cmd == "states":
        print(json.dumps(encode_states(a.manifest, a.model, Path(a.out), a.threads)))
    elif a.cmd == "head":
        states, train = States(a.states), read_manifest(a.train)
        holdout = set(a.holdout_speakers.split(",")) - {""} or default_holdout(train)
        head, report = train_head(states, train, holdout, a.steps, a.lr, a.batch, a.seed)
        if a.eval:
            rows = [r for r in read_manifest(a.eval) if r["audio"] in states]
            report["eval"] = {"manifest": a.eval, "utterances": len(rows), **head_cer(head, states, rows, JamoTokenizer())}
        report["command"] = command
        save_bundle(a.out, Bundle("whisper-ctc-head", "whisper-base-ctc-head", head.dims, tokenizer=JamoTokenizer(),
                                  provenance={"encoder": states.info["model"], "rate": STATE_RATE // 2}, metrics=report,
                                  state=head.state_dict()))
        print(json.dumps(report, ensure_ascii=False))
    else:
        states = States(a.states)
        head = load_bundle(a.head, "whisper-ctc-head").build_model()
        print(json.dumps(write_posteriors(head, states, read_manifest(a.manifest), a.k, Path(a.out), STATE_RATE // 2)))
    return 0


def default_holdout(train: list[dict]) -> set:
    """One speaker of each gender: the ones with the fewest utterances of at least 20 (small, but enough to pick a step)."""
    counts: dict[str, int] = {}
    gender = {}
    for r in train:
        counts[r["speaker"]] = counts.get(r["speaker"], 0) + 1
        gender[r["speaker"]] = r.get("gender")
    out = set()
    for g in ("female", "male"):
        cands = sorted((n, s) for s, n in counts.items() if gender[s] == g and n >= 20)
        if cands:
            out.add(cands[0][1])
    return out


if __name__ == "__main__":
    sys.exit(main())
