"""Text as the LMs see it: a normalised line cut into LM words. `build_lm` writes LMs from these
words, and anything that scores text with those LMs (`whisper_nbest`) cuts its text the same way."""
from __future__ import annotations

from speech.beam import LM_SPACE
from speech.text import decompose, normalize_transcript


def to_lm_words(text: str, unit: str) -> str:
    """Normalised text -> space-separated LM words, `|` between the original words."""
    words = normalize_transcript(text).split(" ")
    if unit == "jamo":
        units = [" ".join(decompose(w)) for w in words if w]
    else:
        units = [" ".join(w) for w in words if w]
    return f" {LM_SPACE} ".join(units)


def surface_pieces(text: str, starts) -> list[str]:
    """`text` (normalised: syllables and single spaces) cut at each word's edges and at every given
    morpheme start inside a word; the pieces of a word concatenate to it."""
    pieces, pos = [], 0
    cuts = sorted(set(starts))
    for word in text.split(" "):
        end = pos + len(word)
        points = [pos] + [c for c in cuts if pos < c < end] + [end]
        pieces += [text[a:b] for a, b in zip(points, points[1:])]
        pos = end + 1
    return pieces


def word_lines(lines, words: str, workers: int = 1):
    """LM words of each normalised line: Kiwi surface morphemes or space-separated words."""
    texts = (normalize_transcript(line) for line in lines)
    if words == "eojeol":
        for text in texts:
            yield text.split(" ") if text else []
        return
    try:
        from kiwipiepy import Kiwi
    except ImportError as e:
        raise SystemExit("--words morpheme needs kiwipiepy (pip install kiwipiepy; in the train extra)") from e
    kiwi = Kiwi(num_workers=workers)
    batch = []

    def flush():
        for text, tokens in zip(batch, kiwi.tokenize(batch)):
            yield surface_pieces(text, [t.start for t in tokens]) if text else []
        batch.clear()

    for text in texts:
        batch.append(text)      # empty ones too: the output keeps the input's order
        if len(batch) >= 4096:
            yield from flush()
    yield from flush()
