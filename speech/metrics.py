"""Error rates. CER follows the study: characters after removing spaces and punctuation."""
from __future__ import annotations

from typing import Iterable, Sequence

from .text import text_for_cer


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_counts(refs: Iterable[str], hyps: Iterable[str]) -> dict:
    """Summed character and word edits and reference lengths over a corpus."""
    ce = cn = we = wn = 0
    for r, h in zip(refs, hyps):
        rc, hc = text_for_cer(r), text_for_cer(h)
        ce += edit_distance(rc, hc)
        cn += len(rc)
        rw, hw = r.split(), h.split()
        we += edit_distance(rw, hw)
        wn += len(rw)
    return {"char_errors": ce, "chars": cn, "word_errors": we, "words": wn}


def cer_wer(refs: Iterable[str], hyps: Iterable[str]) -> tuple[float, float]:
    c = error_counts(refs, hyps)
    return c["char_errors"] / max(1, c["chars"]), c["word_errors"] / max(1, c["words"])
