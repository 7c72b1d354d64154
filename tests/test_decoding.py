"""Greedy CTC decoding (speech.decoding) and the words/segments built from it (speech.stt)."""
from __future__ import annotations

import itertools

import pytest
import torch

from speech.audio import SAMPLE_RATE
from speech.decoding import GreedyDecoder, Hypothesis, greedy_decode
from speech.features import FeatureConfig
from speech.stt import hypothesis_to_words, words_to_segments
from speech.text import SPACE, JamoTokenizer, build_syllable_tokenizer


def log_probs_for_path(path: list[int], V: int, seed: int = 0) -> torch.Tensor:
    """(T, V) log-probs whose best class at frame t is path[t], with noise on every other class."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(path), V, generator=g).clamp(-3, 3)
    logits[torch.arange(len(path)), torch.tensor(path, dtype=torch.long)] += 7.0
    lp = logits.log_softmax(-1)
    assert lp.argmax(-1).tolist() == list(path)
    return lp


def reference_collapse(path: list[int], blank: int) -> tuple[list[int], list[int]]:
    """CTC best-path rule written independently: merge runs, then drop blanks; a token's frame is
    the first frame of its run."""
    ids, frames, t = [], [], 0
    for token, run in itertools.groupby(path):
        n = len(list(run))
        if token != blank:
            ids.append(token)
            frames.append(t)
        t += n
    return ids, frames


def test_greedy_collapses_repeats_and_blanks():
    # a a _ a b b _ _ c : the blank between the two a's keeps them apart
    path = [2, 2, 0, 2, 3, 3, 0, 0, 4]
    lp = log_probs_for_path(path, V=5)
    hyp = greedy_decode(lp)
    assert hyp.ids == [2, 2, 3, 4]
    assert hyp.frames == [0, 3, 4, 8]
    assert hyp.score == pytest.approx(float(lp.max(-1).values.sum()), abs=1e-4)
    assert GreedyDecoder().decode(lp).ids == hyp.ids


@pytest.mark.parametrize("blank", [0, 3])
def test_greedy_matches_the_ctc_rule_on_random_paths(blank):
    g = torch.Generator().manual_seed(blank)
    for trial in range(100):
        T = int(torch.randint(1, 60, (1,), generator=g))
        path = torch.randint(0, 6, (T,), generator=g)
        path[torch.rand(T, generator=g) < 0.4] = blank
        path = path.tolist()
        hyp = greedy_decode(log_probs_for_path(path, V=6, seed=trial), blank=blank)
        assert (hyp.ids, hyp.frames) == reference_collapse(path, blank), path
        assert len(hyp.ids) == len(hyp.frames)
        assert all(a < b for a, b in zip(hyp.frames, hyp.frames[1:]))
        assert blank not in hyp.ids


def test_greedy_edge_cases():
    assert greedy_decode(log_probs_for_path([0] * 7, V=4)).ids == []
    assert greedy_decode(torch.zeros(0, 4)).ids == []
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        greedy_decode(torch.zeros(1, 5, 4))


def spell(tokenizer, text: str, frames_per_token: int = 2, gap_after_space: int = 0, lead: int = 3) -> Hypothesis:
    """A hypothesis for `text` emitted at regular frames (as greedy decoding reports it)."""
    ids, frames, t = [], [], lead
    space = tokenizer.tokens.index(SPACE)
    for i in tokenizer.encode(text):
        ids.append(i)
        frames.append(t)
        t += frames_per_token + (gap_after_space if i == space else 0)
    return Hypothesis(ids=ids, frames=frames)


@pytest.mark.parametrize("unit", ["jamo", "syllable"])
def test_words_have_the_right_text_and_monotonic_times(unit):
    text = "그럼 주말에 만나요 욕조에 물을 받을까요"
    tok = JamoTokenizer() if unit == "jamo" else build_syllable_tokenizer([text])
    frame_seconds = 0.04
    hyp = spell(tok, text, gap_after_space=10)
    offset = 12.5
    words = hypothesis_to_words(hyp, tok, frame_seconds, offset)
    assert [w.text for w in words] == text.split()
    for w in words:
        assert offset <= w.start < w.end
    for a, b in zip(words, words[1:]):
        assert a.end <= b.start
    # A word spans its first to its last token's frame.
    assert words[0].start == pytest.approx(offset + hyp.frames[0] * frame_seconds)
    assert words[-1].end == pytest.approx(offset + (hyp.frames[-1] + 1) * frame_seconds)


def test_words_stay_within_the_audio_when_the_last_frame_speaks():
    """A token emitted at the very last output frame must not end after the audio does."""
    tok = JamoTokenizer()
    cfg = FeatureConfig()
    stride = 4
    frame_seconds = cfg.frame_shift * stride
    for n_samples in [16000, 16001, 16160, 36801]:
        T_out = (cfg.num_frames(n_samples) + stride - 1) // stride  # the light front end's output length
        ids = tok.encode("물")
        hyp = Hypothesis(ids=ids, frames=list(range(T_out - len(ids), T_out)))
        duration = n_samples / SAMPLE_RATE
        words = hypothesis_to_words(hyp, tok, frame_seconds, offset=3.0, end=3.0 + duration)
        assert words and words[-1].end <= 3.0 + duration + 1e-9, (n_samples, words[-1])
        assert words[-1].start < words[-1].end


def test_segments_split_at_pauses_and_length():
    tok = JamoTokenizer()
    words = hypothesis_to_words(spell(tok, "가 나 다 라 마 바", frames_per_token=5, gap_after_space=0), tok, 0.04)
    # Close words join into one segment whose text is the words in order.
    segs = words_to_segments(words)
    assert len(segs) == 1 and segs[0].text == "가 나 다 라 마 바"
    assert (segs[0].start, segs[0].end) == (words[0].start, words[-1].end)
    # A long pause starts a new segment.
    spaced = hypothesis_to_words(spell(tok, "가 나 다 라", frames_per_token=2, gap_after_space=40), tok, 0.04)
    segs = words_to_segments(spaced, max_gap=0.8)
    assert [s.text for s in segs] == ["가", "나", "다", "라"]
    # max_len caps a segment's duration.
    segs = words_to_segments(words, max_gap=10, max_len=0.5)
    assert len(segs) > 1
    for s in segs:
        assert s.end - s.start <= 0.5 or len(s.words) == 1
    for segs in (words_to_segments(words), words_to_segments(spaced), words_to_segments(words, max_len=0.5)):
        for a, b in zip(segs, segs[1:]):
            assert a.start < a.end <= b.start < b.end
        assert " ".join(s.text for s in segs) == " ".join(w.text for s in segs for w in s.words)
    assert words_to_segments([]) == []
