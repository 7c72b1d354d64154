"""One-off check: speech.speaker gives the same embeddings as the `resemblyzer` package itself.

    pip download resemblyzer==0.1.4 --no-deps -d /tmp/rz && unzip -q /tmp/rz/*.whl -d /tmp/rz/pkg
    python -m training.check_speaker_parity --resemblyzer /tmp/rz/pkg --out results/speaker_parity.md

resemblyzer is not a dependency: the unpacked wheel is put on sys.path, with its import-time needs
that this check does not use stubbed (webrtcvad only serves its silence trimming, which is not
compared; scipy.ndimage.morphology was removed from SciPy). Both sides get the same level-raised
waveform (resemblyzer.audio.normalize_volume, increase only, -30 dBFS) and run embed_utterance.
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

from speech.audio import load_audio
from speech.speaker import SpeakerEncoder


def import_resemblyzer(folder: str):
    sys.modules.setdefault("webrtcvad", types.ModuleType("webrtcvad"))
    try:
        import scipy.ndimage.morphology  # noqa: F401
    except ImportError:
        import scipy.ndimage

        m = types.ModuleType("scipy.ndimage.morphology")
        m.binary_dilation = scipy.ndimage.binary_dilation
        sys.modules["scipy.ndimage.morphology"] = m
    sys.path.insert(0, folder)
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    return VoiceEncoder(device="cpu", verbose=False), normalize_volume


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resemblyzer", required=True, help="folder holding the unpacked resemblyzer wheel")
    p.add_argument("--clips", nargs="*", default=None)
    p.add_argument("--out", default="results/speaker_parity.md")
    args = p.parse_args(argv)
    root = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    clips = args.clips or sorted(str(x) for x in root.glob("*/*.flac")) + [str(root / "examples" / "family_conversation.ogg")]
    theirs, normalize_volume = import_resemblyzer(args.resemblyzer)
    ours = SpeakerEncoder.load()
    rows = []
    for c in clips:
        wav = normalize_volume(load_audio(c), -30, increase_only=True).astype(np.float32)
        a = theirs.embed_utterance(wav)
        b = ours.embed_utterance(wav)
        rows.append((Path(c).name, len(wav) / 16000, float(a @ b), float(np.abs(a - b).max())))
        print(rows[-1], flush=True)
    lines = ["# Speaker encoder parity: speech.speaker vs the resemblyzer 0.1.4 package", "",
             f"`python -m training.check_speaker_parity --resemblyzer DIR` on {len(rows)} clips "
             f"(tests/fixtures). Ours: checkpoints/speaker-resemblyzer (float16 weights, float32 compute); "
             f"theirs: VoiceEncoder with pretrained.pt (float32), librosa mel front end.", "",
             "| clip | seconds | cosine | max abs difference |", "|---|---|---|---|"]
    lines += [f"| {n} | {d:.1f} | {c:.6f} | {m:.2e} |" for n, d, c, m in rows]
    lines += ["", f"Worst cosine: {min(r[2] for r in rows):.6f}."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
