"""speech.metrics and the scoring text of speech.text: known edit counts, Korean, empty references,
numbers spelled out as read."""
import pytest

from speech.metrics import cer_wer, edit_distance, edit_ops, error_counts, rate, rates
from speech.text import sino_korean, spell_numbers, text_for_cer, text_for_wer


@pytest.mark.parametrize("ref,hyp,ops", [
    ("kitten", "sitting", {"substitutions": 2, "insertions": 1, "deletions": 0}),
    ("abc", "abc", {"substitutions": 0, "insertions": 0, "deletions": 0}),
    ("abcd", "ad", {"substitutions": 0, "insertions": 0, "deletions": 2}),
    ("", "가나", {"substitutions": 0, "insertions": 2, "deletions": 0}),
    ("안녕하세요", "안영하세", {"substitutions": 1, "insertions": 0, "deletions": 1}),
    (["오늘", "날씨", "좋다"], ["오늘", "날씨가", "정말", "좋다"], {"substitutions": 1, "insertions": 1, "deletions": 0}),
])
def test_edit_distance_counts_substitutions_insertions_and_deletions(ref, hyp, ops):
    assert edit_ops(ref, hyp) == ops
    assert edit_distance(ref, hyp) == sum(ops.values()) == edit_distance(hyp, ref)


def test_corpus_counts_on_korean():
    refs = ["오늘 날씨가 좋네요.", "감사합니다!"]
    hyps = ["오늘 날씨 좋네요", "감사 합니다"]
    c = error_counts(refs, hyps)
    # CER text drops spaces and punctuation: "오늘날씨가좋네요" (8) vs "오늘날씨좋네요" is one deletion;
    # "감사합니다" matches exactly.
    assert (c["char_errors"], c["chars"]) == (1, 8 + 5)
    # WER: [오늘 날씨가 좋네요] vs [오늘 날씨 좋네요] one substitution; [감사합니다] vs [감사 합니다] 1 sub + 1 ins.
    assert (c["word_errors"], c["words"]) == (3, 3 + 1)
    assert rates(c) == {"cer": pytest.approx(1 / 13), "wer": pytest.approx(3 / 4)}
    assert cer_wer(refs, hyps) == (pytest.approx(1 / 13), pytest.approx(3 / 4))


def test_punctuation_does_not_count_as_a_word_error():
    # Training, evaluation and fine-tuning all score this pair as perfect (one text for WER).
    assert cer_wer(["네, 그렇습니다."], ["네 그렇습니다"]) == (0.0, 0.0)


def test_empty_references_count_as_length_one():
    assert rate(0, 0) == 0.0 and rate(3, 0) == 3.0 and rate(1, 4) == 0.25
    c = error_counts([""], ["아"])
    assert c == {"char_errors": 1, "chars": 0, "word_errors": 1, "words": 0}
    assert cer_wer([""], [""]) == (0.0, 0.0)
    assert cer_wer([], []) == (0.0, 0.0)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        error_counts(["가", "나"], ["가"])
    with pytest.raises(ValueError, match="numbers"):
        error_counts(["가"], ["가"], numbers="words")


@pytest.mark.parametrize("n,read", [
    (0, "영"), (1, "일"), (5, "오"), (10, "십"), (11, "십일"), (15, "십오"), (20, "이십"), (100, "백"),
    (110, "백십"), (1000, "천"), (2024, "이천이십사"), (10000, "만"), (12345, "만이천삼백사십오"),
    (20000, "이만"), (110000, "십일만"), (100000000, "일억"), (100010001, "일억만일"), (3000000000000, "삼조"),
])
def test_sino_korean_reading(n, read):
    assert sino_korean(n) == read


def test_spell_numbers_reads_digits_as_the_references_spell_them():
    assert spell_numbers("5월 3일") == "오월 삼일"
    assert spell_numbers("6월과 10월, 11월") == "유월과 시월, 십일월"
    assert spell_numbers("2024년") == "이천이십사년"
    assert spell_numbers("1,000원") == "천원"
    assert spell_numbers("3.5킬로") == "삼점오킬로"
    assert spell_numbers("010") == "영일영"
    assert spell_numbers("숫자 없음") == "숫자 없음"


def test_numbers_spelled_out_score_whisper_digits_like_the_reference():
    refs, hyps = ["오월 오일에 만나요"], ["5월 5일에 만나요"]
    as_is, spelled = error_counts(refs, hyps), error_counts(refs, hyps, numbers="spelled")
    assert as_is["char_errors"] == 2 and spelled["char_errors"] == 0
    assert spelled["chars"] == as_is["chars"] == len("오월오일에만나요")


def test_scoring_texts():
    assert text_for_cer("안녕, 하세요! 3G?") == "안녕하세요3G"
    assert text_for_wer("안녕,하세요!  3G?") == "안녕 하세요 3G"
