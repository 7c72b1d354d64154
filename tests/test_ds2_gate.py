"""DeepSpeech2's speech gate on real household noise: no speech, no text; speech keeps its text.

Without the gate the default model writes jamo soup for almost every noise clip (50 of 52 clips
of shared/data/noise, results/ds2-nonspeech.md).
"""
from pathlib import Path

import numpy as np
import pytest

from speech.audio import SAMPLE_RATE, load_audio
from speech.engines.base import Word
from speech.engines.ds2 import speech_share
from speech.stt import DS2Engine, load_engine

FIX = Path(__file__).parent / "fixtures"
NOISE = sorted((FIX / "noise").glob("*.flac"))          # vacuum cleaner, dishwasher, air conditioner
SPEECH = FIX / "examples" / "ko_male_emh00003.flac"
CRY = FIX / "nonspeech" / "babycry_10s.flac"            # the VAD hears 0.7 s of speech in it


@pytest.fixture(scope="module")
def engines(one_thread):
    greedy = load_engine("ds2")
    return greedy, greedy.with_decoder("beam")


def test_noise_gives_no_text(engines):
    assert len(NOISE) >= 3
    for engine in engines:
        for path in NOISE:
            for db in (0, 30):  # as recorded, and as a quiet recording (normalised back up)
                audio = load_audio(path) * np.float32(10 ** (-db / 20))
                t = engine.transcribe((SAMPLE_RATE, audio))
                assert t.text == "" and t.segments == [], (engine.decoder_name, path.name, db, t.text)


def test_the_gate_is_what_silences_noise(engines):
    ungated = engines[0].with_decoder("greedy")
    ungated.gate = False
    assert sum(bool(ungated.transcribe(p).text) for p in NOISE) >= 2


def test_speech_keeps_its_text_and_noise_around_it_adds_none(engines):
    greedy = engines[0]
    speech = load_audio(SPEECH)
    alone = greedy.transcribe((SAMPLE_RATE, speech))
    assert len(alone.text) >= 10
    # 6 s of dishwasher noise after the sentence: no words in the noise.
    noise = load_audio(NOISE[0]) * np.float32(0.5)
    padded = np.concatenate([speech, noise])
    t = greedy.transcribe((SAMPLE_RATE, padded))
    end = max(e for _, e in greedy.last_spans)
    assert t.segments and all(w.start < end + DS2Engine.GATE_SLACK for s in t.segments for w in s.words)
    assert end < len(speech) / SAMPLE_RATE + 0.5


def test_a_word_mostly_outside_the_speech_regions_is_dropped(engines):
    """A 10 s clip is decoded whole; over a baby's cry the model writes one long word of which the
    VAD's region (0.7 s) holds about a quarter: the gate drops it, where any overlap used to keep it."""
    greedy = engines[0]
    assert greedy.transcribe(CRY).text == "" and greedy.last_spans     # speech regions, yet no text
    lenient = greedy.with_decoder("greedy")
    lenient.GATE_SHARE = 1e-6                                          # any overlap: the rule before
    (word,) = [w for s in lenient.transcribe(CRY).segments for w in s.words]
    assert 0 < speech_share(word, lenient.last_spans, DS2Engine.GATE_SLACK) < DS2Engine.GATE_SHARE
    assert engines[1].transcribe(CRY).text == ""


def test_the_language_model_adds_no_word_the_model_did_not_hear(engines, monkeypatch):
    """The baby's cry 40 dB down (16-bit): greedy writes nothing; the beam search with the LM wrote a
    word (너무해지며) until its words had to overlap a word that greedy writes and the gate keeps.
    On speech the rule changes nothing here (dev CER: results/ds2-nonspeech.md)."""
    import speech.engines.ds2 as ds2

    greedy, beam = engines
    quiet = np.round(load_audio(CRY) * np.float32(10 ** (-40 / 20)) * 32767).astype(np.int16)
    assert greedy.transcribe((SAMPLE_RATE, quiet)).text == ""
    assert beam.transcribe((SAMPLE_RATE, quiet)).text == ""
    speech = beam.transcribe(SPEECH).text
    monkeypatch.setattr(ds2, "heard_by_the_model", lambda words, *rest: words)     # the rule off
    assert beam.transcribe((SAMPLE_RATE, quiet)).text != ""
    assert beam.transcribe(SPEECH).text == speech and len(speech) >= 10


def test_speech_share_counts_overlapping_regions_once():
    assert speech_share(Word(0.0, 2.0, "a"), [(0.5, 1.0), (0.9, 1.2)], pad=0.0) == pytest.approx(0.35)
    assert speech_share(Word(0.0, 2.0, "a"), [(0.5, 1.0), (1.3, 1.5)], pad=0.2) == pytest.approx(0.7)   # 0.3-1.7
    assert speech_share(Word(1.0, 1.0, "a"), [(0.5, 1.0)], pad=0.0) == 1.0     # a word of no duration
    assert speech_share(Word(3.0, 4.0, "a"), [(0.5, 1.0)], pad=0.2) == 0.0
