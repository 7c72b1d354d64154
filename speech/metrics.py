"""Error rates: the one place every trainer, evaluator and test scores text.

CER follows the study: characters after removing spaces and punctuation (`speech.text.text_for_cer`).
WER: words of the same text with punctuation as a word break (`speech.text.text_for_wer`). With
`numbers="spelled"` both sides first have their digits spelled out as read (`speech.text.spell_numbers`:
Whisper's 5월 and a reference's 오월 then agree); the default scores the text as written.

A rate is errors / reference length, with an empty reference counted as length 1 (`rate`), so a
corpus of empty references scores the inserted characters rather than dividing by zero. Edit
distance is rapidfuzz's Levenshtein (C++), on strings or on lists of words.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from rapidfuzz.distance import Levenshtein

from .text import spell_numbers, text_for_cer, text_for_wer

NUMBER_MODES = ("as-is", "spelled")


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1), on strings or lists."""
    return Levenshtein.distance(ref, hyp)


def edit_ops(ref: Sequence, hyp: Sequence) -> dict:
    """One minimal alignment's substitutions, insertions (in hyp only) and deletions (in ref only)."""
    ops = {"substitutions": 0, "insertions": 0, "deletions": 0}
    names = {"replace": "substitutions", "insert": "insertions", "delete": "deletions"}
    for op in Levenshtein.editops(ref, hyp):
        ops[names[op.tag]] += 1
    return ops


def rate(errors: int, n: int) -> float:
    """errors / n, an empty reference counting as 1 (the one place this is written)."""
    return errors / max(1, n)


def error_counts(refs: Iterable[str], hyps: Iterable[str], numbers: str = "as-is") -> dict:
    """Summed character and word edits and reference lengths over a corpus."""
    if numbers not in NUMBER_MODES:
        raise ValueError(f"numbers must be one of {NUMBER_MODES}, got {numbers!r}")
    ce = cn = we = wn = 0
    for r, h in zip(refs, hyps, strict=True):
        if numbers == "spelled":
            r, h = spell_numbers(r), spell_numbers(h)
        rc, hc = text_for_cer(r), text_for_cer(h)
        ce += edit_distance(rc, hc)
        cn += len(rc)
        rw, hw = text_for_wer(r).split(), text_for_wer(h).split()
        we += edit_distance(rw, hw)
        wn += len(rw)
    return {"char_errors": ce, "chars": cn, "word_errors": we, "words": wn}


def rates(counts: dict) -> dict:
    """{"cer", "wer"} from `error_counts`' sums (counts pooled over sets add up before this)."""
    return {"cer": rate(counts["char_errors"], counts["chars"]), "wer": rate(counts["word_errors"], counts["words"])}


def cer_wer(refs: Iterable[str], hyps: Iterable[str], numbers: str = "as-is") -> tuple[float, float]:
    r = rates(error_counts(refs, hyps, numbers))
    return r["cer"], r["wer"]
