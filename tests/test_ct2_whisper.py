"""CTranslate2 Whisper base -> transformers: exact weights, same greedy transcript, same encoder output.

Needs Whisper base from `python -m training.fetch_whisper_base` (setup.sh fetches it).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from training.ct2_whisper import compare, load_transformers_whisper, read_model_bin
from training.fetch_whisper_base import default_dir

FIX = Path(__file__).parent / "fixtures" / "examples"
BASE = default_dir()   # setup.sh's Whisper base (KOREAN_SPEECH_CACHE moves it)
needs_base = pytest.mark.whisper_base(BASE)   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1 (tests/needs.py)


@pytest.mark.slow
@needs_base
def test_ct2_to_transformers_and_back_is_bit_exact(tmp_path, one_thread):
    """CT2 (float16) -> transformers (float32) -> ctranslate2's own converter at float16 gives back
    every stored tensor bit for bit, and the decoding config (suppressed tokens, languages, alignment heads)."""
    from training.finetune_whisper import convert_to_ct2

    model, tokenizer, fe = load_transformers_whisper(BASE)
    hf = tmp_path / "hf"
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    fe.save_pretrained(hf)
    del model
    back = convert_to_ct2(hf, tmp_path / "ct2", quantization="float16")
    a, b = read_model_bin(BASE / "model.bin"), read_model_bin(back / "model.bin")
    assert set(a.variables) == set(b.variables)
    for name, value in a.variables.items():
        assert b.dtypes[name] == a.dtypes[name], name
        assert np.array_equal(b.variables[name], value), name
    ca = json.loads((BASE / "config.json").read_text())
    cb = json.loads((back / "config.json").read_text())
    for key in ("suppress_ids", "suppress_ids_begin", "lang_ids", "alignment_heads"):
        assert cb[key] == ca[key], key


@pytest.mark.slow
@needs_base
def test_same_greedy_transcript_and_encoder_output_as_ctranslate2(one_thread):
    r = compare(BASE, [FIX / "ko_male_emh00003.flac"])
    row = r["rows"][0]
    assert row["same_tokens"], (row["ct2"], row["transformers"])
    assert "가정하면" in row["ct2"]                       # a real transcript, not an empty or looping one
    # float32 arithmetic on the same float16 weights: far below one float16 step at the output's scale
    assert 0 < r["encoder_max_abs_diff"] < r["float16_ulp_at_max"] / 2


def test_model_bin_is_checked(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes((99).to_bytes(4, "little") + b"\0" * 16)
    with pytest.raises(ValueError, match="version 99"):
        read_model_bin(bad)


@pytest.mark.slow
@needs_base
def test_lora_adapter_merges_back_into_ctranslate2(tmp_path, one_thread):
    """The shipping path: a peft adapter on the converted base, merged and written by
    ctranslate2's converter. A fresh LoRA adapter is the identity (B = 0), so at float16 the merged
    model.bin must equal the base bit for bit."""
    from peft import LoraConfig, get_peft_model

    from training.whisper_lora import merge

    model, _, _ = load_transformers_whisper(BASE)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=r".*decoder\.layers\.\d+\..*(q_proj|fc1)"))
    peft_model.save_pretrained(tmp_path / "adapter")
    del model, peft_model
    out = merge(BASE, tmp_path / "adapter", tmp_path / "ct2", quantization="float16")
    a, b = read_model_bin(BASE / "model.bin"), read_model_bin(out / "model.bin")
    assert [k for k in a.variables if not np.array_equal(a.variables[k], b.variables[k])] == []
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        merge(BASE, tmp_path, tmp_path / "x")
