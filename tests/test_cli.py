"""`python -m speech transcribe` (speech.cli): jsonl for good and bad files, srt/vtt, bad options."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from speech import cli
from speech.stt import load_engine
from tests.needs import whisper_base_present


ROOT = Path(__file__).parent.parent
EXAMPLES = Path(__file__).parent / "fixtures" / "examples"
FEMALE = EXAMPLES / "ko_female_ava00013.flac"
MALE = EXAMPLES / "ko_male_emh00003.flac"
FAMILY = EXAMPLES / "family_conversation.ogg"
TS = r"(\d\d):(\d\d):(\d\d)[,.](\d{3})"
TEXT = r"(\S[^\n]*(?:\n\S[^\n]*)?)"  # one or two lines
SRT_CUE = re.compile(rf"^(\d+)\n{TS} --> {TS}\n{TEXT}$")
VTT_CUE = re.compile(rf"^{TS.replace('[,.]', '[.]')} --> {TS.replace('[,.]', '[.]')}\n{TEXT}$")


pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "speech", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


@pytest.mark.slow
def test_jsonl_reports_good_files_and_fails_on_a_missing_one(tmp_path):
    missing = tmp_path / "missing.wav"
    p = run_cli("transcribe", str(FEMALE), str(missing), str(MALE), "--format", "jsonl", "--no-progress")
    assert p.returncode != 0
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert [d["path"] for d in lines] == [str(FEMALE), str(MALE)]  # in order, the bad one left out
    for d, f in zip(lines, [FEMALE, MALE]):
        assert set(d) >= {"path", "text", "duration", "segments", "engine", "model", "decoder", "rtf"}
        assert d["text"] and d["decoder"] and d["model"] and d["rtf"] > 0
        # no --engine: the best engine answers (DeepSpeech2 only where there is no Whisper at all)
        assert (d["engine"], d["decoder"]) == (("whisper", "beam5") if whisper_base_present() else ("ds2", "greedy"))
        assert d["duration"] == pytest.approx(sf.info(str(f)).duration, abs=1e-3)
        assert d["segments"]
        for s in d["segments"]:
            assert set(s) >= {"start", "end", "text"} and "words" not in s
            assert 0 <= s["start"] < s["end"] <= d["duration"]
        assert d["text"] == " ".join(s["text"] for s in d["segments"])
    # The missing file is named on stderr in one plain line, with no traceback.
    assert str(missing) in p.stderr and "Traceback" not in p.stderr
    assert sum(str(missing) in line for line in p.stderr.splitlines()) == 1


def cues(text: str, pattern: re.Pattern) -> list[re.Match]:
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    matches = [pattern.match(b) for b in blocks]
    assert all(matches), [b for b, m in zip(blocks, matches) if not m]
    return matches


@pytest.mark.slow
def test_srt_is_well_formed_and_matches_the_transcript(capsys):
    """Cues sized for reading (at most 7 s, two lines; tests/test_formats.py), inside the
    transcript's segments, holding its words in order."""
    assert cli.main(["transcribe", str(FAMILY), "--engine", "ds2", "--format", "srt", "--no-progress"]) == 0
    out = capsys.readouterr().out
    matches = cues(out, SRT_CUE)
    result = load_engine("ds2").transcribe(FAMILY)
    assert len(matches) >= len(result.segments) > 1
    last_end = 0.0
    for k, m in enumerate(matches, 1):
        assert int(m.group(1)) == k
        start, end = seconds(*m.group(2, 3, 4, 5)), seconds(*m.group(6, 7, 8, 9))
        assert last_end <= start < end <= start + 7.001
        assert any(s.start - 1e-3 <= start and end <= s.end + 1e-3 for s in result.segments)
        last_end = end
    assert " ".join(m.group(10).replace("\n", " ") for m in matches) == result.text


def test_vtt_is_well_formed(capsys):
    assert cli.main(["transcribe", str(FEMALE), "--format", "vtt", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WEBVTT\n\n")
    matches = cues(out[len("WEBVTT"):], VTT_CUE)
    duration = sf.info(str(FEMALE)).duration
    for m in matches:
        start, end = seconds(*m.group(1, 2, 3, 4)), seconds(*m.group(5, 6, 7, 8))
        assert 0 <= start < end <= duration + 5e-4


def test_invalid_model_is_a_clear_error_with_exit_code_2(tmp_path):
    p = run_cli("transcribe", str(FEMALE), "--engine", "ds2", "--model", str(tmp_path / "no-such-model"),
                "--no-progress")
    assert p.returncode == 2
    assert "no-such-model" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""
    # A folder that exists but is not a model.
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        sys.exit(cli.main(["transcribe", str(FEMALE), "--engine", "ds2", "--model", str(tmp_path / "empty"),
                           "--no-progress"]))
    assert e.value.code == 2


def test_bad_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["transcribe", str(FEMALE), "--format", "docx"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "docx" in err and "srt" in err  # the valid choices are named
