"""Package resemblyzer's pretrained voice encoder as a release folder (safetensors + config.json).

    pip download resemblyzer==0.1.4 --no-deps -d /tmp/rz
    python -m training.convert_resemblyzer --wheel /tmp/rz/Resemblyzer-0.1.4-py3-none-any.whl \
        --out checkpoints/speaker-resemblyzer --dtype float16

`pretrained.pt` is read with torch.load(weights_only=True) (tensors only, no code runs); its
`model_state` keys (lstm.*, linear.*) are the names of speech.speaker.SpeakerNet. With --dtype
float16 the release is checked against the float32 weights on real speech (cosine of the
embeddings) before it is written; --check-audio names the clips.
"""
from __future__ import annotations

import argparse
import io
import zipfile

import torch

from speech.bundle import save_release
from speech.speaker import MODEL_TYPE, SpeakerDims, SpeakerNet, resemblyzer_features
from training.diarization import release_dtype


def read_state(wheel: str = None, pt: str = None) -> dict:
    if wheel:
        with zipfile.ZipFile(wheel) as z:
            raw = z.read("resemblyzer/pretrained.pt")
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    else:
        ckpt = torch.load(pt, map_location="cpu", weights_only=True)
    # similarity_weight/bias are GE2E training-loss scalars; resemblyzer drops them too (strict=False).
    return {k: v for k, v in ckpt["model_state"].items() if k.startswith(("lstm.", "linear."))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", help="Resemblyzer-*.whl (pip download resemblyzer --no-deps)")
    src.add_argument("--pt", help="an extracted pretrained.pt")
    p.add_argument("--out", default="checkpoints/speaker-resemblyzer")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--min-cosine", type=float, default=0.999, help="float16 parity needed on every check clip")
    p.add_argument("--check-audio", nargs="*", default=None)
    args = p.parse_args(argv)

    state = read_state(args.wheel, args.pt)
    dims = SpeakerDims(n_mels=state["lstm.weight_ih_l0"].shape[1], hidden=state["lstm.weight_hh_l0"].shape[1],
                       embedding=state["linear.weight"].shape[0],
                       layers=sum(1 for k in state if k.startswith("lstm.weight_ih_l")))
    feats = resemblyzer_features(dims.n_mels)
    dtype, worst = release_dtype(args.dtype, args.min_cosine, SpeakerNet, dims, state, feats, args.check_audio)
    n_params = sum(v.numel() for v in state.values())
    config = {
        "model_type": MODEL_TYPE,
        "name": "speaker-resemblyzer",
        "dims": dims.to_dict(),
        "features": feats.to_dict(),
        "parameters": n_params,
        "provenance": {
            "source": "resemblyzer 0.1.4 (PyPI wheel, resemblyzer/pretrained.pt), by Resemble AI / Corentin Jemine",
            "url": "https://github.com/resemble-ai/Resemblyzer",
            "training": "GE2E speaker verification (Wan et al. 2018) on LibriSpeech, VoxCeleb1 and VoxCeleb2 "
                        "(per the package's README); not trained by this project",
            "converted_by": "python -m training.convert_resemblyzer --wheel Resemblyzer-0.1.4-py3-none-any.whl "
                            f"--dtype {args.dtype}",
            "stored_dtype": args.dtype,
            "float16_worst_cosine": round(worst, 6),
        },
        "license": "Apache-2.0",
    }
    out = save_release(args.out, state, config, dtype=dtype)
    print(f"wrote {out} ({n_params:,} parameters, {args.dtype})")


if __name__ == "__main__":
    main()
