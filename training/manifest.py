"""The one manifest format: JSONL, one object per utterance.

    {"audio": "audio/a/a001.flac", "text": "정규화된 정답", "raw_text": "원문", "duration": 3.2,
     "speaker": "a", "gender": "female" | "male" | null, "age": "30" | null,
     "corpus": "ko-speech", "utt": "a001", ...extra keys such as "note" or "env"}

``audio`` is stored relative to the manifest's folder when the two share a directory below the
filesystem root (``data/ko-speech/train.jsonl`` -> ``../../../shared/data/ko-speech/audio/...``),
absolute otherwise; ``read_manifest`` always returns it absolute.
``text`` is ``speech.text.normalize_transcript`` output; ``raw_text`` is the corpus's own line.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator


from speech.models.gender import CHILD, LABELS
from speech.text import normalize_transcript, text_for_cer, unspelled_chars

GENDER_LABELS = LABELS + (CHILD,)   # class indices of the gender models: female 0, male 1, child 2

REQUIRED_KEYS = ("audio", "text", "raw_text", "duration", "speaker", "gender", "age", "corpus", "utt")
GENDERS = ("female", "male")


def iter_manifest(path: str | os.PathLike) -> Iterator[dict]:
    """Rows of a JSONL manifest one at a time, with ``audio`` resolved to an absolute path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    folder = path.resolve().parent
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object: {e}") from e
            missing = [k for k in ("audio", "text") if k not in row]
            if missing:
                raise ValueError(f"{path}:{n}: missing keys {missing}")
            row["audio"] = os.path.normpath(os.path.join(folder, row["audio"]))
            yield row


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSONL manifest, with ``audio`` resolved to an absolute path."""
    return list(iter_manifest(path))


def write_manifest(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSONL (UTF-8, Hangul unescaped), audio paths relative to the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.resolve().parent
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            row = dict(row)
            row["audio"] = _portable_path(os.path.abspath(row["audio"]), str(folder))
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # a half-written manifest never replaces a good one


def _portable_path(audio: str, folder: str) -> str:
    """Relative to ``folder`` when they share a directory below the filesystem root, else absolute."""
    try:
        common = os.path.commonpath([audio, folder])
    except ValueError:  # different drives
        return audio
    if os.path.dirname(common) == common:  # only the root in common: a relative path is fragile
        return audio
    return Path(os.path.relpath(audio, folder)).as_posix()


def normalize_gender(value) -> str | None:
    """'여', '여성', 'F', 'female', ... -> 'female'; '남', '남성', 'M', 'male' -> 'male'; else None."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in ("여", "여성", "여자", "f", "female", "w", "woman"):
        return "female"
    if v in ("남", "남성", "남자", "m", "male", "man"):
        return "male"
    return None


def label_name(row: dict) -> str:
    """female / male from the manifest's gender, or `child` for synthetic children."""
    if str(row.get("gender") or "").strip().lower() == CHILD:
        return CHILD
    g = normalize_gender(row.get("gender"))
    if g is None:
        raise ValueError(f"utterance {row.get('utt')} has no usable gender ({row.get('gender')!r})")
    return g


def label_of(row: dict, labels: tuple = GENDER_LABELS) -> int:
    """Class index; female and male keep indices 0 and 1 whether or not a model has `child`."""
    g = label_name(row)
    if g not in labels:
        raise ValueError(f"utterance {row.get('utt')} is {g!r}; this model's labels are {list(labels)}")
    return labels.index(g)


def filter_duration(rows: Iterable[dict], min_s: float | None = None, max_s: float | None = None) -> list[dict]:
    """Rows with ``min_s <= duration <= max_s``; a row without a duration fails any bound."""
    out = []
    for row in rows:
        d = row.get("duration")
        if min_s is not None and (d is None or d < min_s):
            continue
        if max_s is not None and (d is None or d > max_s):
            continue
        out.append(row)
    return out


def _weight(row: dict) -> float:
    d = row.get("duration")
    return float(d) if d else 1.0


def speaker_split(
    rows: list[dict],
    dev_fraction: float,
    seed: int = 0,
    stratify_gender: bool = True,
    group_key: str = "speaker",
) -> tuple[list[dict], list[dict]]:
    """Speaker-disjoint (train, dev) split, deterministic for a given seed.

    Speakers (``row[group_key]``) are shuffled with ``seed`` and moved to dev until dev holds
    ``dev_fraction`` of the audio (of each gender's audio when ``stratify_gender``). Every
    gender with at least two speakers gets at least one dev speaker and keeps at least one in
    train. Row order is preserved within each split.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    weight: dict[str, float] = defaultdict(float)
    gender: dict[str, str | None] = {}
    for row in rows:
        spk = str(row[group_key])
        weight[spk] += _weight(row)
        gender.setdefault(spk, row.get("gender") if stratify_gender else None)
    strata: dict[str | None, list[str]] = defaultdict(list)
    for spk in sorted(weight):
        strata[gender[spk]].append(spk)
    rng = random.Random(seed)
    dev_speakers: set[str] = set()
    for key in sorted(strata, key=lambda g: (g is None, g or "")):
        speakers = strata[key]
        rng.shuffle(speakers)
        target = dev_fraction * sum(weight[s] for s in speakers)
        taken = 0.0
        for spk in speakers[:-1]:  # the last one always stays in train
            if taken >= target:
                break
            dev_speakers.add(spk)
            taken += weight[spk]
    train = [r for r in rows if str(r[group_key]) not in dev_speakers]
    dev = [r for r in rows if str(r[group_key]) in dev_speakers]
    return train, dev


def sentence_overlap(train: Iterable[dict], dev: Iterable[dict]) -> list[str]:
    """Dev texts whose sentence (compared without spaces and punctuation) also occurs in train."""
    seen = {text_for_cer(r["text"]) for r in train}
    return sorted({r["text"] for r in dev if text_for_cer(r["text"]) in seen})


def remove_sentences(rows: Iterable[dict], texts: Iterable[dict] | Iterable[str]) -> list[dict]:
    """Rows whose sentence is not among ``texts`` (rows or strings), compared as in ``sentence_overlap``."""
    banned = {text_for_cer(t["text"] if isinstance(t, dict) else t) for t in texts}
    return [r for r in rows if text_for_cer(r["text"]) not in banned]


def summarize(rows: list[dict], name: str = "") -> str:
    """One line: speakers (by gender), utterances, minutes."""
    speakers = {r["speaker"]: r.get("gender") for r in rows}
    by_gender = defaultdict(int)
    for g in speakers.values():
        by_gender[g or "unknown"] += 1
    minutes = sum(r.get("duration") or 0.0 for r in rows) / 60
    genders = ", ".join(f"{n} {g}" for g, n in sorted(by_gender.items()))
    label = f"{name}: " if name else ""
    return f"{label}{len(speakers)} speakers ({genders}), {len(rows)} utterances, {minutes:.1f} min"


def add_duration_args(parser, min_default: float = 0.5, max_default: float = 20.0) -> None:
    """The ``--min-duration`` / ``--max-duration`` options every preparation script shares."""
    parser.add_argument("--min-duration", type=float, default=min_default,
                        help=f"drop utterances shorter than this many seconds (default {min_default})")
    parser.add_argument("--max-duration", type=float, default=max_default,
                        help=f"drop utterances longer than this many seconds (default {max_default})")



def decode_text_bytes(data: bytes, what: str = "text") -> str:
    """UTF-8 (with or without BOM) if it decodes, else CP949 (KsponSpeech and older AI-Hub files)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp949")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: neither UTF-8 nor CP949") from e


SKIP_UNSPELLED = "digits, Latin letters or symbols with no Hangul pronunciation"
SKIP_EMPTY = "nothing left after normalisation (noise or tags only)"


def target_text(raw: str, source: str) -> tuple[str | None, str | None]:
    """(normalised target, None), or (None, reason to skip the utterance)."""
    if unspelled_chars(raw, source):
        return None, SKIP_UNSPELLED
    text = normalize_transcript(raw, source)
    if not text:
        return None, SKIP_EMPTY
    return text, None


def finish(rows: list[dict], skipped: dict[str, int], args, name: str) -> list[dict]:
    """Duration filter, optional speaker-disjoint dev split, write, print the summary lines.

    ``args`` carries ``out``, ``min_duration``, ``max_duration`` and, optionally,
    ``dev_fraction``, ``dev_out`` and ``seed``.
    """
    kept = filter_duration(rows, args.min_duration, args.max_duration)
    if len(kept) < len(rows):
        skipped[f"duration outside [{args.min_duration}, {args.max_duration}] s"] = len(rows) - len(kept)
    for reason, n in sorted(skipped.items()):
        if n:
            print(f"{name}: skipped {n} utterances: {reason}")
    if not kept:
        raise SystemExit(f"{name}: no utterances left to write")
    dev_fraction = getattr(args, "dev_fraction", None)
    if dev_fraction:
        train, dev = speaker_split(kept, dev_fraction, seed=getattr(args, "seed", 0))
        dev_out = args.dev_out or str(Path(args.out).with_name(Path(args.out).stem + ".dev.jsonl"))
        if not dev:
            print(f"{name}: warning: the dev split is empty (too few speakers per gender)")
        write_manifest(args.out, train)
        write_manifest(dev_out, dev)
        overlap = sentence_overlap(train, dev)
        print(summarize(train, f"{name} train -> {args.out}"))
        print(summarize(dev, f"{name} dev -> {dev_out}"))
        print(f"{name}: {len(overlap)} distinct dev sentences also occur in train")
    else:
        write_manifest(args.out, kept)
        print(summarize(kept, f"{name} -> {args.out}"))
    return kept


def add_split_args(parser) -> None:
    """Optional speaker-disjoint dev split shared by the corpus scripts."""
    parser.add_argument("--dev-fraction", type=float, default=None,
                        help="also split off this fraction of the audio as a speaker-disjoint dev set")
    parser.add_argument("--dev-out", default=None,
                        help="dev manifest path (default: OUT with .dev.jsonl)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speaker split (default 0)")
