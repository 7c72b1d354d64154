"""Whisper's known failures on silence and noise, detected and removed from its segments.

Whisper was trained on subtitles, so on silence, music or noise it writes what subtitles say
there: Korean YouTube sign-offs ('시청해주셔서 감사합니다', '구독과 좋아요 부탁드립니다'),
subtitle credits, broadcaster outros. When it loses track of the audio it loops: the same
words again and again inside one segment, or the same segment over and over.

`filter_segments` applies, in order:

1. repetition inside a segment: a run of 3+ copies of the same 1-6 words, or 5+ copies of the
   same 1-10 characters, keeps one copy; a segment that was mostly loop (what is left is under
   a third of it, '하나, 하나, 하나, 하나, 하나.') is dropped;
2. sign-offs: a segment made only of known subtitle phrases is dropped;
3. outside speech: with VAD speech regions given, a segment overlapping none of them is dropped;
4. weak evidence: Whisper's own rule, no_speech_prob > 0.6 with avg_logprob < -1;
5. repetition across segments: a run of 3+ consecutive segments with the same text is dropped,
   all of it: a whole-segment loop means the model is no longer following the audio.

Real read speech passes through untouched (tests check it on the project's corpus sentences).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

# Compared after `_key` (NFC, lower case, letters and digits only). A segment whose key is made
# only of these phrases is a hallucination.
SIGN_OFFS = [
    "시청해주셔서감사합니다", "시청해주셔서고맙습니다", "시청해주신여러분감사합니다", "시청감사합니다",
    "봐주셔서감사합니다", "들어주셔서감사합니다", "오늘도시청해주셔서감사합니다",
    "구독과좋아요부탁드립니다", "구독과좋아요", "구독좋아요", "좋아요와구독", "구독과좋아요알림설정",
    "좋아요구독알림설정", "알림설정까지부탁드립니다", "구독부탁드립니다", "구독해주세요",
    "다음영상에서만나요", "다음영상에서뵙겠습니다", "다음시간에만나요", "다음시간에뵙겠습니다",
    "한글자막제공", "자막제공", "한글자막by", "자막by", "자막제작", "영상편집", "자막",
    "mbc뉴스", "kbs뉴스", "sbs뉴스", "ytn뉴스", "jtbc뉴스", "뉴스", "기자입니다",
    "감사합니다", "고맙습니다", "thankyouforwatching", "thanksforwatching", "pleasesubscribe",
]
# Broadcaster outros with a reporter's name: 'MBC 뉴스 김철수입니다'.
_NEWS_OUTRO = r"(?:mbc|kbs|sbs|ytn|jtbc|연합)?뉴스[가-힣]{2,4}(?:기자)?입니다"
# Subtitle credits with a name: '한글자막 by 한효정' (subtitles in Whisper's training data, never speech).
_CREDIT = r"(?:한글)?자막(?:제공|제작)?by(?:[가-힣]{2,4}|[a-z]{2,12})"
_SIGN_OFF = re.compile(
    "(?:" + "|".join([_NEWS_OUTRO, _CREDIT] + sorted(map(re.escape, SIGN_OFFS), key=len, reverse=True)) + ")+")
# Phrases that real speech says too: dropped only when the segment is also weakly supported.
_COMMON = {"감사합니다", "고맙습니다", "뉴스", "자막"}

_CHAR_LOOP = re.compile(r"(\S{1,10}?)\1{4,}")
_FILLER = re.compile(r"[\W_]+")


@dataclass
class RawSegment:
    """One segment as the recogniser gave it, with Whisper's confidence figures."""
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    words: list = field(default_factory=list)


def _key(text: str) -> str:
    return _FILLER.sub("", unicodedata.normalize("NFC", text).lower())


def _collapse_words(words: list[str], max_n: int = 6, min_copies: int = 3) -> list[str]:
    """Words compare without punctuation, so '반갑습니다 반갑습니다.' is a repeat."""
    keys = [_key(w) for w in words]
    i, out = 0, []
    while i < len(words):
        for n in range(1, max_n + 1):
            gram = keys[i:i + n]
            copies = 1
            while len(gram) == n and keys[i + copies * n:i + (copies + 1) * n] == gram:
                copies += 1
            if copies >= min_copies and any(gram):
                out += words[i + (copies - 1) * n:i + copies * n]  # the last copy keeps its punctuation
                i += copies * n
                break
        else:
            out.append(words[i])
            i += 1
    return out


def collapse_repeats(text: str) -> str:
    """Keep one copy of each looped word group (3+ copies) or character group (5+ copies)."""
    text = " ".join(_collapse_words(text.split()))
    prev = None
    while prev != text:
        prev = text
        text = _CHAR_LOOP.sub(r"\1", text)
    return text


def is_sign_off(text: str) -> bool:
    key = _key(text)
    return bool(key) and _SIGN_OFF.fullmatch(key) is not None


def _weak(seg: RawSegment) -> bool:
    return seg.no_speech_prob > 0.6 or seg.avg_logprob < -1.0


def _overlap(seg: RawSegment, spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(seg.end, e) - max(seg.start, s)) for s, e in spans)


def filter_segments(segments: Sequence[RawSegment], speech: Optional[Sequence[tuple[float, float]]] = None,
                    ) -> tuple[list[RawSegment], list[tuple[RawSegment, str]]]:
    """-> (kept segments, [(dropped segment, reason)]). `speech`: VAD regions in the same timeline."""
    kept: list[RawSegment] = []
    dropped: list[tuple[RawSegment, str]] = []
    for seg in segments:
        text = collapse_repeats(seg.text.strip())
        looped = len(_key(text)) * 3 < len(_key(seg.text))
        if text != seg.text.strip():
            seg = replace(seg, text=text, words=[])  # word times no longer match the text
        key = _key(text)
        if not key:
            dropped.append((seg, "empty"))
        elif looped:
            dropped.append((seg, "repetition loop"))
        elif is_sign_off(text) and (key not in _COMMON or _weak(seg)):
            dropped.append((seg, "sign-off"))
        elif speech is not None and _overlap(seg, speech) <= 0.0:
            dropped.append((seg, "outside speech"))
        elif seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
            dropped.append((seg, "no speech"))
        else:
            kept.append(seg)
    # Whole-segment loops.
    out: list[RawSegment] = []
    i = 0
    while i < len(kept):
        j = i
        while j + 1 < len(kept) and _key(kept[j + 1].text) == _key(kept[i].text):
            j += 1
        run = kept[i:j + 1]
        if len(run) >= 3:
            dropped += [(s, "repetition loop") for s in run]
        else:
            out += run
        i = j + 1
    return out, dropped
