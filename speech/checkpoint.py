"""Release checkpoints: a folder with `model.safetensors` (weights) and `config.json` (everything
needed to rebuild and use the model: type, dimensions, feature config, tokenizer/labels,
provenance, licence, metrics). Loading never unpickles. The same folder is a Hub model repo.

Training checkpoints (optimizer, step, RNG state) are separate files written by `training/`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "korean-speech"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    pass


def save_release(directory, state_dict: dict, config: dict, dtype: Optional[torch.dtype] = None) -> Path:
    """Write weights (optionally cast, e.g. to float16 to halve the size) and config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    if "model_type" not in config:
        raise CheckpointError("config must name its model_type")
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": FORMAT, "model_type": config["model_type"]})
    (directory / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return directory


def read_config(directory) -> dict:
    directory = Path(directory)
    path = directory / CONFIG_NAME if directory.is_dir() else directory
    if not path.exists():
        raise CheckpointError(f"No {CONFIG_NAME} in {directory}: not a model folder of this project")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} model config (format={config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} needs a newer version of this package (format_version {config['format_version']})")
    return config


def load_release(directory, expected_type: Optional[str] = None, map_location: str = "cpu"):
    """-> (state_dict in float32, config). Raises CheckpointError with a plain message."""
    directory = Path(directory)
    if directory.is_file():
        directory = directory.parent
    config = read_config(directory)
    if expected_type is not None and config.get("model_type") != expected_type:
        raise CheckpointError(
            f"{directory} holds a {config.get('model_type')!r} model, but a {expected_type!r} model is needed")
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        raise CheckpointError(f"No {WEIGHTS_NAME} in {directory}")
    state = load_file(str(weights), device=map_location)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, config
