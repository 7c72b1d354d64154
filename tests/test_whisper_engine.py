"""The Whisper engine on real audio with Whisper base (CTranslate2, int8), and its guard.

Whisper base comes from `python -m training.fetch_whisper_base` (setup.sh); tests that need it fail
when it is absent, unless SPEECH_TEST_NO_WHISPER=1 (tests/needs.py). Nothing is downloaded here.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from speech import cli
from speech.audio import load_audio
from speech.hallucination import RawSegment, collapse_repeats, filter_segments, is_sign_off
from speech.hub import ModelNotFoundError
from speech.metrics import cer_wer
from speech.whisper_engine import group_spans, resolve_whisper
from tests.needs import require_whisper_base
from training.fetch_whisper_base import default_dir

FIX = Path(__file__).parent / "fixtures"
MALE = FIX / "examples" / "ko_male_emh00003.flac"
CONVERSATION = FIX / "examples" / "family_conversation.ogg"
VACUUM = FIX / "noise" / "vacuum_6s.flac"
BASE = default_dir()   # where setup.sh assembles Whisper base (KOREAN_SPEECH_CACHE moves it)
needs_base = pytest.mark.whisper_base(BASE)   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1 (tests/needs.py)


# -- guard, no model -----------------------------------------------------------------------------

def test_known_sign_offs_are_dropped():
    segs = [RawSegment(0, 2, "시청해주셔서 감사합니다."), RawSegment(2, 4, "구독과 좋아요 부탁드립니다!"),
            RawSegment(4, 6, "MBC 뉴스 김철수입니다."), RawSegment(6, 8, "한글자막 by 한효정")]
    kept, dropped = filter_segments(segs)
    assert kept == []   # a subtitle credit with a name is a sign-off too
    assert [r for _, r in dropped] == ["sign-off"] * 4
    # 'thank you' is also real speech: kept when Whisper is confident, dropped when it is not
    assert filter_segments([RawSegment(0, 1, "감사합니다.", -0.2, 0.1)])[0]
    assert not filter_segments([RawSegment(0, 1, "감사합니다.", -1.3, 0.7)])[0]


def test_repetition_loops():
    assert collapse_repeats("안녕하세요 반갑습니다 반갑습니다 반갑습니다 반갑습니다.") == "안녕하세요 반갑습니다."
    assert collapse_repeats("아아아아아아아아아아") == "아"
    kept, dropped = filter_segments([RawSegment(0, 2, "하나, 하나, 하나, 하나, 하나.")])
    assert not kept and dropped[0][1] == "repetition loop"
    loop = [RawSegment(2 * i, 2 * i + 2, "아이씨!") for i in range(4)]   # Whisper base on a baby crying
    kept, dropped = filter_segments([RawSegment(0, 1, "자, 시작합니다.")] + loop)
    assert [s.text for s in kept] == ["자, 시작합니다."] and len(dropped) == 4


def test_segments_outside_speech_are_dropped():
    segs = [RawSegment(0.5, 3.0, "첫 문장입니다"), RawSegment(10.0, 12.0, "아무도 말하지 않았다")]
    kept, dropped = filter_segments(segs, speech=[(0.4, 3.1)])
    assert [s.text for s in kept] == ["첫 문장입니다"] and dropped[0][1] == "outside speech"


def test_real_sentences_pass_untouched():
    turns = json.loads((FIX / "examples" / "family_conversation.json").read_text(encoding="utf-8"))["turns"]
    texts = [t["text"] for t in turns] + ["자꾸만 자꾸만 흐느껴 울었다.", "네, 네, 그럼요.", "오늘 정말 감사합니다."]
    segs = [RawSegment(i, i + 1, t, -0.3, 0.1) for i, t in enumerate(texts)]
    kept, dropped = filter_segments(segs, speech=[(0, len(texts))])
    assert dropped == [] and [s.text for s in kept] == texts
    assert not any(is_sign_off(t) for t in texts)


def test_group_spans_keeps_long_pauses_apart():
    assert group_spans([(0.4, 3.0), (3.5, 8.0), (20.0, 22.0)], 30.0) == [(0.4, 8.0), (20.0, 22.0)]
    assert group_spans([(0, 10), (10.5, 20), (21, 29), (29.5, 35)], 30.0) == [(0, 29), (29.5, 35)]


def test_not_a_whisper_folder_is_a_clear_error(tmp_path):
    # (no Whisper at all: tests/test_default_engine.py, against the loopback Hub stand-in)
    (tmp_path / "config.json").write_text('{"format": "korean-speech", "model_type": "deepspeech2"}')
    with pytest.raises(ModelNotFoundError, match="--engine ds2"):
        resolve_whisper(str(tmp_path))


# -- Whisper base on real audio --------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    require_whisper_base(BASE)
    from speech.stt import load_engine

    return load_engine("whisper", model=str(BASE))


@needs_base
def test_speech_is_transcribed_and_left_untouched(engine):
    audio = load_audio(MALE)
    result = engine.transcribe(audio)
    assert result.engine == "whisper" and result.decoder == "beam5" and result.rtf > 0
    cer, _ = cer_wer(["이 값이 실제 질량이라고 가정하면 토성보다도 가볍습니다."], [result.text])
    assert cer < 0.15, result.text
    # the guard changed nothing: same text as faster-whisper itself with the default settings
    # (its VAD filter, conditioning on previous text, temperature fallback; results/whisper-grid.md)
    assert not engine.vad and engine.vad_filter and engine.condition_on_previous_text
    segs, _ = engine.model.transcribe(audio, language="ko", beam_size=5, vad_filter=True,
                                      condition_on_previous_text=True)
    raw = [seg.text.strip() for seg in segs]
    assert result.text == " ".join(raw)
    assert engine.last_dropped == []
    assert all(0 <= seg.start < seg.end <= result.duration for seg in result.segments)


@needs_base
def test_silence_and_noise_give_empty_transcripts(engine):
    rng = np.random.default_rng(0)
    room_tone = (rng.standard_normal(16000 * 8) * 1e-3).astype(np.float32)   # -60 dBFS: a quiet room
    white = (rng.standard_normal(16000 * 5) * 0.1).astype(np.float32)
    for audio in (room_tone, white, load_audio(VACUUM)):
        result = engine.transcribe(audio)
        assert result.text == "" and result.segments == []


@pytest.mark.slow
@needs_base
def test_long_recording_keeps_the_original_timeline(engine):
    turns = json.loads((FIX / "examples" / "family_conversation.json").read_text(encoding="utf-8"))["turns"]
    audio = load_audio(CONVERSATION)[:int(33.5 * 16000)]                   # the first six turns
    turns = [t for t in turns if t["end"] <= 33.5]
    result = engine.transcribe(audio)
    cer, _ = cer_wer([" ".join(t["text"] for t in turns)], [result.text])
    assert cer < 0.3, result.text
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= 33.5
    # each turn's first words appear in a segment that overlaps that turn
    for t in turns:
        seg = [s for s in result.segments if s.start < t["end"] and s.end > t["start"]]
        assert seg, t


@needs_base
def test_cli_transcribes_offline(capsys):
    assert cli.main(["transcribe", "--engine", "whisper", "--model", str(BASE), "--format", "jsonl", str(MALE)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["engine"] == "whisper" and row["segments"]
    assert cer_wer(["이 값이 실제 질량이라고 가정하면 토성보다도 가볍습니다."], [row["text"]])[0] < 0.15, row["text"]
