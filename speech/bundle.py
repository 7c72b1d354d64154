"""Releases: one typed bundle per model, read and written here and nowhere else.

A release is a folder (and a Hub model repo) with `config.json` (what the model is: type, name,
dimensions, feature configuration, tokenizer or labels, decoder settings, calibration, provenance,
metrics, licence) and `model.safetensors` (the weights; none for models that are a few numbers,
such as the TV detector). Loading never unpickles.

    bundle = load_bundle("checkpoints/ds2-ko")       # a folder, owner/name[@rev], or None (default)
    model = bundle.build_model()                      # rebuilt from bundle.dims, weights loaded strictly
    bundle.features, bundle.tokenizer, bundle.decoder, bundle.labels, bundle.name
    save_bundle("runs/x/release", bundle, dtype=torch.float16)

`MODEL_TYPES` says, per model type, which dimensions class and network it has and which embedded
default answers when no reference is given (none for the distillation teacher's head, which only
training writes and reads). Training checkpoints (optimizer, step, RNG state) are
separate files written by `training/`.

Format versions: 2 stores a gender model's labels once (in `dims`); version 1 (the releases
published before, with `labels` beside `dims` as well) still loads, and `python -m speech.bundle
upgrade FOLDER` rewrites its config.json as version 2 (the weights are not touched).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors.torch import load_file, save_file

from .features import FeatureConfig
from .hub import resolve_model
from .models.deepspeech2 import DeepSpeech2, DS2Dims
from .models.gender import GenderDims, GenderNet
from .models.campplus import CamPlusDims, CamPlusNet
from .models.speaker import SpeakerDims, SpeakerNet
from .models.teacher import TeacherHead, TeacherHeadDims
from .text import Tokenizer, tokenizer_from_dict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "korean-speech"
FORMAT_VERSION = 2
BEAM_SIZE = 32   # beam width when neither the caller nor the release says


class CheckpointError(ValueError):
    pass


@dataclass(frozen=True)
class ModelType:
    kind: str                         # speech.hub's kind: which embedded default answers for None
    dims: Optional[type] = None       # dimensions dataclass (from_dict/to_dict)
    network: Optional[Callable] = None  # nn.Module built from the dims
    weights: bool = True              # whether the release has model.safetensors
    extras: tuple = ()                # prefixes of tensors that travel with the weights but are not the network's


MODEL_TYPES = {
    "deepspeech2": ModelType("stt", DS2Dims, DeepSpeech2),
    "gender-cnn": ModelType("gender", GenderDims, GenderNet),
    "speaker-lstm": ModelType("speaker", SpeakerDims, SpeakerNet, extras=("projection.",)),   # an LDA
    "speaker-campplus": ModelType("speaker", CamPlusDims, CamPlusNet, extras=("projection.",)),
    "tv-logistic": ModelType("tv", weights=False),   # its few numbers live in config["model"]
    "whisper-ctc-head": ModelType("teacher", TeacherHeadDims, TeacherHead),   # training.whisper_teacher
}


@dataclass(frozen=True)
class DecoderSettings:
    """How a DeepSpeech2 release is decoded with beam search: width, LM file (inside the release)
    and LM weights. A caller's own arguments override each of them."""

    beam_size: int = BEAM_SIZE
    lm: Optional[str] = None
    lm_weight: Optional[float] = None
    word_score: Optional[float] = None

    def beam_options(self) -> dict:
        """The LM weights the release sets, as BeamSearchDecoder keyword arguments."""
        return {k: v for k, v in (("lm_weight", self.lm_weight), ("word_score", self.word_score)) if v is not None}

    def to_dict(self) -> dict:
        d = {"beam": self.beam_options(), "beam_size": self.beam_size}
        return {**d, "lm": self.lm} if self.lm else d

    @classmethod
    def from_dict(cls, d: dict) -> "DecoderSettings":
        unknown = set(d) - {"beam", "beam_size", "lm"} or set(d.get("beam", {})) - {"lm_weight", "word_score"}
        if unknown:
            raise CheckpointError(f"Unknown decoder settings {sorted(unknown)}")
        beam = d.get("beam", {})
        return cls(int(d.get("beam_size", BEAM_SIZE)), d.get("lm"), beam.get("lm_weight"), beam.get("word_score"))


# Config keys the bundle types; everything else (licence, training, evaluation, ...) travels as `info`.
_TYPED = ("format", "format_version", "model_type", "name", "dims", "features", "tokenizer", "decoder",
          "calibration", "provenance", "metrics")


@dataclass
class Bundle:
    model_type: str
    name: str = ""
    dims: Any = None                              # MODEL_TYPES[model_type].dims instance
    features: Optional[FeatureConfig] = None
    tokenizer: Optional[Tokenizer] = None         # DeepSpeech2: CTC blank at 0, space at 1
    decoder: Optional[DecoderSettings] = None     # DeepSpeech2
    calibration: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)      # the rest of config.json, as written
    state: Optional[dict] = None                  # weights (float32); None: not loaded
    folder: Optional[Path] = None                 # where it was loaded from
    tokenizer_extra: dict = field(default_factory=dict, repr=False)   # tokenizer notes beyond to_dict()

    @property
    def type(self) -> ModelType:
        return model_type(self.model_type)

    @property
    def labels(self) -> Optional[tuple]:
        """Class labels of a classifier (from its dims), or the tokens of a recogniser."""
        if self.tokenizer is not None:
            return tuple(self.tokenizer.tokens)
        return tuple(getattr(self.dims, "labels", ())) or None

    def build_model(self, state: Optional[dict] = None) -> torch.nn.Module:
        """The network rebuilt from `dims`, with `state` (default: the release's weights, less the
        tensors under `extras` prefixes) loaded strictly, in eval mode."""
        network = self.type.network
        if network is None:
            raise CheckpointError(f"a {self.model_type!r} release has no network")
        state = self.state if state is None else state
        if state is None:
            raise CheckpointError(f"{self.folder or self.name}: weights were not loaded (load_bundle(weights=True))")
        model = network(self.dims)
        extras = self.type.extras
        model.load_state_dict({k: v for k, v in state.items() if not (extras and k.startswith(extras))}, strict=True)
        return model.eval()

    def to_config(self) -> dict:
        """config.json's content (the current format version), as plain JSON data."""
        c = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_type": self.model_type, "name": self.name}
        if self.dims is not None:
            c["dims"] = self.dims.to_dict()
        if self.features is not None:
            c["features"] = self.features.to_dict()
        if self.tokenizer is not None:
            c["tokenizer"] = {**self.tokenizer.to_dict(), **self.tokenizer_extra}
        for key in ("calibration", "provenance", "metrics"):
            if getattr(self, key):
                c[key] = getattr(self, key)
        c.update(self.info)
        if self.decoder is not None:
            c["decoder"] = self.decoder.to_dict()
        return json.loads(json.dumps(c))   # exactly what config.json holds (lists, not tuples)

    @classmethod
    def from_config(cls, config: dict, state: Optional[dict] = None, folder=None) -> "Bundle":
        """A bundle from config.json's content (any supported format version)."""
        config = upgrade_config(config)
        mt = model_type(config.get("model_type"))
        try:
            dims = mt.dims.from_dict(config["dims"]) if mt.dims is not None else None
            features = FeatureConfig.from_dict(config["features"]) if "features" in config else None
            tokenizer, extra = None, {}
            if "tokenizer" in config:
                tokenizer = tokenizer_from_dict(config["tokenizer"])
                own = tokenizer.to_dict()
                extra = {k: v for k, v in config["tokenizer"].items() if own.get(k) != v}
            decoder = DecoderSettings.from_dict(config["decoder"]) if "decoder" in config else None
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{folder or 'config'}: not a valid {config['model_type']!r} release: {e}") from e
        name = release_name(config.get("name"), folder)
        return cls(config["model_type"], name, dims, features, tokenizer, decoder,
                   config.get("calibration") or {}, config.get("provenance") or {}, config.get("metrics") or {},
                   {k: v for k, v in config.items() if k not in _TYPED}, state, Path(folder) if folder else None,
                   extra)

    def with_info(self, **info) -> "Bundle":
        """A copy with sections of `info` set (evaluation, projection, ...)."""
        return replace(self, info={**self.info, **info})


def release_name(name: Optional[str], folder=None) -> str:
    """A release's name: the one its config gives, else its folder's."""
    return name or (Path(folder).name if folder else "")


def model_type(name: Optional[str]) -> ModelType:
    if name not in MODEL_TYPES:
        raise CheckpointError(f"Unknown model_type {name!r}; model types = {sorted(MODEL_TYPES)}")
    return MODEL_TYPES[name]


def upgrade_config(config: dict) -> dict:
    """config.json of any supported format version -> the current layout (a new dict)."""
    if config.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} model config (format={config.get('format')!r})")
    version = config.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"format_version {version} needs a newer version of this package")
    if "model_type" not in config:
        raise CheckpointError("config must name its model_type")
    config = dict(config)
    if version <= 1 and "labels" in config:   # version 1 wrote a classifier's labels twice
        labels = config.pop("labels")
        if list(labels) != list(config.get("dims", {}).get("labels", labels)):
            raise CheckpointError(f"labels {labels} differ from dims.labels {config['dims']['labels']}")
    config["format_version"] = FORMAT_VERSION
    return config


def read_config(ref) -> dict:
    """A local release folder's (or config.json file's) config, as written (no upgrade)."""
    path = Path(ref)
    file = path / CONFIG_NAME if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"No {CONFIG_NAME} in {path}: not a model folder of this project")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a {FORMAT} model config (format="
                              f"{config.get('format') if isinstance(config, dict) else None!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{file} needs a newer version of this package (format_version {config['format_version']})")
    return config


def load_bundle(ref=None, expected_type=None, token: Optional[str] = None,
                weights: bool = True, map_location: str = "cpu") -> Bundle:
    """A release from a local folder (or a file in it), a Hub repo id `owner/name[@rev]` (through
    speech.hub), or None for the embedded default of `expected_type` (one type, or a tuple of types
    of one kind, any of which will do). `weights=False` reads the config only."""
    if expected_type is None and (ref is None or str(ref).strip() in ("", "default")):
        raise CheckpointError(f"load_bundle(None) needs an expected_type; model types = {sorted(MODEL_TYPES)}")
    expected = (expected_type,) if isinstance(expected_type, str) else expected_type
    # A file in a release (config.json, model.safetensors) stands for its folder.
    folder = resolve_model(ref, model_type(expected[0]).kind if expected else "release", token=token)
    config = read_config(folder)
    if expected is not None and config.get("model_type") not in expected:
        need = " or ".join(repr(t) for t in expected)
        raise CheckpointError(f"{folder} holds a {config.get('model_type')!r} model, but a {need} model is needed")
    bundle = Bundle.from_config(config, folder=folder)
    if weights and bundle.type.weights:
        file = Path(folder) / WEIGHTS_NAME
        if not file.exists():
            raise CheckpointError(f"No {WEIGHTS_NAME} in {folder}")
        state = load_file(str(file), device=map_location)
        # copies: the file is memory-mapped, and a release rewritten in place must not change a loaded model
        bundle.state = {k: (v.to(torch.float32, copy=True) if v.is_floating_point() else v.clone()) for k, v in state.items()}
    return bundle


def save_bundle(directory, bundle: Bundle, dtype: Optional[torch.dtype] = None) -> Path:
    """Write `bundle` as a release folder: config.json, and model.safetensors from `bundle.state`
    (floats cast to `dtype` if given, e.g. float16 to halve the size). A bundle without loaded
    weights keeps the weights file it was loaded from, byte for byte (copied when `directory` is
    another folder). The only writer of release folders."""
    directory = Path(directory)
    if not bundle.name:
        bundle = replace(bundle, name=release_name(None, directory))
    config = bundle.to_config()
    Bundle.from_config(config)   # refuse to write what would not load
    directory.mkdir(parents=True, exist_ok=True)
    if bundle.type.weights:
        if bundle.state is not None:
            tensors = {}
            for k, v in bundle.state.items():
                v = v.detach().cpu()
                if dtype is not None and v.is_floating_point():
                    v = v.to(dtype)
                tensors[k] = v.contiguous()
            save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": FORMAT, "model_type": bundle.model_type})
        elif bundle.folder is not None and (bundle.folder / WEIGHTS_NAME).exists():
            if bundle.folder.resolve() != directory.resolve():
                shutil.copyfile(bundle.folder / WEIGHTS_NAME, directory / WEIGHTS_NAME)
        else:
            raise CheckpointError(f"{bundle.name}: no weights to write (neither loaded nor in a source folder)")
    (directory / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return directory


# -- the dictionary-level interface of format 1's speech.checkpoint, on top of the bundle ----------

def save_release(directory, state_dict: Optional[dict], config: dict, dtype: Optional[torch.dtype] = None) -> Path:
    """save_bundle for a config dict (what training scripts assemble) and its weights."""
    if "model_type" not in config:
        raise CheckpointError("config must name its model_type")
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    return save_bundle(directory, Bundle.from_config(config, state=state_dict), dtype=dtype)


def load_release(ref, expected_type: Optional[str] = None, map_location: str = "cpu"):
    """-> (state_dict in float32, config dict in the current layout)."""
    bundle = load_bundle(ref, expected_type, map_location=map_location)
    return bundle.state, bundle.to_config()


def upgrade(folder) -> Path:
    """Rewrite a local release's config.json in the current format; the weights stay as they are."""
    bundle = load_bundle(folder, weights=False)
    return save_bundle(folder, bundle)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m speech.bundle", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="rewrite release folders' config.json in the current format")
    up.add_argument("folders", nargs="+")
    show = sub.add_parser("show", help="print a release's config (current format)")
    show.add_argument("ref")
    args = p.parse_args(argv)
    try:
        if args.command == "upgrade":
            for f in args.folders:
                before = read_config(f).get("format_version")
                upgrade(f)
                print(f"{f}: format_version {before} -> {FORMAT_VERSION}")
        else:
            print(json.dumps(load_bundle(args.ref, weights=False).to_config(), ensure_ascii=False, indent=2))
    except (ValueError, OSError) as e:   # CheckpointError, speech.hub.ModelNotFoundError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
