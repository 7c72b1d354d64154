import csv
import random
import json
import unicodedata
from pathlib import Path

import pytest

from speech.text import (BLANK, SPACE, JamoTokenizer, SyllableTokenizer, Tokenizer, build_syllable_tokenizer,
                         compose, decompose, is_hangul_syllable, normalize_transcript, text_for_cer, tokenizer_from_dict,
                         unspelled_chars)

KO_SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ko-speech" / "manifest.tsv"

SENTENCES = [
    "안녕하세요. 반갑습니다!",
    "닭볶음탕을 먹고 싶어요?",                 # ㄺ final
    "넋을 잃고 값을 치렀다",                   # ㄳ, ㅄ finals
    "앉아서 많이 읽고 밟고 핥았다",            # ㄵ ㄶ ㄺ ㄼ ㄾ
    "읊조리다가 싫증이 났고 몫을 나눴다",      # ㄿ ㅀ ㄳ
    "  여러   칸의    공백과\t탭\n줄바꿈  ",
    "\"따옴표\"와 '작은따옴표', 그리고 (괄호)…",
    "꿹 뷁 쀍 똠방각하 펲시",                  # rare syllables
    "ㅋㅋㅋ 진짜 웃기다",                      # compatibility jamo are dropped
]


def ko_speech_texts(limit: int = 300) -> list[str]:
    if not KO_SPEECH.is_file():
        return []
    with open(KO_SPEECH, encoding="utf-8", newline="") as f:
        return [r["text"] for _, r in zip(range(limit), csv.DictReader(f, delimiter="\t"))]


def all_sentences() -> list[str]:
    return SENTENCES + ko_speech_texts()


@pytest.fixture(scope="module")
def syllable_tok():
    return build_syllable_tokenizer(normalize_transcript(s) for s in all_sentences())


@pytest.mark.parametrize("make", [lambda s: s, lambda s: JamoTokenizer()], ids=["syllable", "jamo"])
def test_round_trip(make, syllable_tok):
    tok: Tokenizer = make(syllable_tok)
    for s in all_sentences():
        target = normalize_transcript(s)
        assert tok.decode(tok.encode(target)) == target, s


def test_round_trip_uses_the_shared_corpus():
    if not KO_SPEECH.is_file():
        pytest.skip(f"{KO_SPEECH} not present")
    assert len(ko_speech_texts()) == 300


def test_every_hangul_syllable_survives_jamo():
    everything = "".join(chr(c) for c in range(0xAC00, 0xD7A4))
    tok = JamoTokenizer()
    assert decompose(everything) == unicodedata.normalize("NFD", everything)
    assert compose(decompose(everything)) == everything
    assert tok.decode(tok.encode(everything)) == everything


def test_special_indices_and_sizes(syllable_tok):
    jamo = JamoTokenizer()
    for tok in (syllable_tok, jamo):
        assert tok.tokens[0] == BLANK and tok.tokens[1] == SPACE
        assert tok.encode(" ") == [1]
    assert len(jamo) == 2 + 19 + 21 + 27 == 69
    assert jamo.unit == "jamo" and syllable_tok.unit == "syllable"
    assert jamo.encode("각") == [jamo.tokens.index("\u1100"), jamo.tokens.index("\u1161"), jamo.tokens.index("\u11a8")]


def test_decode_skips_blanks_and_collapses_spaces(syllable_tok):
    ids = syllable_tok.encode("안녕 하세요")
    noisy = [1, 0] + ids[:2] + [1, 1, 0] + ids[3:] + [1]
    assert syllable_tok.decode(noisy) == "안녕 하세요"
    with pytest.raises(ValueError):
        syllable_tok.decode([len(syllable_tok)])


def test_encode_drops_characters_outside_the_vocabulary():
    tok = build_syllable_tokenizer(["가나"])
    assert tok.decode(tok.encode("가다나")) == "가나"


def test_stray_jamo_are_completed_or_dropped():
    tok = JamoTokenizer()
    idx = tok.tokens.index
    g_initial, a, g_final, ng_final, ae, space = idx("\u1100"), idx("\u1161"), idx("\u11a8"), idx("\u11bc"), idx("\u1162"), 1
    dd_initial = idx("\u1104")  # ㄸ has no final form
    assert tok.decode([a]) == "아"                        # vowel without an initial: silent ㅇ
    assert tok.decode([ae, ng_final]) == "앵"             # ... keeping its final
    assert tok.decode([g_initial]) == ""                  # initial without a vowel, nothing before: dropped
    assert tok.decode([g_final]) == ""                    # final without a syllable: dropped
    assert tok.decode([g_initial, a, g_final, g_final]) == "각"            # second final dropped
    assert tok.decode([g_initial, a, g_initial]) == "각"                   # initial becomes the final
    assert tok.decode([g_initial, a, dd_initial]) == "가"                  # ... unless it has no final form
    assert tok.decode([g_initial, a, space, g_initial]) == "가"            # ... or a word break is between
    assert tok.decode([g_initial, g_initial, a]) == "가"
    assert tok.decode([space, g_final, g_initial, a, space]) == "가"
    # compose itself still shows stray jamo (for inspection), and decompose is its exact inverse.
    assert compose("\u1100") == "ㄱ" and compose(decompose("각 ㄱ")) == "각 ㄱ"


def test_jamo_decode_never_shows_an_incomplete_syllable():
    tok = JamoTokenizer()
    rng = random.Random(0)
    for _ in range(2000):
        text = tok.decode([rng.randrange(1, len(tok)) for _ in range(rng.randrange(1, 12))])
        assert all(is_hangul_syllable(c) or c == " " for c in text), text
    for s in ["안녕 하세요", "값 닭 앉아", "아이 우유"]:  # well-formed text is untouched
        assert tok.decode(tok.encode(s)) == s


def test_to_dict_round_trip(syllable_tok):
    for tok in (syllable_tok, JamoTokenizer()):
        d = json.loads(json.dumps(tok.to_dict(), ensure_ascii=False))
        assert d["unit"] == tok.unit
        back = tokenizer_from_dict(d)
        assert type(back) is type(tok) and back.tokens == tok.tokens
    with pytest.raises(ValueError, match="available units"):
        tokenizer_from_dict({"unit": "bpe", "tokens": [BLANK, SPACE]})
    with pytest.raises(ValueError):
        tokenizer_from_dict({"unit": "jamo", "tokens": [BLANK, SPACE, "x"]})
    with pytest.raises(ValueError):
        SyllableTokenizer([SPACE, BLANK, "가"])


def test_token_text_is_printable():
    jamo = JamoTokenizer()
    assert jamo.token_text(0) == BLANK
    assert jamo.token_text(1) == "␣"
    assert jamo.token_text(jamo.tokens.index("\u1100")) == "ㄱ-"
    assert jamo.token_text(jamo.tokens.index("\u11a8")) == "-ㄱ"
    assert jamo.token_text(jamo.tokens.index("\u1161")) == "ㅏ"
    assert len({jamo.token_text(i) for i in range(len(jamo))}) == len(jamo)


def test_build_syllable_tokenizer_is_deterministic():
    a = build_syllable_tokenizer(["나가 다", "가"])
    b = build_syllable_tokenizer(["가", "다 가나"])
    assert a.tokens == b.tokens == [BLANK, SPACE, "가", "나", "다"]
    assert build_syllable_tokenizer(["가 가 나"], min_count=2).tokens == [BLANK, SPACE, "가"]


@pytest.mark.parametrize("raw, expected", [
    ("b/ 아/ 모+ 몬 소리야 (70%)/(칠십 퍼센트) 확률이라니 n/", "아 모 몬 소리야 칠십 퍼센트 확률이라니"),
    ("o/ 그럼 (3G)/(쓰리 쥐)로 할까? l/", "그럼 쓰리 쥐로 할까"),
    ("u/ 어/ 그+ 그러니까 음* 좋아.", "어 그 그러니까 음 좋아"),
    ("(그러니까)/(그니까) 내가 b/ 말했잖아", "그니까 내가 말했잖아"),
    ("b/ n/ l/", ""),
])
def test_kspon_normalisation(raw, expected):
    assert normalize_transcript(raw, "kspon") == expected
    assert unspelled_chars(raw, "kspon") == ""


@pytest.mark.parametrize("raw, expected", [
    ("(SN:) 오늘 날씨가 참 좋네요.", "오늘 날씨가 참 좋네요"),
    ("(FP:음) 그래서 (NO:) 집에 갔어요?", "음 그래서 집에 갔어요"),
    ("밥은 먹었어? {laughing} [웃음]", "밥은 먹었어"),
    ("&name& 씨 안녕하세요", "씨 안녕하세요"),
    ("(SP:숨소리)아 네", "아 네"),
])
def test_aihub_normalisation(raw, expected):
    assert normalize_transcript(raw, "aihub") == expected


def test_plain_normalisation():
    assert normalize_transcript("오월 십칠일 기준, 홍수로 인해…대피했다.") == "오월 십칠일 기준 홍수로 인해 대피했다"
    nfd = unicodedata.normalize("NFD", "한국어 음성")
    assert normalize_transcript(nfd) == "한국어 음성"
    with pytest.raises(ValueError, match="valid sources"):
        normalize_transcript("가", "zeroth")


@pytest.mark.parametrize("raw, source, found", [
    ("3시에 KTX 타요", "plain", "3KTX"),
    ("약간 50% 정도", "kspon", "50%"),
    ("(70%)/(칠십 퍼센트) 확률", "kspon", ""),
    ("漢字 한자", "plain", "漢字"),
    ("ㅋㅋ 웃겨", "plain", ""),
    ("안녕하세요.", "plain", ""),
])
def test_unspelled_chars(raw, source, found):
    assert unspelled_chars(raw, source) == found


def test_text_for_cer():
    assert text_for_cer("안녕, 하세요! 3G?") == "안녕하세요3G"
    assert text_for_cer(unicodedata.normalize("NFD", "각")) == "각"
