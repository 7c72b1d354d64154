"""CTC beam search with an optional KenLM n-gram language model over the acoustic model's tokens.

The search is flashlight-text's lexicon-free decoder, reached through torchaudio's
`ctc_decoder`. There is no lexicon: the LM is a token n-gram (every token a KenLM "word", the
word break written `|`), built by `training/build_lm.py` from the same unit (jamo or syllable)
as the tokenizer. With no LM the search keeps, at every frame, the best path into each prefix
(max, not log-sum-exp), so on a peaked distribution it returns exactly the greedy result.

Scores: score(path) = acoustic log-prob (natural log) + lm_weight * LM log10-prob (KenLM's unit)
+ word_score at every word break. Lexicon-free flashlight has no per-word score of its own, so
`word_score` is passed as its `sil_score`, the bonus for the word-break token.

A word LM (`training/build_lm.py --words morpheme|eojeol`: Kiwi morphemes or whole words, with
`lexicon.txt` beside it, named in `lm.json`) switches to flashlight's lexicon decoder: only the
lexicon's words are written, each finished word gets its LM score and `word_score`, and the word
break may stand between any two words. The transcript is still read from the token path.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from speech.decoding import Hypothesis, collapse
from speech.text import BLANK, Tokenizer

# The token names the decoder and the LM see; ids stay the tokenizer's.
LM_BLANK = "<blank>"
LM_SPACE = "|"
BREAK = 1          # the word break's id, after blank (speech.text tokenizers)
# The KenLM inside the flashlight-text 0.0.7 wheel is compiled with KENLM_MAX_ORDER=6.
MAX_LM_ORDER = 6
LM_INFO_NAME = "lm.json"


def lm_token_names(tokenizer: Tokenizer) -> list[str]:
    """Token names by id: blank and space renamed, the rest as in the tokenizer."""
    names = [LM_BLANK, LM_SPACE] + list(tokenizer.tokens[2:])
    for name in names[2:]:
        if name in (LM_BLANK, LM_SPACE) or not name or any(ch.isspace() for ch in name):
            raise ValueError(f"token {name!r} cannot be an LM word (empty, whitespace, {LM_BLANK!r} or {LM_SPACE!r})")
    return names


def read_lm_info(lm_path) -> Optional[dict]:
    """The `lm.json` written beside an LM by `training/build_lm.py`, or None if there is none."""
    path = Path(lm_path).with_name(LM_INFO_NAME)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _load_ctc_decoder():
    try:
        from torchaudio.models.decoder import ctc_decoder
    except ImportError as e:
        raise ImportError("beam search needs torchaudio's ctc_decoder and flashlight-text (pip install flashlight-text)") from e
    return ctc_decoder


class BeamSearchDecoder:
    """Same interface as `speech.decoding.GreedyDecoder`: decode((T, V)) -> Hypothesis."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        lm_path=None,
        beam_size: int = 32,
        lm_weight: float = 0.5,
        word_score: float = 0.0,
        beam_threshold: float = 25.0,
        beam_size_token: Optional[int] = 32,
    ):
        # beam_size_token: tokens tried per frame, the most likely first (None = all). A CTC
        # output is peaked; trying all ~1000-2000 syllables makes decoding ~30x slower for nothing.
        if tokenizer.tokens[0] != BLANK:
            raise ValueError(f"tokenizer must have {BLANK!r} at index 0, got {tokenizer.tokens[0]!r}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.tokenizer = tokenizer
        self.lm_path = None if lm_path is None else str(lm_path)
        self.beam_size = beam_size
        self.lm_weight = lm_weight
        self.word_score = word_score
        self.beam_threshold = beam_threshold
        self.name = "beam" if lm_path is None else "beam+lm"
        self.lm_info = None
        self.lexicon = False
        names = lm_token_names(tokenizer)
        ctc_decoder = _load_ctc_decoder()
        options = dict(
            lexicon=None,
            tokens=names,
            beam_size=beam_size,
            beam_size_token=None if beam_size_token is None else min(beam_size_token, len(tokenizer)),
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            sil_score=word_score,
            log_add=False,
            blank_token=LM_BLANK,
            sil_token=LM_SPACE,
        )
        if self.lm_path is None:
            self._decoder = ctc_decoder(lm=None, **options)
            return

        if not Path(self.lm_path).is_file():
            raise FileNotFoundError(f"language model not found: {self.lm_path}")
        self.lm_info = read_lm_info(self.lm_path)
        if self.lm_info is not None:
            unit = self.lm_info.get("unit")
            if unit != tokenizer.unit:
                raise ValueError(
                    f"{self.lm_path} is a {unit!r}-token LM but the tokenizer's unit is {tokenizer.unit!r}; "
                    f"build an LM with training/build_lm.py for this tokenizer")
            if self.lm_info.get("order", 0) > MAX_LM_ORDER:
                raise ValueError(f"{self.lm_path} has order {self.lm_info['order']}; the decoder's KenLM supports up to {MAX_LM_ORDER}")
        lexicon = (self.lm_info or {}).get("lexicon")
        if lexicon:
            # A word LM (Kiwi morphemes or whole words): the search follows the lexicon's spellings,
            # scores each finished word with the LM and word_score, and allows the word break
            # between any two words (flashlight's silence, at the lexicon's root).
            path = Path(self.lm_path).with_name(lexicon["file"])
            if not path.is_file():
                raise FileNotFoundError(f"{self.lm_path}'s lexicon not found: {path}")
            options.update(lexicon=str(path), word_score=word_score, sil_score=0.0)
            self.lexicon = True
            try:
                self._decoder = ctc_decoder(lm=self.lm_path, **options)
            except RuntimeError as e:
                raise ValueError(f"could not load the language model {self.lm_path}: {e}") from e
            return
        # ctc_decoder maps token ids to LM words through a dictionary file; without one it builds
        # the map from an unordered dict and LM scores would go to the wrong tokens.
        fd, dict_path = tempfile.mkstemp(suffix=".txt", prefix="lm_dict_")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("\n".join(names) + "\n")
            self._decoder = ctc_decoder(lm=self.lm_path, lm_dict=dict_path, **options)
        except RuntimeError as e:
            raise ValueError(f"could not load the language model {self.lm_path}: {e}") from e
        finally:
            os.unlink(dict_path)

    @staticmethod
    def _repeats_not_breaks(path: list[int], words: list[int], emissions: torch.Tensor) -> list[int]:
        """A word of the lexicon ends on its first frame of its last token, at the search's root, where
        flashlight reads any repeat of a token as silence (its lexicons end every word with the word
        break; ours cannot, since morphemes of one word have none between them). A word-break frame
        right after a word's end whose emission is that last token is its repeat: put it back, so the
        collapse joins it and no space appears inside a word."""
        out, repeat = list(path), False      # repeat: out[t - 1] is a restored repeat (a run continues)
        for t in range(1, len(out)):
            last = out[t - 1]
            ended = words[t - 1] >= 0 or repeat
            repeat = out[t] == BREAK and last > BREAK and ended and int(emissions[t].argmax()) == last
            if repeat:
                out[t] = last
        return out

    def __repr__(self) -> str:
        lm = f", lm={self.lm_path!r}, lm_weight={self.lm_weight}, word_score={self.word_score}" if self.lm_path else ""
        return f"BeamSearchDecoder(beam_size={self.beam_size}{lm})"

    def decode(self, log_probs: torch.Tensor) -> Hypothesis:
        """log_probs: (T, V) log-probabilities of one utterance (any device; decoded on CPU)."""
        if log_probs.dim() != 2:
            raise ValueError(f"decode expects (T, V) log-probabilities, got shape {tuple(log_probs.shape)}")
        T, V = log_probs.shape
        if V != len(self.tokenizer):
            raise ValueError(f"log_probs have {V} classes but the tokenizer has {len(self.tokenizer)} tokens")
        if T == 0:
            return Hypothesis(ids=[], frames=[], score=0.0)
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        results = self._decoder.decoder.decode(emissions.data_ptr(), T, V)
        if not results:
            return Hypothesis(ids=[], frames=[], score=float("-inf"))
        best = results[0]
        # best.tokens is the frame-level path with a start and an end word-break added by
        # flashlight: T + 2 entries. Collapse the T real frames exactly as greedy does.
        path = list(best.tokens)[1:T + 1]
        assert len(path) == T, (len(best.tokens), T)
        if self.lexicon:
            path = self._repeats_not_breaks(path, list(best.words)[1:T + 1], emissions)
        ids, frames = collapse(path, blank=0)
        return Hypothesis(ids=ids, frames=frames, score=float(best.score),
                          extra={"acoustic_score": float(best.emittingModelScore), "lm_score": float(best.lmScore)})
