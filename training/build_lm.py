"""Build a token n-gram LM with KenLM for `speech.beam.BeamSearchDecoder`.

    python -m training.build_lm --text data/lm/corpus.txt --unit jamo --order 6 --out data/lm/jamo/lm.bin
    python -m training.build_lm --text data/lm/corpus.txt --tokenizer-from checkpoints/ds2-syllable \
        --order 4 --prune 0 0 1 1 --out data/lm/syllable/lm.bin

Each line is normalised (`speech.text.normalize_transcript`) and written in the acoustic model's
units, one KenLM "word" per token and `|` for the word break: "안녕 하세요" becomes
`안 녕 | 하 세 요` (syllable) or the conjoining jamo `ᄋ ᅡ ᆫ ᄂ ᅧ ᆼ | ...` (jamo). lmplz does the
estimation (modified Kneser-Ney; `--discount_fallback` for small corpora); a `.bin` output is
converted with build_binary. `lm.json` beside the LM records unit, order, n-gram counts, corpus
sizes and sources, and the decoder checks the unit against the tokenizer, so keep one LM per folder.

Units are not filtered by the tokenizer's vocabulary: a syllable the acoustic model cannot emit
stays an LM word (the decoder never asks for it) instead of being dropped and gluing its
neighbours into n-grams nobody said. The share of such tokens is reported as `oov_rate`.
KenLM binaries come from `training/build_kenlm.sh`.

`--words morpheme` or `--words eojeol` builds a word-level LM instead, for a lexicon-constrained
search: the LM's words are Kiwi's surface morphemes (kiwipiepy: each word cut where a morpheme
starts, so the pieces spell the word again: 먹었다 -> 먹 었 다, 했다 -> 했 다) or whole space-separated
words, and `lexicon.txt` beside the LM spells each LM word in the acoustic model's units
(`먹 ᄆ ᅥ ᆨ`). The decoder (speech.beam) then only writes words of the lexicon, scores each with
the word LM and `word_score`, and lets the word break `|` stand between any two of them (so a
morpheme LM never needs a space inside a word, and spacing comes from the acoustic model).
`--min-count N` keeps LM words seen at least N times in the lexicon.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from speech.beam import LM_INFO_NAME, LM_SPACE, MAX_LM_ORDER
from speech.bundle import CONFIG_NAME, load_bundle
from speech.text import JamoTokenizer, Tokenizer, decompose, tokenizer_from_dict
from training.lm_words import to_lm_words, word_lines

DEFAULT_KENLM_BIN = Path(os.environ.get("KENLM_BIN", Path.home() / ".cache" / "korean-speech" / "kenlm" / "bin"))
UNITS = ("jamo", "syllable")
WORDS = ("tokens", "morpheme", "eojeol")
LEXICON_NAME = "lexicon.txt"


def load_tokenizer(path) -> Tokenizer:
    """Tokenizer from a release (a folder, its config.json, or a Hub repo id: speech.bundle), or a
    JSON file that holds a `Tokenizer.to_dict()` (at the top or under any key)."""
    file = Path(path)
    if file.is_dir() or not file.exists() or file.name == CONFIG_NAME:
        tokenizer = load_bundle(str(path), weights=False).tokenizer
        if tokenizer is None:
            raise ValueError(f"{path} is a release without a tokenizer")
        return tokenizer
    d = json.loads(file.read_text(encoding="utf-8"))
    stack = [d]
    while stack:  # the tokenizer dict may sit at the top or under any key ("tokenizer", "labels", ...)
        node = stack.pop()
        if isinstance(node, dict):
            if "unit" in node and "tokens" in node:
                return tokenizer_from_dict(node)
            stack.extend(node.values())
    raise ValueError(f"{file} holds no tokenizer (a dict with 'unit' and 'tokens')")


def spelling(word: str, unit: str) -> list[str]:
    return list(decompose(word)) if unit == "jamo" else list(word)


def arpa_counts(arpa: Path) -> dict[int, int]:
    counts = {}
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"ngram (\d+)=(\d+)", line)
            if m:
                counts[int(m.group(1))] = int(m.group(2))
            elif line.startswith("\\1-grams:"):
                break
    return counts


def _run(cmd: list[str], **kw) -> None:
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        raise RuntimeError(f"{Path(cmd[0]).name} failed with exit code {r.returncode}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", nargs="+", required=True, type=Path, help="text files, one sentence per line")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokenizer-from", help="model folder or JSON holding the acoustic model's tokenizer")
    src.add_argument("--unit", choices=UNITS, help="token unit, when no model exists yet")
    p.add_argument("--order", type=int, required=True, help=f"n-gram order, 2..{MAX_LM_ORDER}")
    p.add_argument("--out", required=True, type=Path, help="lm.arpa or lm.bin (KenLM binary, smaller and faster to load)")
    p.add_argument("--prune", nargs="+", type=int, default=None,
                   help="lmplz --prune: per order, drop n-grams seen at most this often (unigrams must be 0), e.g. 0 0 1")
    p.add_argument("--quantize", type=int, default=0, help="build_binary trie quantisation bits (0 = none, 8 is common)")
    p.add_argument("--memory", default="20%", help="lmplz -S memory budget")
    p.add_argument("--kenlm-bin", type=Path, default=DEFAULT_KENLM_BIN)
    p.add_argument("--words", choices=WORDS, default="tokens",
                   help="LM words: the acoustic model's tokens (lexicon-free search), or Kiwi morphemes or whole "
                        "words with a lexicon (lexicon-constrained search)")
    p.add_argument("--min-count", type=int, default=1, help="--words morpheme/eojeol: lexicon words seen at least this often")
    p.add_argument("--workers", type=int, default=1, help="Kiwi threads (--words morpheme)")
    args = p.parse_args(argv)

    if not 2 <= args.order <= MAX_LM_ORDER:
        p.error(f"--order must be between 2 and {MAX_LM_ORDER} (the decoder's KenLM is compiled for {MAX_LM_ORDER}), got {args.order}")
    if args.out.suffix not in (".arpa", ".bin"):
        p.error(f"--out must end in .arpa or .bin, got {args.out}")
    if args.prune is not None and (args.prune[0] != 0 or len(args.prune) > args.order):
        p.error("--prune: the first value (unigrams) must be 0 and there is at most one value per order")
    if not 0 <= args.quantize <= 25:
        p.error("--quantize must be between 0 (none) and 25 bits")
    lmplz, build_binary = args.kenlm_bin / "lmplz", args.kenlm_bin / "build_binary"
    if not lmplz.exists() or (args.out.suffix == ".bin" and not build_binary.exists()):
        p.error(f"KenLM not found in {args.kenlm_bin}; run training/build_kenlm.sh (or pass --kenlm-bin)")
    for t in args.text:
        if not t.is_file():
            p.error(f"text file not found: {t}")

    if args.tokenizer_from:
        tokenizer = load_tokenizer(args.tokenizer_from)
    else:
        tokenizer = JamoTokenizer() if args.unit == "jamo" else None
    unit = tokenizer.unit if tokenizer is not None else args.unit
    vocab = set(tokenizer.tokens[2:]) if tokenizer is not None else None

    args.out.parent.mkdir(parents=True, exist_ok=True)
    sentences = tokens = oov = 0
    counts_by_word: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="build_lm_") as tmp:
        tmp = Path(tmp)
        words_file = tmp / "words.txt"
        with open(words_file, "w", encoding="utf-8") as out:
            for t in args.text:
                with open(t, encoding="utf-8") as f:
                    if args.words == "tokens":
                        for line in f:
                            words = to_lm_words(line, unit)
                            if not words:
                                continue
                            out.write(words + "\n")
                            sentences += 1
                            units = [w for w in words.split(" ") if w != LM_SPACE]
                            tokens += len(units) + words.count(f" {LM_SPACE} ")
                            if vocab is not None:
                                oov += sum(u not in vocab for u in units)
                    else:
                        for words in word_lines(f, args.words, args.workers):
                            if not words:
                                continue
                            out.write(" ".join(words) + "\n")
                            sentences += 1
                            tokens += len(words)
                            counts_by_word.update(words)
        if sentences == 0:
            p.error("the text files hold no Hangul sentences")
        print(f"{sentences} sentences, {tokens} " + (f"{unit} tokens (word breaks included)" if args.words == "tokens"
                                                     else f"{args.words} words, {len(counts_by_word)} distinct"))

        arpa = args.out if args.out.suffix == ".arpa" else tmp / "lm.arpa"
        cmd = [str(lmplz), "-o", str(args.order), "--discount_fallback", "-S", args.memory, "-T", str(tmp),
               "--text", str(words_file), "--arpa", str(arpa)]
        if args.prune:
            cmd += ["--prune", *map(str, args.prune)]
        _run(cmd)
        counts = arpa_counts(arpa)
        if args.out.suffix == ".bin":
            cmd = [str(build_binary), "-S", args.memory, "-T", str(tmp)]
            if args.quantize:
                cmd += ["-q", str(args.quantize), "-b", str(args.quantize)]
            _run(cmd + ["trie", str(arpa), str(args.out)])

    sources = []
    for t in args.text:
        info = Path(str(t) + ".json")  # the summary training/lm_corpus.py writes
        entry = {"file": str(t)}
        if info.exists():
            entry["corpus"] = json.loads(info.read_text(encoding="utf-8"))
        sources.append(entry)
    lexicon = None
    if args.words != "tokens":
        # The lexicon: every LM word seen often enough whose spelling the acoustic model can emit.
        kept = [w for w, c in counts_by_word.most_common() if c >= args.min_count
                and (vocab is None or all(u in vocab for u in spelling(w, unit)))]
        with open(args.out.with_name(LEXICON_NAME), "w", encoding="utf-8") as f:
            for w in kept:
                f.write(w + " " + " ".join(spelling(w, unit)) + "\n")
        covered = sum(counts_by_word[w] for w in kept)
        lexicon = {"file": LEXICON_NAME, "words": len(kept), "min_count": args.min_count,
                   "text_coverage": covered / max(1, tokens)}
        print(f"lexicon: {len(kept)} words, {100 * lexicon['text_coverage']:.2f}% of the text's words")
    info = {
        "format": "kenlm-" + args.out.suffix[1:],
        "unit": unit,
        "words": args.words,
        "lexicon": lexicon,
        "word_break": LM_SPACE,
        "order": args.order,
        "ngrams": {str(k): v for k, v in sorted(counts.items())},
        "prune": args.prune,
        "quantize": args.quantize,
        "sentences": sentences,
        "tokens": tokens,
        "tokenizer": str(args.tokenizer_from) if args.tokenizer_from else None,
        "oov_rate": (oov / tokens) if vocab is not None and tokens else None,
        "size_bytes": args.out.stat().st_size,
        "sources": sources,
        "built_with": "KenLM lmplz (modified Kneser-Ney, --discount_fallback) via training/build_lm.py",
    }
    info_path = args.out.with_name(LM_INFO_NAME)
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), n-grams {counts}, and {info_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
