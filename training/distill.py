"""Distillation from a cached teacher, two kinds (`load_teacher` tells them apart for
`training.train_ds2 --teacher`): the frame posteriors of a CTC head on Whisper's encoder
(`write_posteriors` writes them, `TeacherPosteriors` reads them), or the encoder states themselves
(`TeacherStates`, with `StatesStudent` projecting the student's top layer onto them).

A posteriors folder holds `ids.npy` (frames, k) int16 and `logp.npy` (frames, k) float16, the teacher's top-k
tokens and log-probabilities per frame, and `index.json` (audio path -> first frame, frame count),
so any manifest of the same utterances finds its rows. Paths are kept relative to the working
directory (the repository root, where the recipes run: `audio_key`), so a cache made here is found
on another machine with the same layout.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def audio_key(path: str) -> str:
    """How the caches name an utterance: its audio path relative to the working directory."""
    return os.path.relpath(os.path.abspath(path))


def write_posteriors(head, states, rows: list[dict], k: int, out: Path, rate: int = 25) -> dict:
    """The top-k of `head`'s log-probabilities over each row's `states` (training.whisper_teacher.States)."""
    head.eval()
    ids, logp, index, offset = [], [], {}, 0
    with torch.no_grad():
        for r in rows:
            key = audio_key(r["audio"])
            if r["audio"] not in states or key in index:
                continue
            x = torch.from_numpy(states.get(r["audio"]))[None]
            lp, _ = head(x, torch.tensor([x.shape[1]]))
            top = lp[0].topk(k, dim=-1)
            ids.append(top.indices.to(torch.int16).numpy())
            logp.append(top.values.to(torch.float16).numpy())
            index[key] = [offset, lp.shape[1]]
            offset += lp.shape[1]
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "ids.npy", np.concatenate(ids))
    np.save(out / "logp.npy", np.concatenate(logp))
    info = {"k": k, "frames": offset, "utterances": len(index), "rate": rate}
    (out / "index.json").write_text(json.dumps({"info": info, "index": index}, ensure_ascii=False) + "\n", encoding="utf-8")
    return info


def _read_index(folder: Path, audio_paths: list[str]) -> tuple[dict, list]:
    """A cache's `info` and, per training utterance, its [first frame, frame count]; every one must be there."""
    data = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    rows = [data["index"].get(audio_key(p)) for p in audio_paths]
    missing = sum(r is None for r in rows)
    if missing:
        raise ValueError(f"{folder}: no teacher output for {missing} of {len(rows)} training utterances "
                         f"(e.g. {next(p for p, r in zip(audio_paths, rows) if r is None)})")
    return data["info"], rows


class TeacherPosteriors:
    """The cached top-k posteriors, looked up by the training manifest's row index."""

    needs_hidden = False

    def __init__(self, folder, audio_paths: list[str]):
        folder = Path(folder)
        self.info, rows = _read_index(folder, audio_paths)
        self.ids = torch.from_numpy(np.load(folder / "ids.npy").astype(np.int64))
        self.logp = torch.from_numpy(np.load(folder / "logp.npy").astype(np.float32))
        self.offset = torch.tensor([r[0] for r in rows])
        self.frames = torch.tensor([r[1] for r in rows])

    def describe(self) -> str:
        return f"top-{self.info['k']} posteriors, {self.info['utterances']} utterances"

    def loss(self, log_probs: torch.Tensor, out_len: torch.Tensor, index: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
        """Cross-entropy of the student's frame distributions against the teacher's top-k (renormalised,
        sharpened or softened by `temperature`), summed over frames, averaged over utterances (the CTC
        loss's scale). Student frame t hears the teacher frame at the same relative time."""
        total = log_probs.new_zeros(())
        for b, i in enumerate(index.tolist()):
            t_s, t_t = int(out_len[b]), int(self.frames[i])
            if t_s == 0:
                continue
            src = self.offset[i] + torch.div(torch.arange(t_s) * t_t, t_s, rounding_mode="floor")
            p = (self.logp[src] / temperature).softmax(-1).to(log_probs.device)          # (t_s, k)
            ids = self.ids[src].to(log_probs.device)
            total = total - (p * log_probs[b, :t_s].float().gather(1, ids)).sum()
        return total / max(1, len(index))


class TeacherStates:
    """The teacher's encoder states themselves (training.whisper_teacher states: `states.npy`
    (frames, D) float16 at 50 frames/s and `index.json`), the other distillation target: the
    student's top-layer states, through a linear projection trained with it (`StatesStudent`),
    are pulled towards them."""

    needs_hidden = True

    def __init__(self, folder, audio_paths: list[str]):
        folder = Path(folder)
        self.info, rows = _read_index(folder, audio_paths)
        self.array = np.load(folder / "states.npy", mmap_mode="r")
        self.dim = int(self.array.shape[1])
        self.offset = [r[0] for r in rows]
        self.frames = [r[1] for r in rows]

    def describe(self) -> str:
        return f"Whisper encoder states ({self.dim}-d, {self.info['utterances']} utterances)"

    def loss(self, hidden: torch.Tensor, out_len: torch.Tensor, index: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
        """Cosine distance between the projected student states `hidden` (B, T', D) and the teacher's
        state at the same relative time, summed over frames, averaged over utterances (the CTC loss's
        scale). `temperature` has no meaning here."""
        total = hidden.new_zeros((), dtype=torch.float32)
        for b, i in enumerate(index.tolist()):
            t_s, t_t = int(out_len[b]), int(self.frames[i])
            if t_s == 0:
                continue
            src = self.offset[i] + (np.arange(t_s) * t_t) // t_s
            target = torch.from_numpy(np.asarray(self.array[src], dtype=np.float32)).to(hidden.device)
            total = total + (1 - F.cosine_similarity(hidden[b, :t_s].float(), target, dim=-1)).sum()
        return total / max(1, len(index))


class StatesStudent(nn.Module):
    """The student with the projection of its top-layer states onto the teacher's, trained together;
    only the student is released. Returns (log_probs, lengths, projected states)."""

    def __init__(self, model: nn.Module, teacher_dim: int):
        super().__init__()
        self.model = model
        self.proj = nn.Linear(model.dims.rnn_hidden, teacher_dim)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        lp, out_len, hidden = self.model(features, lengths, return_hidden=True)
        return lp, out_len, self.proj(hidden.float())


def load_teacher(folder, audio_paths: list[str]):
    """The teacher a folder holds: top-k posteriors (`ids.npy`) or encoder states (`states.npy`)."""
    folder = Path(folder)
    if (folder / "ids.npy").exists():
        return TeacherPosteriors(folder, audio_paths)
    if (folder / "states.npy").exists():
        return TeacherStates(folder, audio_paths)
    raise ValueError(f"{folder}: neither teacher posteriors (ids.npy) nor encoder states (states.npy)")
