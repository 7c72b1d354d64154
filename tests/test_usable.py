"""One rule for audio without usable speech (speech.usable), in the Python API and the CLI, for
transcribe, gender and analyze; analyze takes several files; JSON times are whole milliseconds."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech import cli
from speech.analysis import analyze
from speech.audio import SAMPLE_RATE, AudioTooShortError, NoSpeechError, SilentAudioError, load_audio
from speech.gender import GenderClassifier
from speech.stt import load_engine
from speech.usable import MIN_SPEECH, NO_SPEECH, transcribe

FIX = Path(__file__).parent / "fixtures"
EXAMPLES = FIX / "examples"
FEMALE = EXAMPLES / "ko_female_ava00013.flac"
MALE = EXAMPLES / "ko_male_emh00003.flac"
NOISE = FIX / "noise" / "vacuum_6s.flac"
WHISPER_BASE = Path.home() / ".cache" / "korean-speech" / "whisper-base" / "model"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clf():
    return GenderClassifier.load()


@pytest.fixture(scope="module")
def ds2():
    return load_engine("ds2")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The first 0.1 s of a spoken word (the clip a new user tried), and 2 s of digital silence."""
    d = tmp_path_factory.mktemp("clips")
    speech = load_audio(FEMALE)
    onset = int(np.argmax(np.abs(speech) > 0.1 * np.abs(speech).max()))
    short, silent = d / "short.wav", d / "silent.wav"
    sf.write(short, speech[onset:onset + SAMPLE_RATE // 10], SAMPLE_RATE, subtype="PCM_16")
    sf.write(silent, np.zeros(2 * SAMPLE_RATE, np.int16), SAMPLE_RATE, subtype="PCM_16")
    return {"short": short, "silent": silent}


# -- the Python API ------------------------------------------------------------------------------

def test_a_tenth_of_a_second_is_too_short_everywhere(clf, ds2, clips):
    """transcribe, gender and analyze all refuse it the same way, naming why."""
    assert sf.info(str(clips["short"])).duration == pytest.approx(0.1) and MIN_SPEECH > 0.1
    calls = [lambda: transcribe(ds2, clips["short"]), lambda: clf.predict(clips["short"]),
             lambda: analyze(clips["short"], clf)]
    messages = []
    for call in calls:
        with pytest.raises(AudioTooShortError) as e:
            call()
        messages.append(str(e.value))
    assert len(set(messages)) == 1 and "too short (0.10 s)" in messages[0], messages


def test_silence_is_silent_everywhere(clf, ds2, clips):
    for call in (lambda: transcribe(ds2, clips["silent"]), lambda: clf.predict(clips["silent"]),
                 lambda: analyze(clips["silent"], clf)):
        with pytest.raises(SilentAudioError, match="silent"):
            call()


def test_noise_without_speech_is_no_speech_for_gender_and_analysis(clf):
    """Analysis used to return an all-zero report for a vacuum cleaner; now it says why it has none."""
    for call in (lambda: clf.predict(NOISE), lambda: analyze(NOISE, clf)):
        with pytest.raises(NoSpeechError) as e:
            call()
        assert str(e.value) == NO_SPEECH


class _Heard:
    """An engine whose answer is fixed, to see the boundary act on what an engine returns."""

    def __init__(self, inner, text: str | None):
        self.inner, self.text = inner, text

    def transcribe(self, source, progress=None):
        result = self.inner.transcribe(source, progress=progress)
        if self.text is not None:
            result.text, result.segments = self.text, []
        return result


def test_an_empty_transcript_becomes_no_speech(ds2):
    """The engine level may return no text (a speech gate, Whisper's guard); the boundary turns
    that into the same NoSpeechError, and passes real text through untouched."""
    with pytest.raises(NoSpeechError, match=NO_SPEECH):
        transcribe(_Heard(ds2, ""), MALE)
    result = transcribe(_Heard(ds2, None), MALE)
    assert result.text and result.text == ds2.transcribe(MALE).text


@pytest.mark.whisper_base(WHISPER_BASE)   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1
def test_whisper_hears_no_speech_in_noise():
    whisper = load_engine("whisper", model=str(WHISPER_BASE))
    assert whisper.transcribe(NOISE).text == ""          # the engine level: an empty transcript
    with pytest.raises(NoSpeechError, match=NO_SPEECH):  # the boundary: an error
        transcribe(whisper, NOISE)


# -- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["transcribe"], ["transcribe", "--format", "srt"], ["gender"],
                                     ["analyze"], ["analyze", "--format", "srt"]])
def test_cli_short_clip_is_an_error_with_nothing_on_stdout(clips, capsys, command):
    rc = cli.main([*command, str(clips["short"]), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.strip() == f"error: {clips['short']}: The audio is too short (0.10 s); at least {MIN_SPEECH:g} s is needed."


def test_cli_noise_is_no_speech_for_gender_and_analyze(capsys):
    for command in ("gender", "analyze"):
        assert cli.main([command, str(NOISE), "--no-progress"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.strip() == f"error: {NOISE}: {NO_SPEECH}"


def test_analyze_takes_several_files(tmp_path, capsys):
    missing = tmp_path / "missing.wav"
    rc = cli.main(["analyze", str(FEMALE), str(missing), str(MALE), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1                                               # like transcribe and gender
    reports = [json.loads(line) for line in out.splitlines()]   # JSON Lines, one report a file
    assert [r["path"] for r in reports] == [str(FEMALE), str(MALE)]
    assert [r["longest_turn"]["gender"] for r in reports] == ["female", "male"]
    assert err.count("error:") == 1 and str(missing) in err and "Traceback" not in err

    assert cli.main(["analyze", str(FEMALE), str(MALE), "--format", "csv", "--no-progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["path"] for r in rows} == {str(FEMALE), str(MALE)} and {r["gender"] for r in rows} == {"female", "male"}

    assert cli.main(["analyze", str(FEMALE), str(MALE), "--format", "srt", "--no-progress"]) == 2
    assert "--output-dir" in capsys.readouterr().err
    out_dir = tmp_path / "out"
    assert cli.main(["analyze", str(FEMALE), str(MALE), "--format", "srt", "--output-dir", str(out_dir),
                     "--no-progress"]) == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["ko_female_ava00013_analysis.srt", "ko_female_ava00013_timeline.png",
                     "ko_male_emh00003_analysis.srt", "ko_male_emh00003_timeline.png"]
    assert " female]" in (out_dir / names[0]).read_text(encoding="utf-8")  # [S1 female]


# -- JSON numbers --------------------------------------------------------------------------------

FLOAT = re.compile(r"-?\d+\.(\d+)")


def _decimals(text: str) -> int:
    return max((len(m.group(1)) for m in FLOAT.finditer(text)), default=0)


def test_json_times_are_whole_milliseconds(ds2, capsys):
    """45 s of the family recording: past 30 s the engine works on VAD regions, and a region's
    offset plus frame times gives float noise such as 4.5600000000000005."""
    result = ds2.transcribe((SAMPLE_RATE, load_audio(EXAMPLES / "family_conversation.ogg")[:45 * SAMPLE_RATE]))
    segment_times = [x for s in result.segments for x in (s.start, s.end)]
    word_times = [x for s in result.segments for w in s.words for x in (w.start, w.end)]
    assert any(x != round(x, 3) for x in segment_times) and any(x != round(x, 3) for x in word_times)
    d = result.to_dict(words=True)
    times = [d["duration"]] + [x for s in d["segments"] for x in (s["start"], s["end"])]
    times += [x for s in d["segments"] for w in s["words"] for x in (w["start"], w["end"])]
    assert len(times) > 10 and all(t == round(t, 3) for t in times)
    assert d["rtf"] == round(d["rtf"], 4)
    assert cli.main(["transcribe", str(MALE), "--format", "jsonl", "--words", "--no-progress"]) == 0
    line = capsys.readouterr().out
    assert _decimals(line) <= 4, line
    assert cli.main(["gender", str(MALE), "--format", "jsonl", "--no-progress"]) == 0
    assert _decimals(capsys.readouterr().out) <= 4
    assert cli.main(["analyze", str(MALE), "--no-progress"]) == 0
    assert _decimals(capsys.readouterr().out) <= 4
