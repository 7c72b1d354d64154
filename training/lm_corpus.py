"""Gather Korean text for the n-gram LM: one normalised sentence per line.

    python -m training.lm_corpus --out data/lm/corpus.txt \
        --konlpy auto --deb auto --manifest data/ko-speech/train.jsonl \
        --exclude-manifest data/ko-speech/dev.jsonl

Sources:
* `--konlpy`: the text corpora bundled in the konlpy wheel (kolaw: the constitution, kobill:
  bills). Read straight from the wheel, nothing is installed; `auto` downloads the wheel with pip
  into the cache.
* `--deb`: Korean documentation from Debian packages (debian-faq-ko, libreoffice-help-ko), HTML
  read from the .deb; `auto` fetches them with `apt-get download` into the cache.
* `--manifest`: our training transcripts (JSONL, field "text").
* `--text`: plain text files (`.xz` read as is), one document per line, e.g. the NSMC movie
  reviews in ../shared/data/text/nsmc-reviews.txt.xz (CC0).

Bare jamo (ㅋㅋ, ㅠㅠ, ㅡㅡ: letters not inside a syllable, common in informal text) become a
word break before anything else, so they neither reach the LM nor glue their neighbours into one
word ("재밌다ㅋㅋ최고" -> "재밌다 최고"); the LM must not reward the stray jamo a speech model
may emit. Sentences that held some are counted as `jamo_cleaned`.

Every line is split into sentences, normalised with `speech.text.normalize_transcript`, and kept
only if it had no digits, Latin letters or read-aloud symbols (`unspelled_chars`): those would
be deleted by normalisation and leave word sequences nobody says, the same rule the data
preparation applies to transcripts. Sentences of `--exclude-manifest` (dev/test) are removed:
exact matches ignoring spaces, and any line that contains a long (>= 8 syllables) evaluation
sentence. A summary with counts per source is written to `<out>.json`.
"""
from __future__ import annotations

import argparse
import html.parser
import io
import json
import lzma
import re
import subprocess
import sys
import tarfile
import unicodedata
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from speech.text import normalize_transcript, unspelled_chars

CACHE = Path.home() / ".cache" / "korean-speech" / "lmtext"
DEB_PACKAGES = ("debian-faq-ko", "libreoffice-help-ko")
MIN_SYLLABLES = 2
CONTAINS_MIN = 8  # evaluation sentences at least this long are also excluded as substrings

_SENTENCE_END = re.compile(r"(?<=[.?!。])\s+|\n+")
# Hangul letters outside syllables: compatibility jamo, conjoining jamo and their extensions.
_BARE_JAMO = re.compile("[\u1100-\u11ff\u3131-\u318e\ua960-\ua97f\ud7b0-\ud7ff]+")


def split_sentences(text: str) -> Iterator[str]:
    for part in _SENTENCE_END.split(text):
        part = part.strip()
        if part:
            yield part


# --- sources -------------------------------------------------------------------------------

def _pip_download(package: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{package}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        package, "-d", str(dest)], check=True)
        found = sorted(dest.glob(f"{package}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {package} left no wheel in {dest}")
    return found[-1]


def konlpy_texts(wheel: Path) -> Iterator[tuple[str, str]]:
    """(name, text) of each konlpy/data/corpus/**.txt file in the wheel."""
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if name.startswith("konlpy/data/corpus/") and name.endswith(".txt"):
                yield name, z.read(name).decode("utf-8", errors="replace")


class _HTMLText(html.parser.HTMLParser):
    _SKIP = {"script", "style", "pre", "code", "tt", "kbd", "samp"}
    _BLOCK = {"p", "div", "br", "li", "td", "th", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "title"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data.replace("\n", " "))


def html_text(source: str) -> str:
    parser = _HTMLText()
    parser.feed(source)
    return "".join(parser.parts)


def _deb_members(deb: Path) -> Iterator[tuple[str, bytes]]:
    """Files of a .deb's data archive (an ar archive holding data.tar.*)."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not a Debian package")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar:
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()


def deb_texts(deb: Path) -> Iterator[tuple[str, str]]:
    for name, data in _deb_members(deb):
        if name.endswith(".html"):
            yield name, html_text(data.decode("utf-8", errors="replace"))


def _apt_download(package: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=dest, check=True)
        found = sorted(dest.glob(f"{package}_*.deb"))
    if not found:
        raise FileNotFoundError(f"apt-get download {package} left no .deb in {dest}")
    return found[-1]


def text_file_texts(path: Path) -> Iterator[tuple[str, str]]:
    """Each line of a plain text file (`.xz` decompressed on the fly)."""
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield str(path), line


def manifest_texts(path: Path) -> Iterator[tuple[str, str]]:
    from training.manifest import read_manifest

    for row in read_manifest(path):
        yield str(path), row["text"]


# --- filtering -----------------------------------------------------------------------------

def _key(sentence: str) -> str:
    return sentence.replace(" ", "")


class Excluder:
    """Removes evaluation sentences: exact (spaces ignored) and, for long ones, as substrings."""

    def __init__(self, sentences: Iterable[str]):
        self.exact: set[str] = set()
        self.by_prefix: dict[str, list[str]] = {}
        for s in sentences:
            k = _key(s)
            if not k:
                continue
            self.exact.add(k)
            if len(k) >= CONTAINS_MIN:
                self.by_prefix.setdefault(k[:CONTAINS_MIN], []).append(k)

    def __len__(self) -> int:
        return len(self.exact)

    def excludes(self, sentence: str) -> bool:
        k = _key(sentence)
        if k in self.exact:
            return True
        if self.by_prefix:
            for i in range(len(k) - CONTAINS_MIN + 1):
                for cand in self.by_prefix.get(k[i:i + CONTAINS_MIN], ()):
                    if k.startswith(cand, i):
                        return True
        return False


def strip_bare_jamo(text: str) -> str:
    """Runs of jamo outside syllables -> one space (NFC first, so decomposed syllables survive)."""
    return _BARE_JAMO.sub(" ", unicodedata.normalize("NFC", text))


def clean_sentences(text: str, source: str = "plain", counts: Counter | None = None) -> Iterator[tuple[str, str]]:
    """(status, sentence) for each sentence of text; status 'ok', 'unspelled' or 'short'.
    `counts["jamo_cleaned"]` counts the sentences that lost bare jamo."""
    for raw in split_sentences(text):
        clean = strip_bare_jamo(raw)
        if counts is not None and clean != unicodedata.normalize("NFC", raw):
            counts["jamo_cleaned"] += 1
        if unspelled_chars(clean, source):
            yield "unspelled", raw
            continue
        s = normalize_transcript(clean, source)
        if len(_key(s)) < MIN_SYLLABLES:
            yield "short", s
        else:
            yield "ok", s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="text file, one sentence per line")
    p.add_argument("--konlpy", help="konlpy wheel (.whl), or 'auto' to pip-download it into the cache")
    p.add_argument("--deb", nargs="*", default=[], help=f".deb files, or 'auto' for {', '.join(DEB_PACKAGES)}")
    p.add_argument("--manifest", nargs="*", default=[], type=Path, help="training manifests (JSONL, field 'text')")
    p.add_argument("--text", nargs="*", default=[], type=Path,
                   help="plain text files (.xz allowed), one document per line, e.g. ../shared/data/text/nsmc-reviews.txt.xz")
    p.add_argument("--exclude-manifest", nargs="*", default=[], type=Path,
                   help="dev/test manifests whose sentences must not reach the LM")
    p.add_argument("--no-dedup", action="store_true",
                   help="keep repeated sentences of text sources (default: once per source; manifests always keep "
                        "repeats, they are how often people say things)")
    p.add_argument("--cache", type=Path, default=CACHE)
    args = p.parse_args(argv)

    if not (args.konlpy or args.deb or args.manifest or args.text):
        p.error("no source given: pass --konlpy, --deb, --text and/or --manifest")
    for m in args.manifest + args.exclude_manifest:
        if not m.exists():
            p.error(f"manifest not found: {m}")
    for t in args.text:
        if not t.is_file():
            p.error(f"text file not found: {t}")

    from training.manifest import read_manifest

    excluder = Excluder(normalize_transcript(row["text"]) for m in args.exclude_manifest for row in read_manifest(m))
    print(f"excluding {len(excluder)} evaluation sentences from {[str(m) for m in args.exclude_manifest]}")

    sources: list[tuple[str, Iterable[tuple[str, str]], bool]] = []  # (label, (name, text)..., dedup)
    if args.konlpy:
        wheel = _pip_download("konlpy", args.cache / "konlpy") if args.konlpy == "auto" else Path(args.konlpy)
        sources.append((f"konlpy:{wheel.name}", konlpy_texts(wheel), not args.no_dedup))
    debs = [d for d in args.deb if d != "auto"]
    if "auto" in args.deb:
        debs += [str(_apt_download(pkg, args.cache / "deb")) for pkg in DEB_PACKAGES]
    for deb in debs:
        sources.append((f"deb:{Path(deb).name}", deb_texts(Path(deb)), not args.no_dedup))
    for t in args.text:
        sources.append((f"text:{t.name}", text_file_texts(t), not args.no_dedup))
    for m in args.manifest:
        sources.append((f"manifest:{m}", manifest_texts(m), False))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"out": str(args.out), "exclude_manifests": [str(m) for m in args.exclude_manifest],
               "excluded_eval_sentences": len(excluder), "sources": []}
    with open(args.out, "w", encoding="utf-8") as f:
        for label, texts, dedup in sources:
            counts: Counter[str] = Counter()
            seen: set[str] = set()
            for _name, text in texts:
                for status, s in clean_sentences(text, counts=counts):
                    if status == "ok" and excluder.excludes(s):
                        status = "excluded"
                    elif status == "ok" and dedup:
                        if s in seen:
                            status = "duplicate"
                        seen.add(s)
                    counts[status] += 1
                    if status == "ok":
                        counts["syllables"] += len(_key(s))
                        f.write(s + "\n")
            entry = {"source": label, "sentences": counts["ok"], "syllables": counts["syllables"],
                     "dropped": {k: counts[k] for k in ("unspelled", "short", "excluded", "duplicate")},
                     "jamo_cleaned": counts["jamo_cleaned"]}
            summary["sources"].append(entry)
            print(json.dumps(entry, ensure_ascii=False))
    summary["sentences"] = sum(e["sentences"] for e in summary["sources"])
    summary["syllables"] = sum(e["syllables"] for e in summary["sources"])
    Path(str(args.out) + ".json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {summary['sentences']} sentences ({summary['syllables']} syllables) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
