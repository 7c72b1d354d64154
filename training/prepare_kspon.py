"""KsponSpeech (AI-Hub 한국어 음성) -> JSONL manifest.

Two inputs, same transcription conventions (see ``speech.text``):

* ``--root``: the corpus tree, ``KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm`` with a
  ``.txt`` transcript beside each ``.pcm`` (CP949 in the original release; UTF-8 also accepted).
* ``--trn``: a list file, one ``relative/path.pcm :: transcript`` per line (the official
  ``train.trn``, ``dev.trn``, ``eval_clean.trn``, ``eval_other.trn``); paths are relative to
  ``--audio-root``. The encoding (UTF-8 or CP949) is detected per file.

Audio is headerless 16 kHz 16-bit mono little-endian PCM: duration = bytes / 32000.

KsponSpeech gives no speaker ids. ``speaker`` is the session folder (``KsponSpeech_0001``, about
1,000 consecutive files of a few conversations) as a proxy group, and ``speaker_is_proxy`` says
so: a split by it keeps a conversation on one side but does not guarantee disjoint speakers.
Gender and age are unknown (null).

    python -m training.prepare_kspon --root /data/KsponSpeech --out data/kspon/train.jsonl
    python -m training.prepare_kspon --trn /data/KsponSpeech_scripts/eval_clean.trn \\
        --audio-root /data/KsponSpeech_eval --out data/kspon/eval_clean.jsonl
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from speech.audio import audio_duration
from training.manifest import add_duration_args, add_split_args, decode_text_bytes, finish, target_text

CORPUS = "KsponSpeech"


def _row(pcm: Path, raw: str, skipped: Counter) -> dict | None:
    raw = " ".join(raw.split())
    text, reason = target_text(raw, "kspon")
    if reason:
        skipped[reason] += 1
        return None
    return {
        "audio": str(pcm), "text": text, "raw_text": raw, "duration": round(audio_duration(pcm), 3),
        "speaker": pcm.parent.name, "speaker_is_proxy": True, "gender": None, "age": None,
        "corpus": CORPUS, "utt": pcm.stem,
    }


def rows_from_tree(root: Path, skipped: Counter) -> list[dict]:
    rows = []
    for pcm in sorted(root.rglob("*.pcm")):
        txt = pcm.with_suffix(".txt")
        if not txt.is_file():
            skipped["no .txt transcript beside the .pcm"] += 1
            continue
        row = _row(pcm, decode_text_bytes(txt.read_bytes(), str(txt)), skipped)
        if row:
            rows.append(row)
    return rows


def rows_from_trn(trn: Path, audio_root: Path, skipped: Counter) -> list[dict]:
    rows = []
    for n, line in enumerate(decode_text_bytes(trn.read_bytes(), str(trn)).splitlines(), 1):
        if not line.strip():
            continue
        if " :: " not in line:
            raise ValueError(f"{trn}:{n}: expected 'path.pcm :: transcript', got {line[:80]!r}")
        rel, raw = line.split(" :: ", 1)
        pcm = audio_root / rel.strip()
        if not pcm.is_file():
            skipped["audio file listed in the .trn not found"] += 1
            continue
        row = _row(pcm, raw, skipped)
        if row:
            rows.append(row)
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", type=Path, help="KsponSpeech tree with .pcm and .txt files")
    src.add_argument("--trn", type=Path, help="KsponSpeech .trn list ('path.pcm :: transcript')")
    p.add_argument("--audio-root", type=Path, default=None,
                   help="folder the .trn paths are relative to (default: the .trn's folder)")
    p.add_argument("--out", required=True, help="manifest to write (.jsonl); the train part with --dev-fraction")
    add_duration_args(p)
    add_split_args(p)
    args = p.parse_args(argv)

    skipped: Counter = Counter()
    if args.root is not None:
        if not args.root.is_dir():
            p.error(f"--root {args.root}: folder not found")
        rows = rows_from_tree(args.root, skipped)
    else:
        if not args.trn.is_file():
            p.error(f"--trn {args.trn}: file not found")
        audio_root = args.audio_root or args.trn.parent
        if not audio_root.is_dir():
            p.error(f"--audio-root {audio_root}: folder not found")
        rows = rows_from_trn(args.trn, audio_root, skipped)
    return finish(rows, skipped, args, CORPUS)


if __name__ == "__main__":
    main()
