"""Beam search (speech.beam) against greedy decoding, and with a KenLM built by training/build_lm.py."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("flashlight.lib.text.decoder", reason="flashlight-text is not installed")

from speech.beam import BeamSearchDecoder  # noqa: E402
from speech.decoding import GreedyDecoder  # noqa: E402
from speech.text import JamoTokenizer, build_syllable_tokenizer  # noqa: E402
from training import build_lm, lm_words  # noqa: E402
from training.lm_corpus import Excluder, clean_sentences  # noqa: E402

SENTENCES = ["사과 먹어", "사고 났어", "나는 사과를 좋아해", "오늘 사과 먹어", "사과 먹어 볼래"]
HAVE_KENLM = (build_lm.DEFAULT_KENLM_BIN / "lmplz").exists() and (build_lm.DEFAULT_KENLM_BIN / "build_binary").exists()
needs_kenlm = pytest.mark.skipif(
    not HAVE_KENLM, reason=f"KenLM lmplz/build_binary not in {build_lm.DEFAULT_KENLM_BIN}; run training/build_kenlm.sh")


def tokenizer_for(unit: str):
    return JamoTokenizer() if unit == "jamo" else build_syllable_tokenizer(SENTENCES)


def peaked_log_probs(T: int, V: int, seed: int) -> torch.Tensor:
    """A random path with a clear winner each frame (blank-heavy, with repeats), as a trained model gives."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, V, generator=g)
    path = torch.randint(0, V, (T,), generator=g)
    path[torch.rand(T, generator=g) < 0.4] = 0
    logits[torch.arange(T), path] += 8.0
    return logits.log_softmax(-1)


def emissions_for(tokenizer, text: str, ambiguous: dict[int, tuple[int, int]] = {}) -> torch.Tensor:
    """Two frames per token and a blank between tokens. ambiguous[k] = (a, b): token k's frames
    give a 0.55 and b 0.45, so the acoustics slightly prefer a."""
    ids = tokenizer.encode(text)
    V = len(tokenizer)
    rows = []
    for k, i in enumerate(ids):
        for _ in range(2):
            p = torch.full((V,), 1e-4)
            if k in ambiguous:
                a, b = ambiguous[k]
                p[a], p[b] = 0.55, 0.45
            else:
                p[i] = 1.0
            rows.append(p)
        blank = torch.full((V,), 1e-4)
        blank[0] = 1.0
        rows.append(blank)
    probs = torch.stack(rows)
    return (probs / probs.sum(-1, keepdim=True)).log()


@pytest.mark.parametrize("unit", ["jamo", "syllable"])
def test_beam_without_lm_equals_greedy_on_peaked_input(unit):
    tok = tokenizer_for(unit)
    beam, greedy = BeamSearchDecoder(tok, beam_size=8), GreedyDecoder()
    assert beam.name == "beam"
    for seed, T in enumerate([0, 1, 2, 3, 17, 80, 200]):
        lp = peaked_log_probs(T, len(tok), seed)
        b, g = beam.decode(lp), greedy.decode(lp)
        assert b.ids == g.ids, (T, seed)
        assert b.frames == g.frames, (T, seed)
        assert math.isclose(b.score, g.score, rel_tol=1e-4, abs_tol=1e-3)


def test_frames_are_monotonic_and_inside_the_utterance():
    tok = JamoTokenizer()
    beam = BeamSearchDecoder(tok, beam_size=16)
    for seed in range(5):
        lp = torch.randn(120, len(tok), generator=torch.Generator().manual_seed(seed)).mul(3).log_softmax(-1)
        h = beam.decode(lp)
        assert len(h.frames) == len(h.ids)
        assert all(0 <= f < 120 for f in h.frames)
        assert all(a < b for a, b in zip(h.frames, h.frames[1:]))
        assert 0 not in h.ids


def test_rejects_wrong_shapes():
    tok = JamoTokenizer()
    beam = BeamSearchDecoder(tok)
    with pytest.raises(ValueError, match="tokenizer has"):
        beam.decode(torch.zeros(5, len(tok) + 1))
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        beam.decode(torch.zeros(1, 5, len(tok)))


@pytest.fixture(scope="module", params=["jamo", "syllable"])
def lm(request, tmp_path_factory):
    """(tokenizer, lm path) for an LM built from SENTENCES, where 사과 is frequent and 사고 rare."""
    if not HAVE_KENLM:
        pytest.skip(f"KenLM lmplz/build_binary not in {build_lm.DEFAULT_KENLM_BIN}; run training/build_kenlm.sh")
    unit = request.param
    tmp = tmp_path_factory.mktemp(f"lm_{unit}")
    text = tmp / "text.txt"
    text.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    out = tmp / unit / "lm.bin"
    build_lm.main(["--text", str(text), "--unit", unit, "--order", "3", "--out", str(out), "--memory", "64M"])
    return tokenizer_for(unit), out


@needs_kenlm
def test_lm_moves_an_ambiguous_decode_to_the_lm_sentence(lm):
    tok, path = lm
    # The acoustics prefer 사고 먹어 (55:45 on the one token that differs); the LM has only seen
    # 사과 followed by 먹어. Without the LM the beam agrees with greedy; with it, 사과 먹어.
    target = "사고 먹어"
    ids = tok.encode(target)
    alt = tok.encode("사과 먹어")
    diff = [k for k, (a, b) in enumerate(zip(ids, alt)) if a != b]
    assert len(diff) == 1 and len(ids) == len(alt)
    k = diff[0]
    lp = emissions_for(tok, target, {k: (ids[k], alt[k])})

    greedy = GreedyDecoder().decode(lp)
    assert tok.decode(greedy.ids) == "사고 먹어"
    plain = BeamSearchDecoder(tok, beam_size=16).decode(lp)
    assert plain.ids == greedy.ids

    decoder = BeamSearchDecoder(tok, lm_path=path, beam_size=16, lm_weight=1.0)
    assert decoder.name == "beam+lm"
    h = decoder.decode(lp)
    assert tok.decode(h.ids) == "사과 먹어"
    assert h.extra["lm_score"] < 0
    assert all(a < b for a, b in zip(h.frames, h.frames[1:]))
    assert h.frames == greedy.frames  # the LM changed a label, not where tokens were emitted
    assert decoder.decode(lp[:0]).ids == [] and len(decoder.decode(lp[:1]).ids) <= 1


@needs_kenlm
def test_lm_unit_must_match_the_tokenizer(lm):
    tok, path = lm
    other = build_syllable_tokenizer(SENTENCES) if tok.unit == "jamo" else JamoTokenizer()
    with pytest.raises(ValueError, match="unit"):
        BeamSearchDecoder(other, lm_path=path)


def test_build_lm_rejects_orders_the_decoder_cannot_load(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("사과 먹어\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        build_lm.main(["--text", str(text), "--unit", "jamo", "--order", "8", "--out", str(tmp_path / "lm.bin")])


def test_to_lm_words_marks_word_breaks():
    assert lm_words.to_lm_words("사과 먹어.", "syllable") == "사 과 | 먹 어"
    assert lm_words.to_lm_words("각 나", "jamo") == "ᄀ ᅡ ᆨ | ᄂ ᅡ"


def test_lm_corpus_excludes_evaluation_sentences():
    excluder = Excluder(["오늘 날씨가 정말 좋네요", "네"])
    assert excluder.excludes("오늘 날씨가 정말 좋네요")
    assert excluder.excludes("오늘날씨가 정말좋네요")  # spacing variants
    assert excluder.excludes("그래서 오늘 날씨가 정말 좋네요 라고 했다")  # contains a long eval sentence
    assert excluder.excludes("네")
    assert not excluder.excludes("네 알겠습니다")  # short eval sentences only match exactly
    assert not excluder.excludes("내일 날씨가 좋대요")
    got = list(clean_sentences("안녕하세요. 3G 요금제는 얼마예요? 네!"))
    assert got == [("ok", "안녕하세요"), ("unspelled", "3G 요금제는 얼마예요?"), ("short", "네")]


def test_lm_corpus_turns_bare_jamo_into_word_breaks():
    # NSMC-style reviews: ㅋㅋ, ㅠㅠ and ㅡㅡ must neither reach the LM nor glue their neighbours.
    from collections import Counter

    counts = Counter()
    got = list(clean_sentences("재밌다ㅋㅋ최고 ㅠㅠ\n진짜ㅡㅡ 별로\nㅋㅋㅋㅋ\n정말 좋아요", counts=counts))
    assert got == [("ok", "재밌다 최고"), ("ok", "진짜 별로"), ("short", ""), ("ok", "정말 좋아요")]
    assert counts["jamo_cleaned"] == 3


def test_morpheme_pieces_spell_each_word_again():
    pytest.importorskip("kiwipiepy")
    lines = ["했다 먹었다", "심폐소생술 자격증 취득을 원하시면", "", "abc"]
    pieces = list(lm_words.word_lines(lines, "morpheme"))
    assert pieces[0] == ["했", "다", "먹", "었", "다"]
    assert "".join(pieces[1]) == "심폐소생술자격증취득을원하시면" and "을" in pieces[1] and "면" in pieces[1]
    assert pieces[2] == [] and pieces[3] == []
    assert list(lm_words.word_lines(lines[:2], "eojeol")) == [["했다", "먹었다"], ["심폐소생술", "자격증", "취득을", "원하시면"]]
    assert lm_words.surface_pieces("가나다 라마", [1, 2, 4, 5]) == ["가", "나", "다", "라", "마"]


@needs_kenlm
@pytest.mark.parametrize("words", ["morpheme", "eojeol"])
def test_word_lm_decodes_only_lexicon_words(words, tmp_path):
    """With a word LM the search writes words of the lexicon only: the acoustics prefer 사가 (not a
    word of the text) over 사과 55:45, and even at LM weight 0 the lexicon turns it into 사과."""
    if words == "morpheme":
        pytest.importorskip("kiwipiepy")
    text = tmp_path / "text.txt"
    text.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    out = tmp_path / words / "lm.bin"
    build_lm.main(["--text", str(text), "--unit", "jamo", "--words", words, "--order", "3", "--out", str(out),
                   "--memory", "64M"])
    info = build_lm.json.loads((out.parent / "lm.json").read_text(encoding="utf-8"))
    assert info["words"] == words and info["lexicon"]["file"] == "lexicon.txt"
    lexicon = dict(line.split(" ", 1) for line in (out.parent / "lexicon.txt").read_text(encoding="utf-8").splitlines())
    assert "먹어" in lexicon if words == "eojeol" else "먹" in lexicon
    assert lexicon["사과"] == "ᄉ ᅡ ᄀ ᅪ" and "사가" not in lexicon
    assert info["lexicon"]["words"] == len(lexicon) and info["lexicon"]["text_coverage"] == 1.0

    tok = JamoTokenizer()
    ids, alt = tok.encode("사과 먹어"), tok.encode("사가 먹어")
    (k,) = [k for k, (a, b) in enumerate(zip(ids, alt)) if a != b]
    lp = emissions_for(tok, "사가 먹어", {k: (alt[k], ids[k])})
    assert tok.decode(GreedyDecoder().decode(lp).ids) == "사가 먹어"
    for weight in (0.0, 1.0):
        decoder = BeamSearchDecoder(tok, lm_path=out, beam_size=16, lm_weight=weight)
        assert tok.decode(decoder.decode(lp).ids) == "사과 먹어", weight
    (out.parent / "lexicon.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lexicon"):
        BeamSearchDecoder(tok, lm_path=out)
