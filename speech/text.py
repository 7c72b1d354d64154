"""Korean text: transcript normalisation, CER text and the CTC tokenizers.

Normalisation policy (``normalize_transcript``), applied in this order:

1. Unicode NFC (decomposed jamo from macOS file names or NFD text become syllables).
2. Dual transcriptions ``(spelling)/(pronunciation)`` become the pronunciation, the second
   form: ``(3G)/(쓰리 쥐)`` -> ``쓰리 쥐``, ``(70%)/(칠십 퍼센트)`` -> ``칠십 퍼센트``. KsponSpeech
   uses them; some AI-Hub sets copy the convention, so ``aihub`` resolves them too.
3. ``kspon`` only, KsponSpeech transcription rules:
   noise tags ``b/`` (breath) ``l/`` (laughter) ``o/`` (other speaker) ``n/`` (noise)
   ``u/`` (unintelligible) are removed; the filler mark ``/`` is removed but the filler word is
   kept (``아/`` -> ``아``, it is spoken); ``+`` (repetition/disfluency) and ``*`` (unclear)
   markers are removed, keeping the word they mark.
4. ``aihub`` only, AI-Hub dialogue-label tags:
   ``(XX:content)`` with an upper-case tag (``NO`` noise, ``SN``/``SP`` speaker or special noise,
   ``FP`` filled pause, ...) is removed, except ``FP`` whose content is the filler that was spoken
   and is kept, as for KsponSpeech fillers; event tags ``{laughing}`` and ``[음악]`` are removed;
   ``&name&`` personal-information masks are removed (the preparation script skips such
   utterances by default because the audio may still contain the word).
5. Everything that is not a Hangul syllable (U+AC00-U+D7A3) or whitespace is dropped:
   sentence punctuation ``.,?!;:·…~/|`` and dashes become a word break, quotes, brackets and any
   other character vanish. Whitespace is collapsed to single spaces and stripped.

The result is the training target: NFC Hangul syllables separated by single spaces. Step 5
would silently delete words written with digits or Latin letters (``3G``, ``KTX``, ``10시``),
so preparation scripts call ``unspelled_chars`` first and skip such utterances (and count them).

Scoring text (one normalisation for training, evaluation and fine-tuning; speech.metrics):
CER (``text_for_cer``) is computed on NFC text with whitespace and punctuation removed, as in
the study this project follows; WER (``text_for_wer``) on the same text with the spaces kept
(punctuation becomes a word break). Digits and Latin letters are kept there, they are errors.
Numbers: references spell them as read (``오월``) where Whisper writes digits (``5월``), so the
evaluation reports CER twice: as-is, and with numbers spelled out on both sides
(``spell_numbers``: the Sino-Korean reading, ``5월`` -> ``오월``, ``2024년`` -> ``이천이십사년``).

Tokenizers: CTC blank ``<blank>`` is always index 0 and the word separator ``" "`` index 1.

* ``SyllableTokenizer``: one token per Hangul syllable, vocabulary built from training text
  (``build_syllable_tokenizer``), sorted by code point so it is deterministic.
* ``JamoTokenizer``: a fixed inventory of 69 tokens: blank, space, the 19 initial consonants
  (U+1100-U+1112), 21 vowels (U+1161-U+1175) and 27 final consonants (U+11A8-U+11C2).
  Initial and final consonants are different tokens, so recomposition is exact. ``decode``
  shows complete syllables only (``compose_complete``): a model's stray jamo are completed or
  dropped by a fixed rule, never printed as ``ㄱ`` or ``ㅏ`` (what a person reads, and what CER
  scores): a vowel with no initial takes the silent initial ㅇ (``ㅣ`` -> ``이``); an initial with
  no vowel becomes the final of the open syllable just before it in the same word (``가`` + ``ㄱ``
  -> ``각``), or is dropped; a final with no open syllable before it is dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Iterable

BLANK = "<blank>"
SPACE = " "

SOURCES = ("plain", "kspon", "aihub")

# Hangul syllable arithmetic (Unicode chapter 3.12).
_S_BASE, _S_COUNT = 0xAC00, 11172
_L_BASE, _L_COUNT = 0x1100, 19
_V_BASE, _V_COUNT = 0x1161, 21
_T_BASE, _T_COUNT = 0x11A7, 28  # index 0 = no final; finals are U+11A8..U+11C2
_N_COUNT = _V_COUNT * _T_COUNT

CHOSEONG = [chr(_L_BASE + i) for i in range(_L_COUNT)]
JUNGSEONG = [chr(_V_BASE + i) for i in range(_V_COUNT)]
JONGSEONG = [chr(_T_BASE + i) for i in range(1, _T_COUNT)]

# Compatibility jamo (the forms people type) for printing tokens and stray jamo.
_COMPAT_L = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_COMPAT_V = "".join(chr(0x314F + i) for i in range(_V_COUNT))  # ㅏ..ㅣ
_COMPAT_T = "ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"
_TO_COMPAT = {
    **dict(zip(CHOSEONG, _COMPAT_L)),
    **dict(zip(JUNGSEONG, _COMPAT_V)),
    **dict(zip(JONGSEONG, _COMPAT_T)),
}
assert len(_COMPAT_L) == _L_COUNT and len(_COMPAT_T) == _T_COUNT - 1


def is_hangul_syllable(ch: str) -> bool:
    return _S_BASE <= ord(ch) < _S_BASE + _S_COUNT


def _is_hangul_jamo(ch: str) -> bool:
    o = ord(ch)
    return 0x1100 <= o <= 0x11FF or 0x3131 <= o <= 0x318E or 0xA960 <= o <= 0xA97F or 0xD7B0 <= o <= 0xD7FF


# --- normalisation -------------------------------------------------------------------------

_DUAL = re.compile(r"\(([^()]*)\)\s*/\s*\(([^()]*)\)")
_KSPON_NOISE = re.compile(r"(?<![A-Za-z0-9])[blnou]/")
_AIHUB_TAG = re.compile(r"\(([A-Z]{2,3})\s*:([^()]*)\)")
_AIHUB_EVENT = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_AIHUB_MASK = re.compile(r"&[^&\s]*&")
_BREAK = set(".,?!;:·…~/|-‐–—")
_SPACES = re.compile(r"\s+")
# Symbols that are read aloud; a transcript that keeps them (not spelled in Hangul) would lose
# the spoken word in the target.
_READ_SYMBOLS = set("%‰#@&+=$€£¥₩°℃℉㎏㎎㎞㎝㎜㎖㎗ℓ㎡㎥")


def _resolve_tags(text: str, source: str) -> str:
    """Steps 1-4 of the policy: NFC, dual transcriptions and corpus tags."""
    if source not in SOURCES:
        raise ValueError(f"unknown transcript source {source!r}; valid sources = {list(SOURCES)}")
    text = unicodedata.normalize("NFC", text)
    if source in ("kspon", "aihub"):
        text = _DUAL.sub(lambda m: m.group(2), text)
    if source == "kspon":
        text = _KSPON_NOISE.sub(" ", text)
        text = text.replace("/", "").replace("+", "").replace("*", "")
    elif source == "aihub":
        text = _AIHUB_TAG.sub(lambda m: f" {m.group(2)} " if m.group(1) == "FP" else " ", text)
        text = _AIHUB_EVENT.sub(" ", text)
        text = _AIHUB_MASK.sub(" ", text)
    return text


def normalize_transcript(text: str, source: str = "plain") -> str:
    """The training target for ``text``: NFC Hangul syllables and single spaces.

    ``source`` is ``"plain"``, ``"kspon"`` or ``"aihub"`` and selects the tag rules in the
    module docstring.
    """
    text = _resolve_tags(text, source)
    out = []
    for ch in text:
        if is_hangul_syllable(ch):
            out.append(ch)
        elif ch.isspace() or ch in _BREAK:
            out.append(" ")
    return _SPACES.sub(" ", "".join(out)).strip()


def unspelled_chars(text: str, source: str = "plain") -> str:
    """Characters that would be spoken but are not written in Hangul, after tag resolution.

    Digits, Latin (and other non-Hangul) letters, Hanja and read-aloud symbols such as ``%``.
    ``normalize_transcript`` would delete them and with them a spoken word, so a non-empty
    result means: skip this utterance. Returns the offending characters in order of appearance,
    each once.
    """
    found = []
    for ch in _resolve_tags(text, source):
        if is_hangul_syllable(ch) or _is_hangul_jamo(ch):
            continue
        if ch.isalnum() or ch in _READ_SYMBOLS or unicodedata.category(ch) == "Sc":
            if ch not in found:
                found.append(ch)
    return "".join(found)


def masked_spans(text: str) -> list[str]:
    """AI-Hub personal-information masks (``&name&``) in ``text``."""
    return _AIHUB_MASK.findall(unicodedata.normalize("NFC", text))


def text_for_cer(text: str) -> str:
    """NFC text with whitespace and punctuation removed: the string CER is computed on."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def text_for_wer(text: str) -> str:
    """NFC text with punctuation turned into word breaks and single spaces: WER splits it."""
    text = unicodedata.normalize("NFC", text)
    return " ".join("".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text).split())


# --- numbers as read -----------------------------------------------------------------------

_SINO_DIGITS = "영일이삼사오육칠팔구"
_SMALL_UNITS = ("", "십", "백", "천")
_LARGE_UNITS = ("", "만", "억", "조", "경")
_NUMBER = re.compile(r"[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?")
# Month names that are not the plain reading (6 -> 육월 is written 유월, 10 -> 십월 is 시월).
_MONTHS = {6: "유", 10: "시"}


def sino_korean(n: int) -> str:
    """The Sino-Korean reading of a non-negative integer: 0 -> 영, 10 -> 십, 15 -> 십오,
    110 -> 백십, 2024 -> 이천이십사, 10000 -> 만, 12345 -> 만이천삼백사십오, 100000000 -> 일억.
    일 is dropped before 십, 백 and 천, and before 만 when it stands alone (as it is said)."""
    if n < 0:
        raise ValueError(f"sino_korean takes a non-negative integer, got {n}")
    if n == 0:
        return _SINO_DIGITS[0]
    out, k = "", 0
    while n:
        n, group = divmod(n, 10000)
        if group:
            if k >= len(_LARGE_UNITS):
                raise ValueError("number too large to read")
            s = ""
            for pos in (3, 2, 1, 0):
                d = group // 10 ** pos % 10
                if d:
                    s += ("" if d == 1 and pos else _SINO_DIGITS[d]) + _SMALL_UNITS[pos]
            if k == 1 and group == 1:
                s = ""
            out = s + _LARGE_UNITS[k] + out
        k += 1
    return out


def spell_numbers(text: str) -> str:
    """Digits in ``text`` as they are read (Sino-Korean): ``5월`` -> ``오월``, ``1,000원`` -> ``천원``,
    ``3.5`` -> ``삼점오``, ``6월``/``10월`` -> ``유월``/``시월``. A number with a leading zero
    (``010``, a phone number) is read digit by digit. Native-Korean readings (``3개`` -> ``세 개``)
    are out of reach of a rule; they stay errors in both scores."""
    def read(m: re.Match) -> str:
        whole, _, frac = m.group(0).replace(",", "").partition(".")
        if len(whole) > 1 and whole[0] == "0":
            s = "".join(_SINO_DIGITS[int(d)] for d in whole)
        elif m.end() < len(m.string) and m.string[m.end()] == "월" and int(whole) in _MONTHS:
            s = _MONTHS[int(whole)]
        else:
            s = sino_korean(int(whole))
        return s + ("점" + "".join(_SINO_DIGITS[int(d)] for d in frac) if frac else "")

    return _NUMBER.sub(read, unicodedata.normalize("NFC", text))


# --- jamo ----------------------------------------------------------------------------------

def decompose(text: str) -> str:
    """Hangul syllables -> conjoining jamo (initial, vowel, optional final); other text unchanged."""
    out = []
    for ch in text:
        s = ord(ch) - _S_BASE
        if 0 <= s < _S_COUNT:
            out.append(chr(_L_BASE + s // _N_COUNT))
            out.append(chr(_V_BASE + (s % _N_COUNT) // _T_COUNT))
            if s % _T_COUNT:
                out.append(chr(_T_BASE + s % _T_COUNT))
        else:
            out.append(ch)
    return "".join(out)


def compose(jamo: str) -> str:
    """Conjoining jamo -> syllables. Exact inverse of ``decompose``.

    A jamo that cannot join a syllable (vowel without initial, initial without vowel, final
    without a syllable before it) becomes its compatibility jamo.
    """
    out: list[str] = []
    i, n = 0, len(jamo)
    while i < n:
        ch = jamo[i]
        l = ord(ch) - _L_BASE
        if 0 <= l < _L_COUNT and i + 1 < n and 0 <= ord(jamo[i + 1]) - _V_BASE < _V_COUNT:
            v = ord(jamo[i + 1]) - _V_BASE
            t = 0
            i += 2
            if i < n and 1 <= ord(jamo[i]) - _T_BASE < _T_COUNT:
                t = ord(jamo[i]) - _T_BASE
                i += 1
            out.append(chr(_S_BASE + (l * _V_COUNT + v) * _T_COUNT + t))
        else:
            out.append(_TO_COMPAT.get(ch, ch))
            i += 1
    return "".join(out)


# Initial consonant -> the same consonant as a final (ㄸ ㅃ ㅉ have no final form).
_INITIAL_TO_FINAL = {l: t for l in CHOSEONG for t in JONGSEONG if _TO_COMPAT[l] == _TO_COMPAT[t]}
_SILENT_INITIAL = "\u110b"  # ㅇ


def compose_complete(jamo: str) -> str:
    """Conjoining jamo -> complete syllables only; the rule for stray jamo:

    1. initial + vowel (+ final) is a syllable, as in ``compose``;
    2. a vowel with no initial takes the silent initial ㅇ: ``ㅣ`` -> ``이``, ``ㅐ`` + final ㅇ -> ``앵``;
    3. an initial with no vowel becomes the final of the syllable just before it when that syllable
       is open (no final) and the consonant has a final form: ``가`` + ``ㄱ`` -> ``각``; else it is dropped;
    4. a final with no open syllable just before it is dropped.

    Other characters (spaces, syllables, anything else) pass unchanged and end rule 3's "just before".
    """
    out: list[str] = []
    open_syllable = False  # out[-1] is a syllable without a final, built here
    i, n = 0, len(jamo)
    while i < n:
        ch = jamo[i]
        is_l = 0 <= ord(ch) - _L_BASE < _L_COUNT
        is_v = 0 <= ord(ch) - _V_BASE < _V_COUNT
        is_t = 1 <= ord(ch) - _T_BASE < _T_COUNT
        if is_v or (is_l and i + 1 < n and 0 <= ord(jamo[i + 1]) - _V_BASE < _V_COUNT):
            l = ord(ch) - _L_BASE if is_l else ord(_SILENT_INITIAL) - _L_BASE
            i += 1 if is_v else 2
            v = ord(jamo[i - 1]) - _V_BASE
            t = 0
            if i < n and 1 <= ord(jamo[i]) - _T_BASE < _T_COUNT:
                t = ord(jamo[i]) - _T_BASE
                i += 1
            out.append(chr(_S_BASE + (l * _V_COUNT + v) * _T_COUNT + t))
            open_syllable = t == 0
            continue
        if is_l or is_t:
            final = _INITIAL_TO_FINAL.get(ch) if is_l else ch
            if open_syllable and final is not None:
                out[-1] = chr(ord(out[-1]) + ord(final) - _T_BASE)
            open_syllable = False  # dropped or attached: either way the syllable before is closed
        else:
            out.append(ch)
            open_syllable = False
        i += 1
    return "".join(out)


# --- tokenizers ----------------------------------------------------------------------------

class Tokenizer:
    """CTC vocabulary: ``tokens[0] == BLANK``, ``tokens[1] == SPACE``."""

    unit: str = ""

    def __init__(self, tokens: list[str]):
        tokens = list(tokens)
        if len(tokens) < 2 or tokens[0] != BLANK or tokens[1] != SPACE:
            raise ValueError(f"tokens must start with [{BLANK!r}, {SPACE!r}], got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens contain duplicates")
        self.tokens = tokens
        self._index = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} tokens)"

    def _units(self, text: str) -> str:
        return text

    def _join(self, units: str) -> str:
        return units

    def encode(self, text: str) -> list[int]:
        """Token ids for already normalised text; characters not in the vocabulary are dropped."""
        index = self._index
        return [index[u] for u in self._units(text) if u in index]

    def decode(self, ids: Iterable[int]) -> str:
        """Text for CTC-collapsed ids; blanks are skipped, spaces collapsed and stripped."""
        n = len(self.tokens)
        units = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} out of range for a vocabulary of {n}")
            if i != 0:
                units.append(self.tokens[i])
        return _SPACES.sub(" ", self._join("".join(units))).strip()

    def token_text(self, i: int) -> str:
        """Printable form of token ``i``."""
        t = self.tokens[i]
        return "␣" if t == SPACE else t

    def to_dict(self) -> dict:
        return {
            "unit": self.unit,
            "tokens": list(self.tokens),
            "blank": 0,
            "space": 1,
            "normalization": "NFC; Hangul syllables and single spaces (speech.text.normalize_transcript)",
        }


class SyllableTokenizer(Tokenizer):
    """One token per Hangul syllable."""

    unit = "syllable"


class JamoTokenizer(Tokenizer):
    """Fixed inventory: blank, space, 19 initials, 21 vowels, 27 finals (69 tokens)."""

    unit = "jamo"

    def __init__(self):
        super().__init__([BLANK, SPACE] + CHOSEONG + JUNGSEONG + JONGSEONG)

    def _units(self, text: str) -> str:
        return decompose(text)

    def _join(self, units: str) -> str:
        return compose_complete(units)

    def token_text(self, i: int) -> str:
        # Position marks keep the initial and the final form of one consonant apart: ㄱ- and -ㄱ.
        t = self.tokens[i]
        if t in CHOSEONG:
            return _TO_COMPAT[t] + "-"
        if t in JONGSEONG:
            return "-" + _TO_COMPAT[t]
        if t in JUNGSEONG:
            return _TO_COMPAT[t]
        return super().token_text(i)


def build_syllable_tokenizer(texts: Iterable[str], min_count: int = 1) -> SyllableTokenizer:
    """Vocabulary of the Hangul syllables in ``texts`` seen at least ``min_count`` times."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(ch for ch in text if is_hangul_syllable(ch))
    syllables = sorted(ch for ch, c in counts.items() if c >= min_count)
    return SyllableTokenizer([BLANK, SPACE] + syllables)


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from ``Tokenizer.to_dict()``."""
    unit = d.get("unit")
    if unit == "syllable":
        return SyllableTokenizer(d["tokens"])
    if unit == "jamo":
        tok = JamoTokenizer()
        if list(d["tokens"]) != tok.tokens:
            raise ValueError("jamo tokenizer: saved tokens differ from the fixed jamo inventory")
        return tok
    raise ValueError(f"unknown tokenizer unit {unit!r}; available units = ['syllable', 'jamo']")
