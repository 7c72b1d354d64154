"""Whisper fine-tuning end to end on a tiny random Whisper: train, convert to CTranslate2, serve.

Needs Whisper's tokenizer.json from `python -m training.fetch_whisper_base` (no download here).
"""
import json
from pathlib import Path

import pytest

from speech.stt import Transcript, load_engine
from training.fetch_whisper_base import default_dir
from training.finetune_whisper import FinetuneConfig, main

FIX = Path(__file__).parent / "fixtures"
CLIP = FIX / "examples" / "ko_male_emh00003.flac"
BASE = default_dir()
needs_tokenizer = pytest.mark.skipif(
    not (BASE / "tokenizer.json").exists(),
    reason=f"Whisper tokenizer absent: run `python -m training.fetch_whisper_base` (looked in {BASE})")


@needs_tokenizer
def test_tiny_random_finetune_converts_and_transcribes(tmp_path):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"audio": str(CLIP), "text": "이 값이 실제 질량이라고 가정하면 토성보다도 가볍습니다",
                                    "raw_text": "이 값이 실제 질량이라고 가정하면 토성보다도 가볍습니다.", "duration": 5.02},
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    main(["--tiny-random", "--tokenizer", str(BASE), "--train", str(manifest), "--out", str(out),
          "--steps", "12", "--batch-size", "1", "--lr", "5e-3", "--warmup-steps", "2",
          "--noise-dir", str(FIX / "noise"), "--noise-prob", "0.5"])
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert log[-1]["step"] == 11 and log[-1]["loss"] < 0.8 * log[0]["loss"]   # it learned
    assert (out / "hf" / "tokenizer.json").exists()
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in (out / "ct2").iterdir()}

    engine = load_engine("whisper", model=str(out / "ct2"))
    result = engine.transcribe(CLIP)
    assert isinstance(result, Transcript) and result.engine == "whisper"
    assert result.duration == pytest.approx(5.02, abs=0.01) and result.rtf > 0
    assert all(0 <= s.start <= s.end <= result.duration + 0.05 for s in result.segments)


def test_config_is_checked_up_front(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        FinetuneConfig(train="x.jsonl")
    with pytest.raises(ValueError, match="tokenizer"):
        FinetuneConfig(train="x.jsonl", tiny_random=True)
    with pytest.raises(ValueError, match="manifest.tsv"):
        FinetuneConfig(train="x.jsonl", base="openai/whisper-tiny", noise_dir=str(tmp_path))
