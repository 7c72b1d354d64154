"""Distillation from cached teacher posteriors: the one format (`write_posteriors` writes it,
`TeacherPosteriors` reads it for `training.train_ds2 --teacher`).

A folder holds `ids.npy` (frames, k) int16 and `logp.npy` (frames, k) float16, the teacher's top-k
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


class TeacherPosteriors:
    """The cached top-k posteriors, looked up by the training manifest's row index."""

    def __init__(self, folder, audio_paths: list[str]):
        folder = Path(folder)
        data = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        self.info = data["info"]
        self.ids = torch.from_numpy(np.load(folder / "ids.npy").astype(np.int64))
        self.logp = torch.from_numpy(np.load(folder / "logp.npy").astype(np.float32))
        rows = [data["index"].get(audio_key(p)) for p in audio_paths]
        missing = sum(r is None for r in rows)
        if missing:
            raise ValueError(f"{folder}: no teacher posteriors for {missing} of {len(rows)} training utterances "
                             f"(e.g. {next(p for p, r in zip(audio_paths, rows) if r is None)})")
        self.offset = torch.tensor([r[0] for r in rows])
        self.frames = torch.tensor([r[1] for r in rows])

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
