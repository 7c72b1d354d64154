"""Merge a Whisper LoRA adapter (what `training.finetune_whisper --lora-rank R` keeps in best/) into
its CTranslate2 base and write a CTranslate2 model that `speech.whisper_engine` serves.

    python -m training.whisper_lora --base ~/.cache/korean-speech/whisper-base/model \
        --adapter runs/whisper-base-lora/best --out runs/whisper-base-lora/ct2

The base is read with training.ct2_whisper (no download), the adapter with peft, the merged
model is written with ctranslate2's converter (training.ct2_whisper.convert_to_ct2), so the
serving side needs neither transformers nor peft.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from training.ct2_whisper import convert_to_ct2, load_transformers_whisper


def merge(base, adapter, out, quantization: str = "int8") -> Path:
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter} has no adapter_config.json: not a LoRA adapter folder")
    model, tokenizer, fe = load_transformers_whisper(base)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        fe.save_pretrained(tmp)
        out = convert_to_ct2(Path(tmp), Path(out), quantization)
    for f in ("README.md",):
        if (adapter / f).exists():
            shutil.copy(adapter / f, Path(out) / f)
    return Path(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="CTranslate2 Whisper folder the adapter was trained on")
    p.add_argument("--adapter", required=True, help="folder with adapter_config.json + adapter_model.safetensors")
    p.add_argument("--out", required=True, help="CTranslate2 folder to write")
    p.add_argument("--quantization", default="int8")
    a = p.parse_args(argv)
    print(merge(a.base, a.adapter, a.out, a.quantization))
    return 0


if __name__ == "__main__":
    sys.exit(main())
