"""Import a DeepSpeech2 checkpoint from deepspeech.pytorch (the study's code) as a release folder.

    python -m speech.import_deepspeech study_model.pth models/ds2-study [--name NAME] [--pad-mode reflect]

Accepted layouts, read with `torch.load(weights_only=True)` (plain tensors, dicts, lists and
strings only: a file that needs arbitrary classes to unpickle is refused, never executed):

* deepspeech.pytorch before Lightning: {"hidden_size", "hidden_layers", "rnn_type",
  "bidirectional", "labels", "audio_conf", "state_dict", ...};
* Lightning era: the same keys under "hyper_parameters" (or its "model_cfg"/"spect_cfg"), with
  "state_dict" at the top.

The model (LSTM, GRU or tanh RNN; bidirectional, or unidirectional with lookahead) maps onto
speech.models.deepspeech2 (same layout, "ds2" front end, 32 channels); the features are the
study's (loader/data_loader.py with its pinned librosa 0.10.1): int16 / 32767, STFT with
n_fft = win = sample_rate * window_size, zero padding (librosa >= 0.9; `--pad-mode reflect` for
setups on librosa < 0.9), symmetric scipy window, magnitude, log1p, one mean/std per utterance
(torch's unbiased std, no epsilon). The labels' blank (index 0) and space are moved to indices 0
and 1 by permuting the output layer's rows, so the project's tokenizers and decoders read the
model unchanged.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from .bundle import CheckpointError, save_release
from .features import FeatureConfig
from .models.deepspeech2 import DeepSpeech2, DS2Dims
from .text import BLANK, SPACE, SyllableTokenizer

RNN_TYPES = ("lstm", "gru", "rnn")
WINDOWS = ("hamming", "hann")
PAD_MODES = ("constant", "reflect")


class DeepSpeechImportError(CheckpointError):
    """A checkpoint this importer cannot turn into a release; str(e) says why."""


def _load(path) -> dict:
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # pickle.UnpicklingError and friends: the file needs arbitrary classes
        raise DeepSpeechImportError(
            f"{path} cannot be read with weights_only=True (it stores Python objects beyond tensors, dicts, "
            f"lists and strings, e.g. OmegaConf configs or enums). Re-save it from the study's environment as "
            f"a plain dict of hidden_size, hidden_layers, rnn_type, bidirectional, labels, audio_conf, "
            f"state_dict. Details: {e}") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DeepSpeechImportError(f"{path} is not a deepspeech.pytorch checkpoint (no 'state_dict' in it)")
    return ckpt


def _hparams(ckpt: dict) -> dict:
    """Merge the layouts into one flat dict of hyper-parameters."""
    h = {k: v for k, v in ckpt.items() if k != "state_dict"}
    hp = ckpt.get("hyper_parameters")
    if isinstance(hp, dict):
        h.update(hp)
        for sub in ("model_cfg", "spect_cfg"):
            if isinstance(hp.get(sub), dict):
                h.update(hp[sub])
    if "audio_conf" not in h and isinstance(h.get("spect_cfg"), dict):
        h["audio_conf"] = h["spect_cfg"]
    if "audio_conf" not in h and "sample_rate" in h:
        h["audio_conf"] = {k: h[k] for k in ("sample_rate", "window_size", "window_stride", "window") if k in h}
    missing = [k for k in ("hidden_size", "hidden_layers", "labels", "audio_conf") if k not in h]
    if missing:
        raise DeepSpeechImportError(f"checkpoint lacks {missing}; found keys {sorted(h)}")
    return h


def feature_config(audio_conf: dict, pad_mode: str = "constant") -> FeatureConfig:
    """The study's SpectrogramParser as a FeatureConfig: int16 / 32767, librosa STFT with a symmetric
    scipy window, log1p magnitude, (x - mean) / std over the whole utterance (no epsilon).
    librosa >= 0.9 pads with zeros (the study pins 0.10.1); older deepspeech.pytorch setups padded
    with 'reflect'."""
    if pad_mode not in PAD_MODES:
        raise DeepSpeechImportError(f"pad_mode {pad_mode!r} is not supported; supported = {list(PAD_MODES)}")
    sr = int(audio_conf.get("sample_rate", 16000))
    window = str(audio_conf.get("window", "hamming")).split(".")[-1].lower()
    if window not in WINDOWS:
        raise DeepSpeechImportError(f"window {window!r} is not supported; supported windows = {list(WINDOWS)}")
    n_fft = int(sr * float(audio_conf.get("window_size", 0.02)))
    hop = int(sr * float(audio_conf.get("window_stride", 0.01)))
    return FeatureConfig(sample_rate=sr, kind="linear", n_fft=n_fft, win_length=n_fft, hop_length=hop,
                         window=window, periodic_window=False, power=1.0, log="log1p", center=True,
                         pad_mode=pad_mode, normalize="global", norm_eps=0.0, pcm_scale=32767.0)


def _labels(labels) -> list[str]:
    labels = list(labels) if isinstance(labels, str) else [str(x) for x in labels]
    if len(set(labels)) != len(labels):
        raise DeepSpeechImportError("labels contain duplicates")
    return labels


def convert(ckpt: dict, name: str = "", pad_mode: str = "constant") -> tuple[dict, dict]:
    """deepspeech.pytorch checkpoint dict -> (state_dict for DeepSpeech2, release config)."""
    h = _hparams(ckpt)
    src = dict(ckpt["state_dict"])
    labels = _labels(h["labels"])
    if SPACE not in labels[1:]:
        raise DeepSpeechImportError(f"labels have no space {SPACE!r}; the project's decoders need one to split words")
    # "lstm", "RNNType.lstm", "nn.LSTM" -> "lstm"
    rnn_type = re.sub(r"[^a-z]", "", str(h.get("rnn_type", "lstm")).lower().rsplit(".", 1)[-1])
    if rnn_type not in RNN_TYPES:
        raise DeepSpeechImportError(f"rnn_type {h.get('rnn_type')!r} is not supported; supported = {list(RNN_TYPES)}")
    fcfg = feature_config(h["audio_conf"], pad_mode)
    bidirectional = "rnns.0.rnn.weight_ih_l0_reverse" in src  # the weights decide, not the flag
    lookahead = 0
    if "lookahead.0.conv.weight" in src:
        # deepspeech.pytorch's kernel covers `context` frames (this one and context-1 ahead);
        # ours covers `lookahead + 1`.
        lookahead = src["lookahead.0.conv.weight"].shape[-1] - 1
    dims = DS2Dims(n_features=fcfg.n_features, n_tokens=len(labels), frontend="ds2",
                   conv_channels=src["conv.seq_module.0.weight"].shape[0], rnn_type=rnn_type,
                   rnn_hidden=int(h["hidden_size"]), rnn_layers=int(h["hidden_layers"]),
                   bidirectional=bidirectional, lookahead=lookahead)
    # Blank stays at 0 (CTC blank of deepspeech.pytorch is index 0); space moves to 1.
    order = [0, labels.index(SPACE)] + [i for i in range(1, len(labels)) if labels[i] != SPACE]
    tokens = [BLANK, SPACE] + [labels[i] for i in order[2:]]

    model = DeepSpeech2(dims)
    target = model.state_dict()
    state = {}
    for key in target:
        if key.startswith("fc_norm."):
            src_key = "fc.0.module.0." + key[len("fc_norm.module."):]
        elif key == "fc.weight":
            src_key = "fc.0.module.1.weight"
        elif key == "lookahead.conv.weight":
            src_key = "lookahead.0.conv.weight"
        else:
            src_key = key
        if src_key in src:
            state[key] = src.pop(src_key)
        elif key.startswith("rnns.") and ".rnn.bias_" in key:
            state[key] = torch.zeros_like(target[key])  # early deepspeech.pytorch RNNs had bias=False
        elif key.endswith("num_batches_tracked"):
            state[key] = target[key]
        else:
            raise DeepSpeechImportError(f"checkpoint has no {src_key!r} (needed for {key}); is it a DeepSpeech2 model?")
        if state[key].shape != target[key].shape:
            raise DeepSpeechImportError(f"{src_key}: shape {tuple(state[key].shape)} does not fit {tuple(target[key].shape)} "
                               f"(features {fcfg.n_features} bins, {len(labels)} labels)")
    leftover = [k for k in src if not k.endswith("num_batches_tracked")]
    if leftover:
        raise DeepSpeechImportError(f"checkpoint has weights this model does not use: {leftover[:5]}")
    state["fc.weight"] = state["fc.weight"][order].clone()
    model.load_state_dict(state, strict=True)

    config = {
        "model_type": "deepspeech2",
        "name": name,
        "dims": dims.to_dict(),
        "features": fcfg.to_dict(),
        "tokenizer": SyllableTokenizer(tokens).to_dict() | {
            "unit": "syllable", "source_labels": labels,
            "note": "imported character labels; blank and space moved to 0 and 1"},
        "parameters": model.num_parameters(),
        "imported_from": {"format": "deepspeech.pytorch",
                          "version": str(h.get("version", "")),
                          "epoch": h.get("epoch"),
                          "audio_conf": {k: v for k, v in h["audio_conf"].items()
                                         if isinstance(v, (int, float, str, bool)) or v is None}},
    }
    return model.state_dict(), config


def import_checkpoint(path, out_dir, name: str = "", pad_mode: str = "constant") -> Path:
    ckpt = _load(path)
    state, config = convert(ckpt, name or Path(path).stem, pad_mode)
    return save_release(out_dir, state, config)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m speech.import_deepspeech", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="deepspeech.pytorch .pth/.ckpt file")
    p.add_argument("out", help="release folder to write (model.safetensors + config.json)")
    p.add_argument("--name", default="", help="model name for the config (default: the file name)")
    p.add_argument("--pad-mode", choices=PAD_MODES, default="constant",
                   help="STFT edge padding the checkpoint was trained with: 'constant' (zeros; librosa >= 0.9, "
                        "the study's pinned 0.10.1) or 'reflect' (older deepspeech.pytorch with librosa < 0.9)")
    args = p.parse_args(argv)
    try:
        out = import_checkpoint(args.checkpoint, args.out, args.name, args.pad_mode)
    except (DeepSpeechImportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
