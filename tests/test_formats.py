"""Subtitles sized for reading: cues of at most 7 s and two lines, split at word or segment times,
for the transcript (real DS2 output on the two-minute family recording) and the conversation export."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from speech.analysis import analyze
from speech.formats import (LINE_WIDTH, MAX_CUE_SECONDS, MAX_LINES, split_span, subtitle_cues, text_width, to_srt,
                            to_vtt)
from speech.gender import GenderClassifier
from speech.stt import load_engine

EXAMPLES = Path(__file__).parent / "fixtures" / "examples"
FAMILY = EXAMPLES / "family_conversation.ogg"
TS = r"(\d\d):(\d\d):(\d\d)[,.](\d{3})"
SRT_CUE = re.compile(rf"^(\d+)\n{TS} --> {TS}\n(\S[^\n]*(?:\n\S[^\n]*)?)$")

pytestmark = pytest.mark.usefixtures("one_thread")


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """SRT -> (start, end, lines); every block must be a well-formed cue of one or two lines."""
    out = []
    for k, block in enumerate([b for b in text.strip().split("\n\n") if b.strip()], 1):
        m = SRT_CUE.match(block)
        assert m and int(m.group(1)) == k, block
        g = [int(x) for x in m.groups()[1:9]]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        out.append((start, end, m.group(10).split("\n")))
    return out


def assert_readable(cues, label: str = "") -> None:
    for start, end, lines in cues:
        assert 0 <= end - start <= MAX_CUE_SECONDS + 1e-3, (start, end, lines)
        assert 1 <= len(lines) <= MAX_LINES, lines
        for line in lines:
            body = line[len(label):].strip() if label and line.startswith(label) else line
            # a line is at most LINE_WIDTH wide, unless it is one word that alone is wider
            assert text_width(body) <= LINE_WIDTH or " " not in body, lines
    starts = [c[0] for c in cues]
    assert starts == sorted(starts)


@pytest.fixture(scope="module")
def family_transcript():
    return load_engine("ds2").transcribe(FAMILY)


def test_transcript_cues_split_at_word_times(family_transcript):
    segments = family_transcript.segments
    assert max(s.end - s.start for s in segments) > MAX_CUE_SECONDS   # one segment per cue would be too long
    srt = to_srt(subtitle_cues((s.start, s.end, s.text, s.words) for s in segments))
    cues = parse_srt(srt)
    assert_readable(cues)
    assert len(cues) > len(segments)
    # the words, in order, all there
    assert " ".join(" ".join(lines) for _, _, lines in cues) == family_transcript.text
    # every cue starts at a word's start and ends at a word's end (to the millisecond)
    starts = {round(w.start, 3) for s in segments for w in s.words}
    ends = {round(w.end, 3) for s in segments for w in s.words}
    assert all(round(a, 3) in starts and round(b, 3) in ends for a, b, _ in cues)


def test_vtt_uses_the_same_cues(family_transcript):
    cues = subtitle_cues((s.start, s.end, s.text, s.words) for s in family_transcript.segments)
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(cues)
    assert "\n\n".join(t for _, _, t in cues) in "\n\n".join(b.split("\n", 1)[1] for b in vtt.split("\n\n")[1:]
                                                             if " --> " in b)


def test_segment_without_word_times_is_shared_out_by_width():
    text = "오늘은 날씨가 정말 좋아서 우리 가족 모두 함께 공원에 가서 산책을 하고 점심을 먹었어요"
    cues = subtitle_cues([(10.0, 25.0, text)])
    assert_readable([(a, b, t.split("\n")) for a, b, t in cues])
    assert cues[0][0] == 10.0 and cues[-1][1] == pytest.approx(25.0)
    assert all(b == pytest.approx(c) for (_, b, _), (c, _, _) in zip(cues, cues[1:]))  # no gaps, no overlap
    assert " ".join(t.replace("\n", " ") for _, _, t in cues) == text


def test_split_span():
    assert split_span(0.0, 5.0) == [(0.0, 5.0)]
    pieces = split_span(3.0, 30.0)
    assert len(pieces) == 4 and pieces[0][0] == 3.0 and pieces[-1][1] == 30.0
    assert all(b - a <= MAX_CUE_SECONDS for a, b in pieces)


def test_conversation_export_has_short_cues_that_cover_the_speech():
    """The family recording's turns last up to ~20 s; its SRT cues are at most 7 s and together
    cover exactly the speech each gender was credited with."""
    report = analyze(FAMILY, GenderClassifier.load())
    assert max(t.duration for t in report.turns) > 2 * MAX_CUE_SECONDS
    cues = parse_srt(report.to_srt())
    assert_readable(cues)
    for g in ("female", "male"):
        covered = sum(b - a for a, b, lines in cues if lines[0].endswith(f" {g}]"))  # [S1 female]
        assert covered == pytest.approx(report.genders[g]["seconds"], abs=0.01 * len(cues))


def test_a_slow_segment_is_split_by_time():
    """Few words over 20 s fit two lines but not 7 s: the time rule splits them."""
    cues = subtitle_cues([(0.0, 20.0, "네 그래 알았어 이따 봐")])
    assert len(cues) >= 3 and all(b - a <= MAX_CUE_SECONDS for a, b, _ in cues)
    assert " ".join(t for _, _, t in cues) == "네 그래 알았어 이따 봐"


def test_a_long_speech_region_without_text_is_split():
    """A sentence with its pauses cut out, three times over: one speech region of ~13 s, whose
    label cues are <= 7 s."""
    import librosa
    import numpy as np

    from speech.audio import SAMPLE_RATE, load_audio

    a = load_audio(EXAMPLES / "ko_female_ava00013.flac")
    voiced = np.concatenate([a[s:e] for s, e in librosa.effects.split(a, top_db=30)])
    report = analyze((SAMPLE_RATE, np.tile(voiced, 3)), GenderClassifier.load())
    assert max(s.duration for s in report.segments) > MAX_CUE_SECONDS
    cues = parse_srt(report.to_srt())
    assert_readable(cues)
    assert sum(b - a for a, b, _ in cues) == pytest.approx(report.speech_seconds, abs=0.01 * len(cues))
