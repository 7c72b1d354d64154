"""AI-Hub 자유대화 음성 (free conversation speech) -> JSONL manifest.

One JSON label per wav, anywhere under ``--root``::

    {"발화정보": {"stt": "...", "fileNm": "xxx.wav", "recrdTime": "5.08", ...},
     "대화정보": {"recrdEnvrn": "실내", "cityCode": ..., ...},
     "녹음자정보": {"gender": "여", "recorderId": "...", "age": 37}}

The wav is looked up beside the JSON (by ``fileNm``, then by the JSON's own stem), then by
``fileNm`` anywhere under ``--audio-root``. Gender comes as 여/남, 여성/남성 or F/M. Durations are
read from the wav header. Transcripts use the AI-Hub tags handled by ``speech.text``; utterances
with ``&name&`` personal-information masks are skipped unless ``--keep-masked`` (the audio may
still say the masked word).

    python -m training.prepare_aihub --root /data/자유대화음성/Training --out data/aihub/train.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from speech.text import masked_spans
from speech.audio import audio_duration
from training.manifest import (add_duration_args, add_split_args, decode_text_bytes, finish,
                               normalize_gender, target_text)

CORPUS = "aihub-free-conversation"
AUDIO_SUFFIXES = (".wav", ".WAV", ".flac", ".pcm")


class _AudioIndex:
    """File name -> path under the audio root, built on first use (it walks the whole tree)."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, Path] | None = None

    def find(self, name: str) -> Path | None:
        if self._by_name is None:
            self._by_name = {}
            for f in sorted(self.root.rglob("*")):
                if f.suffix in AUDIO_SUFFIXES:
                    self._by_name.setdefault(f.name, f)
                    self._by_name.setdefault(f.stem, f)
        return self._by_name.get(name) or self._by_name.get(Path(name).stem)


def _find_audio(label: Path, file_nm: str, index: _AudioIndex) -> Path | None:
    candidates = []
    if file_nm:
        candidates.append(label.parent / file_nm)
        candidates += [label.parent / (Path(file_nm).stem + s) for s in AUDIO_SUFFIXES]
    candidates += [label.with_suffix(s) for s in AUDIO_SUFFIXES]
    for c in candidates:
        if c.is_file():
            return c
    return index.find(file_nm) if file_nm else None


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, required=True, help="folder tree with the JSON labels")
    p.add_argument("--audio-root", type=Path, default=None, help="folder tree with the wavs (default: --root)")
    p.add_argument("--out", required=True, help="manifest to write (.jsonl); the train part with --dev-fraction")
    p.add_argument("--keep-masked", action="store_true",
                   help="keep utterances with &name& masks (the mask is removed from the target)")
    add_duration_args(p)
    add_split_args(p)
    args = p.parse_args(argv)
    if not args.root.is_dir():
        p.error(f"--root {args.root}: folder not found")
    audio_root = args.audio_root or args.root
    if not audio_root.is_dir():
        p.error(f"--audio-root {audio_root}: folder not found")

    index = _AudioIndex(audio_root)
    skipped: Counter = Counter()
    rows = []
    labels = sorted(args.root.rglob("*.json"))
    if not labels:
        raise SystemExit(f"no JSON labels under {args.root}")
    for label in labels:
        try:
            d = json.loads(decode_text_bytes(label.read_bytes(), str(label)))
            utt, conv, rec = d["발화정보"], d.get("대화정보") or {}, d.get("녹음자정보") or {}
            raw = str(utt["stt"])
        except (ValueError, KeyError, TypeError):
            skipped["JSON without 발화정보.stt (not an utterance label)"] += 1
            continue
        file_nm = str(utt.get("fileNm") or "").strip()
        audio = _find_audio(label, file_nm, index)
        if audio is None:
            skipped["audio file not found"] += 1
            continue
        if masked_spans(raw) and not args.keep_masked:
            skipped["personal-information mask (&...&) in the transcript"] += 1
            continue
        raw = " ".join(raw.split())
        text, reason = target_text(raw, "aihub")
        if reason:
            skipped[reason] += 1
            continue
        age = rec.get("age")
        rows.append({
            "audio": str(audio), "text": text, "raw_text": raw, "duration": round(audio_duration(audio), 3),
            "speaker": str(rec.get("recorderId") or f"unknown-{label.parent.name}"),
            "gender": normalize_gender(rec.get("gender")),
            "age": None if age in (None, "") else str(age),
            "corpus": CORPUS, "utt": label.stem, "env": conv.get("recrdEnvrn"),
        })
    return finish(rows, skipped, args, CORPUS)


if __name__ == "__main__":
    main()
