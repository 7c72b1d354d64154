"""Conversation analysis on real speech: shares, turns, exports, silence, noise, a long file."""
from __future__ import annotations

import csv
import io
import json
from itertools import groupby
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from speech.analysis import analyze, viterbi
from speech.audio import SAMPLE_RATE, NoSpeechError, load_audio
from speech.gender import GenderClassifier
from speech.plots import hangul_font, timeline_figure

FIX = Path(__file__).parent / "fixtures"
CLIPS = [(FIX / "gender" / "avc00010.flac", "female"), (FIX / "gender" / "emf00002.flac", "male"),
         (FIX / "gender" / "ava00021.flac", "female"), (FIX / "gender" / "emh00305.flac", "male")]
NOISE = FIX / "noise" / "vacuum_6s.flac"


@pytest.fixture(scope="module")
def clf():
    return GenderClassifier.load()


def conversation(repeats: int = 1, noise_snr: float | None = None, gap: float = 1.2):
    """Alternating turns of four held-out speakers with pauses -> (audio, true female share, labels)."""
    rng = np.random.default_rng(0)
    parts, secs, labels = [np.zeros(SAMPLE_RATE // 2, np.float32)], {"female": 0.0, "male": 0.0}, []
    for _ in range(repeats):
        for path, g in CLIPS:
            a, _ = librosa.effects.trim(load_audio(path), top_db=30)
            parts += [a, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
            secs[g] += len(a) / SAMPLE_RATE
            labels.append(g)
    audio = np.concatenate(parts)
    audio += 1e-3 * rng.standard_normal(len(audio)).astype(np.float32)  # a room's noise floor
    if noise_snr is not None:
        noise = np.resize(load_audio(NOISE), len(audio))
        speech_power = np.mean(np.concatenate(parts) ** 2)
        audio = audio + noise * np.sqrt(speech_power / (np.mean(noise ** 2) * 10 ** (noise_snr / 10)))
    return audio.astype(np.float32), secs["female"] / sum(secs.values()), labels


def genders(turns) -> list:
    """The gender of each run of turns: a speaker's turn split in two by diarization (two similar
    voices, results/diarization_eval.md) still reads as one female turn."""
    return [g for g, _ in groupby(t.gender for t in turns)]


def test_shares_turns_and_exports(clf, tmp_path):
    audio, share, labels = conversation()
    path = tmp_path / "talk.flac"
    sf.write(str(path), audio, SAMPLE_RATE)
    rep = analyze(str(path), clf)
    assert genders(rep.turns) == labels
    assert abs(rep.genders["female"]["share"] - share) < 0.03
    assert rep.genders["female"]["seconds"] + rep.genders["male"]["seconds"] == pytest.approx(rep.speech_seconds)
    assert rep.longest_turn.duration == max(t.duration for t in rep.turns)

    d = json.loads(rep.to_json())
    assert set(d["female"]) == {"seconds", "share"} and d["n_turns"] == rep.n_turns >= 4
    assert d["female"]["share"] + d["male"]["share"] == pytest.approx(1.0, abs=1e-3)
    table = list(csv.reader(io.StringIO(rep.to_csv())))
    assert table[0][:5] == ["turn", "start", "end", "duration", "gender"] and len(table) == rep.n_turns + 1
    assert [r[4] for r in table[1:]] == [t.gender for t in rep.turns] and table[0][-1] == "speaker"
    srt = rep.to_srt()
    assert srt.count(" --> ") >= rep.n_turns and " female]" in srt and " male]" in srt  # [S1 female], cues of <= 7 s
    assert rep.to_vtt().startswith("WEBVTT")
    rttm = [line.split() for line in rep.to_rttm().splitlines()]
    assert all(len(f) == 10 and f[0] == "SPEAKER" and f[1] == "talk" for f in rttm)
    assert sum(float(f[4]) for f in rttm) == pytest.approx(rep.speech_seconds, abs=0.01)


def test_noisy_conversation(clf):
    audio, share, labels = conversation(noise_snr=5.0)
    rep = analyze((SAMPLE_RATE, audio), clf)
    assert abs(rep.genders["female"]["share"] - share) < 0.05
    assert genders(rep.turns) == labels


def test_silence_and_noise_only(clf, capsys, tmp_path):
    """No usable speech is an error that says why (speech.usable), never an all-zero report."""
    from speech.cli import main

    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(SAMPLE_RATE * 3, np.int16), SAMPLE_RATE, subtype="PCM_16")
    assert main(["analyze", str(silent), "--no-progress"]) == 1
    assert "silent" in capsys.readouterr().err
    with pytest.raises(NoSpeechError):
        analyze(NOISE, clf)
    assert main(["analyze", str(NOISE), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "No speech" in err


@pytest.mark.slow
def test_long_file_cli(clf, tmp_path, capsys):
    """About 4 minutes (16 turns, household noise at 10 dB), through the CLI, with a progress callback."""
    from speech.cli import main

    audio, share, labels = conversation(repeats=4, noise_snr=10.0, gap=4.0)
    path = tmp_path / "long.wav"
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
    assert len(audio) / SAMPLE_RATE > 180
    seen = []
    rep = analyze(str(path), clf, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and all(a <= b + 1e-9 for a, b in zip(seen, seen[1:]))
    assert genders(rep.turns) == labels
    assert abs(rep.genders["female"]["share"] - share) < 0.03
    # speed is measured, not asserted: training/benchmark_analysis.py -> results/analysis_benchmark.md
    png = tmp_path / "timeline.png"
    assert main(["analyze", str(path), "--format", "rttm", "--plot", str(png), "--no-progress"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(rep.segments)
    assert png.stat().st_size > 10_000


def test_viterbi_smooths_flicker():
    rng = np.random.default_rng(0)
    truth = np.array([0] * 60 + [1] * 60)
    p = np.where(truth == 0, 0.8, 0.2)
    flip = rng.random(120) < 0.15                    # 15 % of frames point the wrong way
    p = np.where(flip, 1 - p, p)
    logp = np.log(np.stack([p, 1 - p], 1))
    raw = logp.argmax(1)
    smooth = viterbi(logp, np.full(120, 6.0))
    assert (raw != truth).sum() >= 10
    assert (smooth != truth).sum() <= 2
    assert (np.diff(smooth) != 0).sum() == 1


def test_timeline_figure_hangul(clf, tmp_path):
    audio, _, _ = conversation()
    rep = analyze((SAMPLE_RATE, audio), clf)
    assert hangul_font() is not None                 # fonts-noto-cjk is a listed system dependency
    fig = timeline_figure(rep)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(rep.speakers) and any("여성" in x for x in labels), labels   # a row per speaker
    fig.savefig(tmp_path / "t.png")
    # the legend sits outside the plot area: it covers no bar
    renderer = fig.canvas.get_renderer()
    legend = (fig.legends or [fig.axes[0].get_legend()])[0].get_window_extent(renderer)
    assert not legend.overlaps(fig.axes[0].get_window_extent(renderer))
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_transcribed_turns(clf):
    from speech.stt import load_engine

    audio, _, labels = conversation()
    rep = analyze((SAMPLE_RATE, audio), clf, stt=load_engine("ds2"))
    assert rep.transcribed and all(t.text for t in rep.turns)
    assert "text" in rep.to_csv().splitlines()[0]
    assert all("] " in block for block in rep.to_srt().split("\n\n") if block.strip())
    from speech.formats import LINE_WIDTH, MAX_CUE_SECONDS, text_width

    for start, end, text in rep._captions():  # sized for reading, the gender label included
        lines = text.split("\n")
        assert end - start <= MAX_CUE_SECONDS + 1e-3 and len(lines) <= 2
        assert all(text_width(line) <= LINE_WIDTH or " " not in line.split("] ")[-1] for line in lines), lines


def test_one_copy_of_the_audio_gives_the_same_report(clf, tmp_path):
    """analyze keeps one copy of the samples (speech/memory.py): it applies the level gain in place
    to samples it decoded itself, never to a caller's array. A quiet recording analysed from its
    file and from the caller's array gives the same report, and the array is left as it was."""
    audio, _, _ = conversation()
    path = tmp_path / "quiet.flac"
    sf.write(str(path), audio * np.float32(0.05), SAMPLE_RATE, subtype="PCM_16")
    decoded = load_audio(path)
    kept = decoded.copy()
    from_file = analyze(str(path), clf).to_dict()
    from_array = analyze(decoded, clf, path=str(path)).to_dict()
    assert np.array_equal(decoded, kept)
    assert from_file.pop("rtf") >= 0 and from_array.pop("rtf") >= 0
    assert from_file == from_array and from_file["n_speakers"] >= 2


def test_transcription_hears_the_original_level(clf, tmp_path):
    """With a recogniser, analyze decodes the file again for it after the speakers are found (the
    level-normalised copy is gone by then): each turn it hears is the recording's own samples."""
    from speech.stt import load_engine

    audio, _, _ = conversation()
    path = tmp_path / "quiet.flac"
    sf.write(str(path), audio * np.float32(0.05), SAMPLE_RATE, subtype="PCM_16")
    original = load_audio(path)
    engine, heard = load_engine("ds2"), []

    class Listening:                      # the real engine, remembering what it was given
        def transcribe(self, source):
            heard.append(source[1].copy())
            return engine.transcribe(source)

    rep = analyze(str(path), clf, stt=Listening())
    assert len(heard) == len(rep.turns) >= 4 and any(t.text for t in rep.turns)
    for t, chunk in zip(rep.turns, heard):
        assert np.array_equal(chunk, original[int(t.start * SAMPLE_RATE):int(t.end * SAMPLE_RATE)])


def test_gender_batches_bounded_in_length_give_the_same_logits(clf):
    """segment_logits scores a speaker's speech in batches of at most BATCH_SECONDS of
    audio: batches under the bound are the classifier's own (identical logits), longer ones are
    split (equal within 1e-5), each row still the logits of its own piece."""
    from speech.analysis import span_logits

    audio = load_audio(FIX / "examples" / "family_conversation.ogg")
    cuts = np.cumsum([0, 30, 0.4, 12, 30, 2, 30, 0.7, 5, 13])
    chunks = [audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in zip(cuts[:-1], cuts[1:])]
    ref = clf.span_logits(chunks)
    assert torch.equal(span_logits(clf, chunks, max_seconds=1e9), ref)
    split = span_logits(clf, chunks, max_seconds=31.0)            # every piece on its own
    assert torch.allclose(split, ref, atol=1e-5) and not torch.equal(ref[0], ref[3])
