"""CTranslate2 Whisper -> transformers Whisper, so real Whisper weights can be fine-tuned here.

    python -m training.ct2_whisper ~/.cache/korean-speech/whisper-base/model runs/whisper-base-hf

The only real Whisper weights this project has are CTranslate2 folders (`model.bin`,
`config.json`, `tokenizer.json`), which transformers cannot load. `model.bin` is read directly
(the binary layout `ctranslate2.specs.model_spec.ModelSpec._serialize` writes, version 5/6) and
the variables are mapped back onto `WhisperForConditionalGeneration`, inverting
`ctranslate2.converters.transformers.WhisperLoader`: fused q/k/v projections are split (the
key projection has no bias in Whisper: CTranslate2 stores zeros there), `proj_out` is tied to
the token embedding. float16/bfloat16/float32 weights are copied exactly; int8 weights are
dequantized (weight / weight_scale), which is not exact.

The way back is `convert_to_ct2` (ctranslate2's own converter);
`tests/test_ct2_whisper.py` checks that CT2 -> HF -> CT2 gives back bit-identical tensors and
that both engines produce the same greedy transcripts.
"""
from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speech.hub import tilde

SUPPORTED_VERSIONS = (5, 6)
# Order of ctranslate2's DataType enum (ctranslate2/specs/model_spec.py: _dtype_to_type_id).
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
SOURCE_POSITIONS = 1500       # Whisper's encoder: 30 s of 10 ms frames after the stride-2 conv
FEATURE_FILES = ("preprocessor_config.json",)


@dataclass
class Ct2Model:
    name: str
    revision: int
    variables: dict = field(default_factory=dict)   # name -> np.ndarray (aliases resolved)
    dtypes: dict = field(default_factory=dict)      # name -> stored dtype name


def read_model_bin(path) -> Ct2Model:
    """Parse a CTranslate2 `model.bin` into numpy arrays (bfloat16 is widened to float32)."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string():
        nonlocal pos
        n = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")  # n counts the trailing NUL
        pos += n
        return s

    version = take("I")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported "
                         f"(supported: {SUPPORTED_VERSIONS}); re-convert it with a recent ctranslate2")
    model = Ct2Model(name=string(), revision=take("I"))
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank))
        dtype = _DTYPES[take("B")]
        nbytes = take("I")
        raw = data[pos:pos + nbytes]
        pos += nbytes
        if dtype == "bfloat16":  # numpy has no bfloat16: its bits are the top half of a float32
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        model.variables[name] = arr.reshape(shape)
        model.dtypes[name] = dtype
    for _ in range(take("I")):
        alias, target = string(), string()
        model.variables[alias] = model.variables[target]
        model.dtypes[alias] = model.dtypes[target]
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes after the aliases; not a CTranslate2 model.bin")
    if model.name != "WhisperSpec":
        raise ValueError(f"{path} holds a {model.name}, not a WhisperSpec")
    return model


def _weight(v: dict, prefix: str) -> np.ndarray:
    w = v[f"{prefix}/weight"]
    if f"{prefix}/weight_scale" in v:  # int8/int16: stored = round(float * scale), one scale per row
        scale = v[f"{prefix}/weight_scale"].astype(np.float32)
        w = w.astype(np.float32) / scale.reshape(-1, *([1] * (w.ndim - 1)))
    return w.astype(np.float32)


def _count(v: dict, prefix: str) -> int:
    return len({m.group(1) for k in v for m in [re.match(rf"{prefix}/layer_(\d+)/", k)] if m})


def hf_state_dict(v: dict) -> dict:
    """CTranslate2 Whisper variables -> transformers WhisperForConditionalGeneration state dict (float32 numpy)."""
    sd = {}

    def linear(hf: str, ct: str):
        sd[f"{hf}.weight"] = _weight(v, ct)
        if f"{ct}/bias" in v:
            sd[f"{hf}.bias"] = v[f"{ct}/bias"].astype(np.float32)

    def norm(hf: str, ct: str):
        sd[f"{hf}.weight"] = v[f"{ct}/gamma"].astype(np.float32)
        sd[f"{hf}.bias"] = v[f"{ct}/beta"].astype(np.float32)

    def split_qkv(hf: str, ct: str, parts: tuple[str, ...]):
        w = _weight(v, ct)
        b = v[f"{ct}/bias"].astype(np.float32)
        n = w.shape[0] // len(parts)
        for i, p in enumerate(parts):
            sd[f"{hf}.{p}_proj.weight"] = w[i * n:(i + 1) * n]
            if p == "k":  # Whisper's key projection has no bias; a constant per query cancels in the softmax
                if np.abs(b[i * n:(i + 1) * n]).max() > 0:
                    raise ValueError(f"{ct}: non-zero key bias; this is not a Whisper model")
            else:
                sd[f"{hf}.{p}_proj.bias"] = b[i * n:(i + 1) * n]

    def layer(hf: str, ct: str, cross: bool):
        """One transformer layer: self-attention, cross-attention (decoder only), feed-forward."""
        split_qkv(f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ("q", "k", "v"))
        linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        if cross:
            linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
            split_qkv(f"{hf}.encoder_attn", f"{ct}/attention/linear_1", ("k", "v"))
            linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
            norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
        linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")

    e, d = "model.encoder", "model.decoder"
    for i in (1, 2):
        sd[f"{e}.conv{i}.weight"] = _weight(v, f"encoder/conv{i}")
        sd[f"{e}.conv{i}.bias"] = v[f"encoder/conv{i}/bias"].astype(np.float32)
    sd[f"{e}.embed_positions.weight"] = v["encoder/position_encodings/encodings"].astype(np.float32)
    for i in range(_count(v, "encoder")):
        layer(f"{e}.layers.{i}", f"encoder/layer_{i}", cross=False)
    norm(f"{e}.layer_norm", "encoder/layer_norm")

    sd[f"{d}.embed_tokens.weight"] = _weight(v, "decoder/embeddings")
    sd[f"{d}.embed_positions.weight"] = v["decoder/position_encodings/encodings"].astype(np.float32)
    for i in range(_count(v, "decoder")):
        layer(f"{d}.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm(f"{d}.layer_norm", "decoder/layer_norm")
    projection = _weight(v, "decoder/projection")
    if not np.array_equal(projection, sd[f"{d}.embed_tokens.weight"]):
        raise ValueError("decoder/projection differs from decoder/embeddings: Whisper ties them")
    if "decoder/projection/bias" in v and np.abs(v["decoder/projection/bias"]).max() > 0:
        raise ValueError("decoder/projection has a non-zero bias: Whisper's proj_out has none")
    return sd


def whisper_config(v: dict, ct2_config: dict, tokenizer):
    """transformers WhisperConfig + GenerationConfig from the tensor shapes, config.json and the tokenizer."""
    from transformers import GenerationConfig, WhisperConfig

    ids = tokenizer.convert_tokens_to_ids
    sot, eot = ids("<|startoftranscript|>"), ids("<|endoftext|>")
    vocab, d_model = v["decoder/embeddings/weight"].shape
    n_enc, n_dec = _count(v, "encoder"), _count(v, "decoder")
    if v["encoder/position_encodings/encodings"].shape[0] != SOURCE_POSITIONS:
        raise ValueError("encoder position encodings are not 1500 long: not a Whisper encoder")
    config = WhisperConfig(
        vocab_size=int(vocab), num_mel_bins=int(v["encoder/conv1/weight"].shape[1]), d_model=int(d_model),
        encoder_layers=n_enc, decoder_layers=n_dec,
        encoder_attention_heads=int(v["encoder/num_heads"]), decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=SOURCE_POSITIONS,
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=list(ct2_config.get("suppress_ids") or []),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin") or []),
        tie_word_embeddings=True)
    lang_ids = set(ct2_config.get("lang_ids") or [])
    languages = {t: i for t, i in tokenizer.get_added_vocab().items()
                 if i in lang_ids and re.fullmatch(r"<\|[a-z]{2,3}(_[a-z]+)?\|>|<\|haw\|>|<\|yue\|>", t)}
    gen = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=len(languages) > 0, lang_to_id=languages,
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads") or []],
        max_initial_timestamp_index=50, max_length=config.max_target_positions)
    return config, gen


def load_tokenizer(ct2_dir: Path):
    from transformers import WhisperTokenizerFast

    tok_file = Path(ct2_dir) / "tokenizer.json"
    if not tok_file.exists():
        raise FileNotFoundError(f"{tok_file} not found: a CTranslate2 Whisper folder carries tokenizer.json")
    return WhisperTokenizerFast(tokenizer_file=str(tok_file), language="korean", task="transcribe",
                                predict_timestamps=False)


def load_transformers_whisper(ct2_dir, dtype=None):
    """(WhisperForConditionalGeneration in eval mode, tokenizer, feature extractor) from a CTranslate2 folder."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    ct2_dir = Path(ct2_dir)
    if not (ct2_dir / "model.bin").exists():
        raise FileNotFoundError(f"{ct2_dir} has no model.bin: not a CTranslate2 model folder")
    v = read_model_bin(ct2_dir / "model.bin").variables
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(ct2_dir)
    config, gen = whisper_config(v, ct2_config, tokenizer)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in hf_state_dict(v).items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = gen
    if dtype is not None:
        model.to(dtype)
    fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return model.eval(), tokenizer, fe


def convert(ct2_dir, out_dir) -> Path:
    """Write a transformers Whisper folder (safetensors, float32) that `from_pretrained` and
    `training.finetune_whisper --base` load."""
    model, tokenizer, fe = load_transformers_whisper(ct2_dir)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    fe.save_pretrained(out_dir)
    (out_dir / "SOURCE.txt").write_text(f"converted from the CTranslate2 model {Path(ct2_dir).name} by training.ct2_whisper\n")
    return out_dir


def convert_to_ct2(hf_dir: Path, out_dir: Path, quantization: str = "int8") -> Path:
    """transformers Whisper folder -> CTranslate2 folder that speech.whisper_engine loads."""
    from ctranslate2.converters import TransformersConverter

    copy = [f for f in ("tokenizer.json", "preprocessor_config.json") if (hf_dir / f).exists()]
    TransformersConverter(str(hf_dir), copy_files=copy).convert(str(out_dir), quantization=quantization, force=True)
    return out_dir


def compare(ct2_dir, audios: list, threads: int = 1) -> dict:
    """Run CTranslate2 and the converted transformers model on the same log-mel input: greedy
    token ids of each (Korean, no timestamps) and the largest encoder output difference."""
    import ctranslate2
    import torch

    from speech.audio import load_audio

    model, tokenizer, fe = load_transformers_whisper(ct2_dir)
    ct = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="default", intra_threads=threads)
    prompt = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>"])
    rows, max_diff, max_abs = [], 0.0, 0.0
    for audio in audios:
        wav = load_audio(audio) if not isinstance(audio, np.ndarray) else audio
        feats = fe(wav, sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
        sv = ctranslate2.StorageView.from_array(feats)
        enc_ct = np.array(ct.encode(sv, to_cpu=True))
        ids_ct = ct.generate(sv, [prompt], beam_size=1, suppress_blank=True, suppress_tokens=[-1],
                             max_length=model.config.max_target_positions)[0].sequences_ids[0]
        with torch.no_grad():
            x = torch.from_numpy(feats)
            enc_hf = model.model.encoder(x).last_hidden_state.numpy()
            ids_hf = model.generate(x, language="ko", task="transcribe", num_beams=1, do_sample=False,
                                    return_timestamps=False)[0].tolist()
        ids_hf = [i for i in ids_hf if i not in tokenizer.all_special_ids]
        diff = float(np.abs(enc_ct - enc_hf).max())
        max_diff, max_abs = max(max_diff, diff), max(max_abs, float(np.abs(enc_hf).max()))
        rows.append({"audio": Path(audio).name if not isinstance(audio, np.ndarray) else "array",
                     "same_tokens": ids_ct == ids_hf, "encoder_max_abs_diff": diff,
                     "ct2": tokenizer.decode(ids_ct).strip(), "transformers": tokenizer.decode(ids_hf).strip()})
    # float16 spacing (ulp) at the largest encoder output: the weights' own rounding step there
    ulp = float(np.spacing(np.float16(max_abs)))
    return {"clips": len(rows), "identical_transcripts": sum(r["same_tokens"] for r in rows),
            "encoder_max_abs_diff": max_diff, "encoder_max_abs_value": max_abs, "float16_ulp_at_max": ulp,
            "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ct2_dir", type=Path, help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)")
    p.add_argument("out_dir", type=Path, nargs="?", help="transformers folder to write")
    p.add_argument("--check", default=None, help="manifest (JSONL): compare both engines on its clips instead")
    p.add_argument("--n", type=int, default=20, help="clips of --check to compare (every k-th, spread over the file)")
    p.add_argument("--report", type=Path, default=None, help="write the --check result here (.json and .md)")
    a = p.parse_args(argv)
    if a.check:
        from training.manifest import read_manifest

        rows = read_manifest(a.check)
        rows = rows[::max(1, len(rows) // a.n)][:a.n]
        r = compare(a.ct2_dir, [row["audio"] for row in rows])
        summary = {k: v for k, v in r.items() if k != "rows"}
        print(json.dumps(summary))
        if a.report:
            cmd = "python -m training.ct2_whisper " + " ".join(argv if argv is not None else sys.argv[1:])
            cmd = tilde(cmd)
            write_report(r, a.report, cmd)
        return 0 if r["identical_transcripts"] == r["clips"] else 1
    if a.out_dir is None:
        p.error("give OUT_DIR (or --check MANIFEST)")
    print(convert(a.ct2_dir, a.out_dir))
    return 0


def write_report(r: dict, stem: Path, command: str) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"command": command, **r}, ensure_ascii=False, indent=1) + "\n",
                                         encoding="utf-8")
    lines = [f"# CTranslate2 Whisper -> transformers: exactness on {r['clips']} dev clips", "",
             f"Command: `{command}`", "",
             f"- identical greedy transcripts (token ids): **{r['identical_transcripts']} / {r['clips']}**",
             f"- encoder output, largest absolute difference over all clips and frames: **{r['encoder_max_abs_diff']:.2e}** "
             f"(largest |output| {r['encoder_max_abs_value']:.1f}; float16 spacing there {r['float16_ulp_at_max']:.2e})",
             "- both run float32 arithmetic on the same float16 weights and the same log-mel input; the difference "
             "is summation order, far below one float16 step.", "",
             "| clip | same | encoder max diff | transcript |", "|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {Path(row['audio']).name} | {'yes' if row['same_tokens'] else 'NO'} | "
                     f"{row['encoder_max_abs_diff']:.1e} | {row['ct2']} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
