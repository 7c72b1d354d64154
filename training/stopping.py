"""When a training run stops, and the random state a resume needs: one place for each.

`StopCondition` is the only thing `training.train_ds2` asks whether to stop. It knows the four
limits (steps, epochs, a training-time budget, early stop after `patience` dev evaluations without
a better dev CER) and the state that must survive a resume (the evaluations since the best). The
training-time clock itself travels in the checkpoint as `trained_seconds`, so a resumed run with
--max-minutes continues the budget, and the LR schedule that spans it, where they were.

`rng_state` / `set_rng_state` capture and restore every generator the training process draws
from: torch (CPU), CUDA (every device, when present), numpy and Python's `random`. Data
randomness does not depend on them (training.data seeds every draw by its place in the plan).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass
class StopCondition:
    max_steps: int = 0              # 0 = no step cap
    epochs: int = 0                 # 0 = no epoch cap
    budget_seconds: float = 0.0     # training time (over resumes); 0 = none
    patience: int = 0               # dev evaluations without a better dev CER before stopping; 0 = never
    stale: int = 0                  # dev evaluations since the best one (state)
    best: float = float("inf")      # the best dev CER seen (state)

    def schedule_steps(self, steps_per_epoch: int) -> int:
        """Steps the LR schedule spans: the epochs, or the step cap if it comes first."""
        total = self.epochs * steps_per_epoch if self.epochs else self.max_steps
        return min(total, self.max_steps) if self.max_steps else total

    def time_fraction(self, seconds: float) -> float:
        """Share of the time budget spent (0 without a budget)."""
        return seconds / self.budget_seconds if self.budget_seconds else 0.0

    def between_steps(self, step: int, seconds: float) -> Optional[str]:
        """Why to stop before the next step (the step cap or the budget), or None."""
        if self.max_steps and step >= self.max_steps:
            return f"max_steps {self.max_steps} reached"
        if self.budget_seconds and seconds >= self.budget_seconds:
            return f"time budget of {self.budget_seconds / 60:g} min spent"
        return None

    def after_epoch(self, epochs_done: int, step: int, seconds: float) -> Optional[str]:
        """Why to stop after an epoch (any limit, early stop included), or None."""
        reason = self.between_steps(step, seconds)
        if reason:
            return reason
        if self.epochs and epochs_done >= self.epochs:
            return f"{self.epochs} epochs done"
        if self.patience and self.stale >= self.patience:
            return f"no better dev CER in {self.patience} evaluations (early stop)"
        return None

    def evaluated(self, dev_cer: float) -> bool:
        """Record a dev evaluation; True when it is the best so far."""
        if dev_cer < self.best:
            self.best, self.stale = dev_cer, 0
            return True
        self.stale += 1
        return False

    def state_dict(self) -> dict:
        return {"stale": self.stale, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.stale, self.best = int(state["stale"]), float(state["best"])


def rng_state() -> dict:
    """Every generator of this process, in a form `torch.load(weights_only=True)` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`; a checkpoint from before numpy/Python were saved restores torch only."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][:torch.cuda.device_count()])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
