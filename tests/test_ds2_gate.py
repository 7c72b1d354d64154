"""DeepSpeech2's speech gate on real household noise: no speech, no text; speech keeps its text.

Without the gate the default model writes jamo soup for almost every noise clip (50 of 52 clips
of shared/data/noise, results/ds2-nonspeech.md).
"""
from pathlib import Path

import numpy as np
import pytest

from speech.audio import SAMPLE_RATE, load_audio
from speech.stt import DS2Engine, load_engine

FIX = Path(__file__).parent / "fixtures"
NOISE = sorted((FIX / "noise").glob("*.flac"))          # vacuum cleaner, dishwasher, air conditioner
SPEECH = FIX / "examples" / "ko_male_emh00003.flac"


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
