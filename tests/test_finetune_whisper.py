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
needs_tokenizer = pytest.mark.whisper_base(BASE, "tokenizer.json")   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1


@pytest.mark.slow
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
    assert all(0 <= s.start <= s.end <= result.duration + 0.05 for s in result.segments), result.segments


def test_config_is_checked_up_front(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        FinetuneConfig(train="x.jsonl")
    with pytest.raises(ValueError, match="tokenizer"):
        FinetuneConfig(train="x.jsonl", tiny_random=True)
    with pytest.raises(ValueError, match="manifest.tsv"):
        FinetuneConfig(train="x.jsonl", base="openai/whisper-tiny", noise_dir=str(tmp_path))


@needs_tokenizer
def test_lora_run_evaluates_every_condition_keeps_best_and_stops_on_noisy_dev(tmp_path):
    """LoRA on a tiny random Whisper with a fixed dev subset scored clean / 5 dB / far-field:
    a step-0 (zero-shot) evaluation, one per --eval-every, best/ = the lowest mean CER,
    early stop once the noisy CER fails to improve --patience times, only the adapter trained."""
    from safetensors.torch import load_file

    dev = FIX / "ko-speech" / "manifest.jsonl"
    out = tmp_path / "run"
    metrics = main(["--tiny-random", "--tokenizer", str(BASE), "--train", str(dev), "--out", str(out),
                    "--lora-rank", "4", "--encoder-train-layers", "1", "--steps", "12", "--batch-size", "2",
                    "--lr", "1e-3", "--warmup-steps", "1", "--eval-dev", str(dev), "--eval-stride", "1",
                    "--eval-every", "2", "--patience", "1", "--eval-conditions", "clean,noise5,farfield",
                    "--eval-max-tokens", "6",
                    "--noise-dir", str(FIX / "noise"), "--reverb-prob", "0.5", "--no-ct2"])
    evals = metrics["evals"]
    assert evals[0]["eval_step"] == 0 and all(e["eval_step"] % 2 == 0 for e in evals)
    assert all(set(e["cer"]) == {"clean", "noise5", "farfield", "mean", "noisy"} for e in evals)
    assert all(e["cer"]["noisy"] == pytest.approx((e["cer"]["noise5"] + e["cer"]["farfield"]) / 2, abs=0.01) for e in evals)
    best = min(evals, key=lambda e: e["cer"]["mean"])
    assert metrics["best"]["eval_step"] == best["eval_step"]
    # patience 1: the run ends at the first evaluation whose noisy CER is not a new low, or at step 12
    noisy = [e["cer"]["noisy"] for e in evals]
    assert metrics["steps"] == 12 or noisy[-1] >= min(noisy[:-1])
    assert all(n < min(noisy[:i]) for i, n in enumerate(noisy[:-1]) if i > 0)  # it stopped at the first miss
    adapter = load_file(str(out / "best" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert not any("encoder.layers.0." in k for k in adapter)   # only the top encoder layer has adapters
    assert any("encoder.layers.1." in k for k in adapter) and any("decoder.layers." in k for k in adapter)
    assert metrics["params_trained"] == sum(v.numel() for v in adapter.values())
    assert (out / "hf" / "model.safetensors").exists() and not (out / "ct2").exists()
