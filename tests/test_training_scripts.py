"""training/make_conversations.py, training/tune_lm.py and training/benchmark.py through their
main(argv), on real clips (the test fixtures, cut from ../shared/data/ko-speech) and the shipped
DeepSpeech2 release with its KenLM model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech.audio import SAMPLE_RATE, load_audio
from speech.metrics import error_counts
from speech.stt import load_engine

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
DS2 = ROOT / "checkpoints" / "ds2-ko"
KO_SPEECH = FIX / "ko-speech" / "manifest.jsonl"   # kih (male) x2, lmy (female), with transcripts
# (file, speaker, gender, note)
CLIPS = [(FIX / "gender" / "ava00021.flac", "ava", "female", None),
         (FIX / "examples" / "ko_female_ava00013.flac", "ava", "female", None),
         (FIX / "gender" / "avc00010.flac", "avc", "female", None),
         (FIX / "gender" / "emh00305.flac", "emh", "male", None),
         (FIX / "examples" / "ko_male_emh00003.flac", "emh", "male", None),
         (FIX / "gender" / "emf00002.flac", "emf", "male", None),
         (FIX / "gender" / "pmi00020.flac", "pmi", "male", "teen")]


def write_manifest(path: Path, clips) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for audio, speaker, gender, note in clips:
            f.write(json.dumps({"audio": str(audio), "text": "", "speaker": speaker, "gender": gender,
                                "utt": audio.stem, "note": note}) + "\n")
    return path


# -- make_conversations ----------------------------------------------------------------------------

def best_match(piece: np.ndarray, sources: dict) -> tuple[str, dict]:
    """Which source clip `piece` was cut from (the highest normalised cross-correlation), and every score."""
    scores = {}
    for name, src in sources.items():
        if len(src) < len(piece):
            continue
        n = 1 << int(np.ceil(np.log2(len(src) + len(piece))))
        corr = np.fft.irfft(np.fft.rfft(src, n) * np.conj(np.fft.rfft(piece, n)), n)[:len(src) - len(piece) + 1]
        c = np.concatenate([[0.0], np.cumsum(src.astype(np.float64) ** 2)])
        energy = c[len(piece):] - c[:-len(piece)]   # each window's energy
        scores[name] = float(np.max(corr / np.sqrt(np.maximum(energy, 1e-12) * (piece @ piece))))
    return max(scores, key=scores.get), scores


def check_truth_against_audio(out: Path, truth: dict, sources: dict, speaker_of) -> None:
    clean, sr = sf.read(str(out / f"{truth['name']}.clean.flac"), dtype="float32")
    assert sr == SAMPLE_RATE and len(clean) / sr == pytest.approx(truth["duration"], abs=1e-3)
    for v in truth["variants"]:
        assert sf.info(str(out / f"{truth['name']}.{v}.flac")).frames == len(clean)
    segs = truth["segments"]
    # Outside the true segments the clean mix is digital silence; inside, every segment starts and
    # ends in speech (trimmed utterances).
    inside = np.zeros(len(clean), bool)
    for s, e, *_ in segs:   # times are rounded to 1 ms in truth.jsonl: allow 16 samples
        inside[max(0, round(s * sr) - 16):round(e * sr) + 16] = True
    assert np.abs(clean[~inside]).max() == 0.0
    for s, e, *_ in segs:
        a, b = round(s * sr), round(e * sr)
        assert np.sqrt(np.mean(clean[a:a + 800] ** 2)) > 1e-3 and np.sqrt(np.mean(clean[b - 800:b] ** 2)) > 1e-3, (s, e)
    # Each segment that no other overlaps is a clip of the speaker the truth names.
    for i, (s, e, *who) in enumerate(segs):
        if any(j != i and s2 < e and s < e2 for j, (s2, e2, *_) in enumerate(segs)):
            continue
        name, scores = best_match(clean[round(s * sr):round(e * sr)], sources)
        assert speaker_of(name) == speaker_of_truth(who) and scores[name] > 0.99, (s, e, who, name, scores)
    # The shares are the segments' seconds.
    female = sum(e - s for s, e, g, *_ in segs if g == "female")
    male = sum(e - s for s, e, g, *_ in segs if g == "male")
    assert truth["female_seconds"] == pytest.approx(female, abs=0.01) and truth["male_seconds"] == pytest.approx(male, abs=0.01)
    assert truth["female_share"] == pytest.approx(female / (female + male), abs=1e-3)


def speaker_of_truth(who: list) -> str:
    """Two-parent segments carry the gender; multi-speaker segments the gender and speaker id."""
    return who[-1]


@pytest.fixture(scope="module")
def clip_audio():
    return {a.stem: load_audio(a) for a, *_ in CLIPS}


def test_two_parent_conversations_match_their_truth(tmp_path, clip_audio):
    from training import make_conversations

    manifest = write_manifest(tmp_path / "dev.jsonl", CLIPS)
    out = tmp_path / "conv"
    make_conversations.main(["--manifest", str(manifest), "--noise", str(FIX / "noise"), "--out", str(out),
                             "--n", "2", "--turns", "5", "--overlap-prob", "0.3", "--seed", "4"])
    truths = [json.loads(line) for line in (out / "truth.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [t["name"] for t in truths] == ["conv00", "conv01"]
    gender = {a.stem: g for a, _, g, _ in CLIPS}
    for t in truths:
        assert t["variants"] == ["clean", "household", "household5", "noise"]
        assert t["female_speaker"] in ("ava", "avc") and t["male_speaker"] in ("emf", "emh")   # pmi is a teen
        assert "pmi" in t["tv_speakers"]
        check_truth_against_audio(out, t, clip_audio, lambda name: gender[name])
        noisy, _ = sf.read(str(out / f"{t['name']}.noise.flac"), dtype="float32")
        clean, _ = sf.read(str(out / f"{t['name']}.clean.flac"), dtype="float32")
        assert not np.array_equal(noisy, clean)


def test_multi_speaker_conversations_match_their_truth(tmp_path, clip_audio):
    from training import make_conversations

    manifest = write_manifest(tmp_path / "dev.jsonl", CLIPS)
    out = tmp_path / "conv"
    make_conversations.main(["--manifest", str(manifest), "--noise", str(FIX / "noise"), "--out", str(out),
                             "--n", "2", "--turns", "6", "--overlap-prob", "0.2", "--seed", "5", "--speakers", "3-4"])
    speaker = {a.stem: spk for a, spk, _, _ in CLIPS}
    for line in (out / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        assert t["variants"] == ["clean", "household", "noise", "tv"]
        assert 3 <= len(t["speakers"]) <= 4 and {"female", "male"} <= set(t["speakers"].values())
        assert "pmi" not in t["speakers"]
        assert all(t["speakers"][spk] == g for _, _, g, spk in t["segments"])
        check_truth_against_audio(out, t, clip_audio, lambda name: speaker[name])


def test_quiet_family_leaves_the_tv_talking_alone(tmp_path, clip_audio):
    """--quiet-prob 1: every pause between turns lasts 10-40 s; there the clean variant is silent
    and the tv variant holds the TV alone (10 dB under the speech, as loud as the noise: the stretch is
    louder than in the noise variant)."""
    from training import make_conversations

    manifest = write_manifest(tmp_path / "dev.jsonl", CLIPS)
    out = tmp_path / "conv"
    make_conversations.main(["--manifest", str(manifest), "--noise", str(FIX / "noise"), "--out", str(out),
                             "--n", "1", "--turns", "3", "--overlap-prob", "0", "--seed", "5", "--speakers", "2",
                             "--quiet-prob", "1"])
    speaker = {a.stem: spk for a, spk, _, _ in CLIPS}
    t = json.loads((out / "truth.jsonl").read_text(encoding="utf-8"))
    check_truth_against_audio(out, t, clip_audio, lambda name: speaker[name])
    segs = sorted((s, e) for s, e, *_ in t["segments"])
    gaps = [(a[1], b[0]) for a, b in zip(segs, segs[1:]) if b[0] - a[1] > 0.45]   # between turns, not utterances
    assert len(gaps) == 2 and all(10.0 <= b - a <= 40.0 for a, b in gaps), gaps
    quiet = slice(int((gaps[0][0] + 0.5) * 16000), int((gaps[0][1] - 0.5) * 16000))
    clean, noise, tv = (sf.read(str(out / f"{t['name']}.{v}.flac"), dtype="float32")[0] for v in ("clean", "noise", "tv"))
    assert np.abs(clean[quiet]).max() == 0.0
    assert np.sqrt(np.mean(tv[quiet] ** 2)) > 1.2 * np.sqrt(np.mean(noise[quiet] ** 2))   # TV and noise: about as loud


def test_far_parent_speaks_from_across_the_room(tmp_path, clip_audio):
    """--far-db 8: one adult's utterances go through a synthetic room with their direct sound 8 dB
    down (the reverberant tail gives some level back); the truth names that adult and the room.
    The other adult is as loud as the clips. Without --speakers the option is refused."""
    from training import make_conversations

    manifest = write_manifest(tmp_path / "dev.jsonl", CLIPS)
    out = tmp_path / "conv"
    make_conversations.main(["--manifest", str(manifest), "--noise", str(FIX / "noise"), "--out", str(out),
                             "--n", "1", "--turns", "6", "--overlap-prob", "0", "--seed", "5", "--speakers", "2",
                             "--far-db", "8"])
    t = json.loads((out / "truth.jsonl").read_text(encoding="utf-8"))
    far = t["far"]
    assert far["speaker"] in t["speakers"] and far["db"] == 8.0 and 0.3 <= far["rt60"] <= 0.8
    clean = sf.read(str(out / f"{t['name']}.clean.flac"), dtype="float32")[0]
    sources = {spk: np.concatenate([clip_audio[a.stem] for a, s, _, _ in CLIPS if s == spk]) for spk in t["speakers"]}

    def level(spk):   # the speaker's level in the mix against its own clips, dB
        x = np.concatenate([clean[round(s * 16000):round(e * 16000)] for s, e, _, k in t["segments"] if k == spk])
        return 20 * np.log10(np.sqrt(np.mean(x ** 2)) / np.sqrt(np.mean(sources[spk] ** 2)))

    near = [spk for spk in t["speakers"] if spk != far["speaker"]]
    assert all(abs(level(spk)) < 1.5 for spk in near), [level(spk) for spk in near]
    assert -8.5 < level(far["speaker"]) < -1.0, level(far["speaker"])
    with pytest.raises(SystemExit):
        make_conversations.main(["--manifest", str(manifest), "--out", str(tmp_path / "x"), "--far-db", "8"])


def test_family_conversations_add_one_child(tmp_path, clip_audio):
    from training import make_conversations
    from training.diarization import adult_as_child, child_as_parent

    adults = write_manifest(tmp_path / "dev.jsonl", [c for c in CLIPS if c[3] != "teen"])
    kids = tmp_path / "kids.jsonl"   # pmi's clip stands in for a child's voice
    kids.write_text(json.dumps({"audio": str(CLIPS[-1][0]), "text": "", "speaker": "child-x", "gender": "child",
                                "utt": CLIPS[-1][0].stem, "source_speaker": "avc"}) + "\n", encoding="utf-8")
    out = tmp_path / "conv"
    make_conversations.main(["--manifest", str(adults), "--noise", str(FIX / "noise"), "--out", str(out), "--n", "2",
                             "--turns", "8", "--overlap-prob", "0.0", "--seed", "3", "--speakers", "2-2",
                             "--children", str(kids)])
    speaker = {a.stem: spk for a, spk, _, _ in CLIPS[:-1]} | {CLIPS[-1][0].stem: "child-x"}
    for line in (out / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        assert len(t["speakers"]) == 3 and t["speakers"]["child-x"] == "child"
        assert sorted(t["speakers"].values()) == ["child", "female", "male"]
        child = sum(e - s for s, e, g, _ in t["segments"] if g == "child")
        assert child > 0 and t["child_seconds"] == pytest.approx(child, abs=0.01)
        check_truth_against_audio(out, t, clip_audio, lambda name: speaker[name])   # the share leaves the child out
        # the evaluation's child rule: the child's time labelled female or male, of the child's time found
        kid = [(s, e) for s, e, g, _ in t["segments"] if g == "child"]
        assert child_as_parent(t, [(s, e, "child") for s, e in kid], 100000) == 0.0
        assert child_as_parent(t, [(s, e, "female") for s, e in kid], 100000) == 100.0
        # ... and its converse: one adult alone, labelled child
        grown = [(s, e, g) for s, e, g, _ in t["segments"] if g != "child"]
        assert adult_as_child(t, grown, 100000) == 0.0
        assert adult_as_child(t, [(s, e, "child") for s, e, _ in grown], 100000) == 100.0
    with pytest.raises(ValueError):
        make_conversations.main(["--manifest", str(adults), "--noise", str(FIX / "noise"), "--out", str(out), "--children", str(kids)])
    # --child-of mother: the child's voice is made from the conversation's mother (here ava or avc)
    two = tmp_path / "two-kids.jsonl"
    two.write_text("".join(json.dumps({"audio": str(a), "text": "", "speaker": f"child-{src}", "gender": "child",
                                       "utt": a.stem, "source_speaker": src}) + "\n"
                           for a, src in [(CLIPS[-1][0], "avc"), (FIX / "ko-speech" / "kih00023.flac", "ava")]),
                   encoding="utf-8")
    mothers = tmp_path / "mothers"
    make_conversations.main(["--manifest", str(adults), "--noise", str(FIX / "noise"), "--out", str(mothers), "--n", "3",
                             "--turns", "6", "--seed", "2", "--speakers", "2-2", "--children", str(two), "--child-of", "mother"])
    for line in (mothers / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        mother = next(s for s, g in t["speakers"].items() if g == "female")
        assert t["speakers"][f"child-{mother}"] == "child"


# -- tune_lm ---------------------------------------------------------------------------------------

def test_tune_lm_grid_and_held_out_scores(tmp_path):
    from training import tune_lm

    out = tmp_path / "ds2-lm"
    tune_lm.main(["--model", str(DS2), "--lm", str(DS2 / "lm.bin"), "--manifest", str(KO_SPEECH),
                  "--tune-speakers", "kih", "--lm-weights", "0.5,3", "--word-scores", "0,2", "--beam-size", "8",
                  "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    assert res["utterances"] == {"tune": 2, "test": 1} and res["tune_speakers"] == ["kih"]
    assert [(g["lm_weight"], g["word_score"]) for g in res["grid"]] == [(0.5, 0), (0.5, 2), (3, 0), (3, 2)]
    best = min(res["grid"], key=lambda g: g["tune_cer"])
    assert res["best"] == best
    # The tuned decoder scores on the tune speakers what the grid said it would.
    assert res["results"]["beam+lm"]["tune"]["cer"] == pytest.approx(best["tune_cer"])
    # Greedy decoding is the engine's own greedy transcript (the same levelled input), scored against
    # the references: the LM is tuned on what users get.
    rows = [json.loads(line) for line in KO_SPEECH.read_text(encoding="utf-8").splitlines()]
    engine = load_engine("ds2", model=str(DS2), decoder="greedy")
    for part, idx in (("tune", [0, 1]), ("test", [2])):
        hyps = [engine.transcribe(FIX / "ko-speech" / rows[i]["audio"]).text for i in idx]
        c = error_counts([rows[i]["text"] for i in idx], hyps)
        assert res["results"]["greedy"][part]["cer"] == pytest.approx(c["char_errors"] / c["chars"])
        assert res["results"]["greedy"][part]["examples"] == hyps
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == ["| greedy", "| beam", "| beam+lm"]


# -- benchmark -------------------------------------------------------------------------------------

def test_benchmark_times_the_release_on_recordings_of_the_asked_lengths(tmp_path):
    from training import benchmark

    out = tmp_path / "bench"
    report = benchmark.main(["--model", str(DS2), "--manifest", str(KO_SPEECH), "--train-manifest", str(KO_SPEECH),
                             "--lengths", "4,12", "--repeats", "2", "--train-steps", "1", "--threads", "1",
                             "--out", str(out)])
    saved = json.loads(out.with_name("bench.json").read_text(encoding="utf-8"))
    md = out.with_name("bench.md").read_text(encoding="utf-8")
    assert saved == json.loads(json.dumps(report, ensure_ascii=False))
    assert report["model_name"] == "ds2-ko" and report["parameters"] == 3_777_248
    assert list(report["inference"]) == ["4 s", "12 s"]
    for sec, r in zip((4, 12), report["inference"].values()):
        assert r["audio_seconds"] == sec and r["repeats"] == 2 and len(r["seconds"]) == 2
        assert r["rtf"] == pytest.approx(min(r["seconds"]) / sec, abs=1e-3)
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
    t = report["training"]
    assert t["steps"] == 1 and t["utterances"] == 3 and t["audio_sec_per_sec"] > 0
    # The training steps rebuild the release's model (its saved training config).
    args = t["command_args"]
    assert args[args.index("--rnn-hidden") + 1] == "256" and args[args.index("--rnn-layers") + 1] == "4"
    assert md.count("| inference RTF,") == 2 and "| training throughput (1 steps" in md
