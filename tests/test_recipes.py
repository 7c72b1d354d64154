"""The recipes (recipes/*/run.sh) regenerate the shipped releases: both run end to end on the small
budget into a temporary folder, and what they write loads through the library's own loaders,
with the shipped releases' shape, and answers on a real clip.

The small budget trains for a few steps only, so the transcript itself is not checked; the release
must carry weights of its own (not a copy of checkpoints/), the recipe's LM behind the beam
decoder, and the evaluation, calibration and benchmark each stage writes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speech.audio import load_audio
from speech.bundle import load_bundle
from speech.features import FeatureConfig
from speech.gender import GenderClassifier
from speech.stt import load_engine
from training import build_lm

from needs import require_whisper_base

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CLIP = ROOT / "tests" / "fixtures" / "ko-speech" / "lmy02037.flac"     # a train speaker's clip, 2.3 s

pytestmark = [
    pytest.mark.skipif(not (SHARED / "ko-speech" / "manifest.tsv").exists() or not (SHARED / "noise").is_dir(),
                       reason=f"the recipes train on the project corpus, not on this machine ({SHARED})"),
    pytest.mark.skipif(not (Path(build_lm.DEFAULT_KENLM_BIN) / "lmplz").exists(),
                       reason=f"KenLM lmplz not in {build_lm.DEFAULT_KENLM_BIN}; run training/build_kenlm.sh"),
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.slow,
]


def run_recipe(tmp_path_factory, name: str, *args: str, out: Optional[Path] = None, **env: str) -> tuple[Path, str]:
    """The recipe on its small budget in a fresh folder (or `out`): (that folder, what it printed)."""
    out = out or tmp_path_factory.mktemp("recipe") / name
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    r = subprocess.run(["bash", str(ROOT / "recipes" / name / "run.sh"), "--budget", "small", "--out", str(out), *args],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out, r.stdout


@pytest.fixture(scope="module")
def ds2(tmp_path_factory):
    return run_recipe(tmp_path_factory, "ds2-ko")


@pytest.fixture(scope="module")
def gender(tmp_path_factory):
    return run_recipe(tmp_path_factory, "gender-ko")


@pytest.fixture(scope="module")
def gender_child(tmp_path_factory):
    return run_recipe(tmp_path_factory, "gender-child-ko")


@pytest.fixture(scope="module")
def tv(tmp_path_factory):
    return run_recipe(tmp_path_factory, "tv-ko")


@pytest.fixture(scope="module")
def speaker(tmp_path_factory):
    return run_recipe(tmp_path_factory, "speaker-ko")


@pytest.fixture(scope="module")
def campplus(tmp_path_factory):
    return run_recipe(tmp_path_factory, "speaker-campplus")


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    return run_recipe(tmp_path_factory, "ds2-curve")


@pytest.fixture(scope="module")
def distill(tmp_path_factory):
    require_whisper_base()
    out, log = run_recipe(tmp_path_factory, "ds2-distill")
    # The other teacher loss on the same teacher folder: only its own stages run.
    _, log_states = run_recipe(tmp_path_factory, "ds2-distill", "--stage", "4", out=out, KD_TARGET="states")
    return out, log, log_states


def config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def test_ds2_recipe_writes_a_release_of_the_shipped_shape(ds2):
    out, log = ds2
    for n, name in enumerate(["prepare", "lm-text", "lm", "train", "continue", "package", "evaluate", "benchmark"]):
        assert f"stage {n} {name}: done" in log
        assert (out / ".done" / name).exists()
    mine, shipped = config(out / "ds2-ko"), config(ROOT / "checkpoints" / "ds2-ko")
    for key in ("model_type", "name", "dims", "tokenizer", "parameters"):
        assert mine[key] == shipped[key], key
    assert FeatureConfig.from_dict(mine["features"]) == FeatureConfig.from_dict(shipped["features"])
    assert mine["decoder"] == {**shipped["decoder"]}          # lm.bin at the shipped weights 2.0 / 0
    lm = json.loads((out / "ds2-ko" / "lm.json").read_text(encoding="utf-8"))
    assert (lm["unit"], lm["order"]) == ("jamo", 3)
    # The continue stage started from the train stage's release, as the shipped run did.
    assert mine["training"]["config"]["init_from"] == str(out / "exp" / "main1" / "release")
    # The evaluation stage measured both decoders and recorded them in the release.
    systems = mine["evaluation"]["systems"]
    assert len(systems) == 2 and all(0.0 <= s["clean"]["cer"] <= 2.0 for s in systems.values())
    bench = json.loads((out / "results" / "benchmark.json").read_text(encoding="utf-8"))
    assert bench and (out / "results" / "benchmark.md").exists()


def test_ds2_recipe_release_loads_and_transcribes_a_real_clip(ds2):
    out, _ = ds2
    engine = load_engine("ds2", model=str(out / "ds2-ko"), decoder="beam")
    assert engine.decoder_name == "beam+lm" and engine.model_name == "ds2-ko"
    result = engine.transcribe(str(CLIP))
    assert isinstance(result.text, str) and abs(result.duration - 2.3) < 0.05 and result.rtf > 0
    audio = load_audio(str(CLIP))
    lp = engine.log_probs([audio])[0]
    assert lp.shape[1] == 69 and torch.allclose(lp.exp().sum(1), torch.ones(len(lp)), atol=1e-3)
    # Weights of its own: the shipped model hears the same clip differently.
    shipped = load_engine("ds2").log_probs([audio])[0]
    assert lp.shape == shipped.shape and not torch.allclose(lp, shipped, atol=1e-2)


def test_gender_recipe_writes_a_calibrated_release_that_classifies_a_real_clip(gender):
    out, log = gender
    for n, name in enumerate(["prepare", "train", "calibrate", "package", "evaluate"]):
        assert f"stage {n} {name}: done" in log
    mine, shipped = config(out / "gender-ko"), config(ROOT / "checkpoints" / "gender-ko")
    a, b = load_bundle(out / "gender-ko", weights=False), load_bundle(ROOT / "checkpoints" / "gender-ko", weights=False)
    for key in ("model_type", "name", "dims", "labels"):       # shipped: format 1, labels stored twice
        assert getattr(a, key) == getattr(b, key), key
    assert FeatureConfig.from_dict(mine["features"]) == FeatureConfig.from_dict(shipped["features"])
    assert mine["provenance"]["steps"] == 4
    # The calibrate stage refitted the temperature on the 4 dev utterances (x 8 conditions) and
    # wrote it into the release.
    fit = json.loads(next(line for line in log.splitlines() if line.startswith('{"temperature"')))
    assert fit["items"] == 4 * 8
    assert mine["calibration"]["method"] == "temperature"
    assert mine["calibration"]["fitted_on"] == shipped["calibration"]["fitted_on"]
    assert mine["calibration"]["temperature"] == pytest.approx(fit["temperature"], abs=1e-4)
    report = json.loads((out / "results" / "gender_eval.json").read_text(encoding="utf-8"))
    assert report

    clf = GenderClassifier.load(str(out / "gender-ko"))
    result = clf.predict(str(CLIP))
    assert result.label in ("female", "male")
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    shipped_result = GenderClassifier.load(str(ROOT / "checkpoints" / "gender-ko")).predict(str(CLIP))
    assert not np.allclose(list(result.probabilities.values()), list(shipped_result.probabilities.values()))


def test_gender_child_recipe_writes_both_releases_and_the_default_hands_telephone_audio_to_the_other(gender_child):
    """gender-child-ko and its narrowband release, regenerated together: the first names the second
    and finds it beside itself; the second started from the first and learned from its answers."""
    from speech.analysis import mixed_rule
    from speech.band import narrowband_used
    from training.conditions import band_condition

    out, log = gender_child
    for n, name in enumerate(["prepare", "children", "train", "narrowband", "package", "evaluate"]):
        assert f"stage {n} {name}: done" in log
    main, narrow = out / "gender-child-ko", out / "gender-child-ko-narrowband"
    for folder in (main, narrow):
        mine, shipped = load_bundle(folder, weights=False), load_bundle(ROOT / "checkpoints" / folder.name, weights=False)
        for key in ("model_type", "name", "dims", "labels"):
            assert getattr(mine, key) == getattr(shipped, key), (folder.name, key)
    a, b = config(main), config(narrow)
    assert a["narrowband"] == config(ROOT / "checkpoints" / "gender-child-ko")["narrowband"] == narrow.name
    assert "narrowband" not in b
    assert a["provenance"]["init"] == a["provenance"]["distill"] == "checkpoints/gender-ko"
    assert b["provenance"]["init"] == b["provenance"]["band_teacher"] == str(out / "exp" / "gc" / "release")
    assert b["provenance"]["train_config"]["band_prob"] == 0.5
    # The children stage made synthetic children of the train speakers through both vocoders, and the
    # train stage used both.
    made = {}
    for kind in ("train", "train-world"):
        rows = [json.loads(line) for line in open(out / "data" / "child" / kind / "manifest.jsonl", encoding="utf-8")]
        assert {r["gender"] for r in rows} == {"child", "female", "male"}     # children and pitch-raised adults
        made[kind] = {r["transform"] for r in rows}
    assert made == {"train": {"child_voice", "pitch_only"}, "train-world": {"world", "world_pitch_only"}}
    assert a["provenance"]["train_config"]["extra_train"] == [
        str(out / "data" / "child" / kind / "manifest.jsonl") for kind in ("train", "train-world")]
    # Stage 4 chose gender-child-ko's mixed-voice rule on conversations of train speakers and wrote it in.
    chosen = json.loads((out / "results" / "mixed_voices.json").read_text(encoding="utf-8"))["chosen"]
    assert a["mixed_voice"]["confidence"] == chosen["confidence"] in (0.0, 0.96) and "mixed_voice" not in b
    assert mixed_rule(GenderClassifier.load(str(main))) == {"confidence": chosen["confidence"], "share": chosen["share"]}
    # Both evaluated, through the band limits too.
    for folder in (main, narrow):
        report = json.loads((out / "results" / f"{folder.name}_eval.json").read_text(encoding="utf-8"))
        assert {"clean", "phone", "highpass300"} <= set(report["conditions"])
        assert report["conditions"]["clean"]["called_child"].keys() >= {"adult", "synthetic-child", "speed-child"}

    woman = load_audio(str(ROOT / "tests" / "fixtures" / "gender" / "ava00021.flac"))
    clf = GenderClassifier.load(str(main))
    assert clf.for_band(woman) == (clf, [])
    companion, warnings = clf.for_band(band_condition(woman, "phone"))
    assert companion.model_name == narrow.name and Path(companion.folder) == narrow
    assert warnings == [narrowband_used(narrow.name)]
    result = clf.predict(woman)
    assert set(result.probabilities) == {"female", "male", "child"} and result.model == "gender-child-ko"
    shipped = GenderClassifier.load(str(ROOT / "checkpoints" / "gender-child-ko")).predict(woman)
    assert not np.allclose(list(result.probabilities.values()), list(shipped.probabilities.values()))


def test_tv_recipe_writes_a_detector_that_scores_a_real_voice(tv):
    from speech.tv import FEATURES, TVDetector

    out, log = tv
    for n, name in enumerate(["prepare", "fit", "package"]):
        assert f"stage {n} {name}: done" in log
    mine, shipped = TVDetector.load(str(out / "tv-ko")), TVDetector.load(str(ROOT / "checkpoints" / "tv-ko"))
    assert mine.features == shipped.features == FEATURES and 0 < mine.threshold < 1
    assert config(out / "tv-ko")["name"] == config(ROOT / "checkpoints" / "tv-ko")["name"] == "tv-ko"
    report = json.loads((out / "results" / "tv_eval.json").read_text(encoding="utf-8"))
    assert report["dev"]["clusters"] == 16 and report["dev"]["tv_clusters"] == 8      # 2 per condition, TV twice
    assert report["threshold"] == pytest.approx(mine.threshold, abs=1e-4)
    rows = [json.loads(line) for line in open(out / "exp" / "tv" / "features.jsonl", encoding="utf-8")]
    assert len(rows) == 32 and set(FEATURES) <= set(rows[0])
    # A fit of its own (on 16 train clusters) that scores a real voice, not the shipped coefficients.
    woman = load_audio(str(ROOT / "tests" / "fixtures" / "gender" / "ava00021.flac"))
    spans = [(0.0, len(woman) / 16000)]
    assert 0.0 <= mine.probability(woman, spans) <= 1.0
    assert mine.coef != shipped.coef and mine.probability(woman, spans) != shipped.probability(woman, spans)


def test_campplus_recipe_writes_a_tuned_release_that_finds_speakers(campplus):
    """recipes/speaker-campplus: the shipped network's weights (small budget: copied, not
    downloaded), fine-tuned two steps and stored in float16, with a whitening and clustering of its
    own, from its own train conversations."""
    from speech.diarize import diarize, release_settings
    from speech.speaker import SpeakerEncoder
    from speech.vad import speech_spans

    out, log = campplus
    for n, name in enumerate(["prepare", "convert", "finetune", "conversations", "tune", "project", "evaluate"]):
        assert f"stage {n} {name}: done" in log
    tuning = json.loads((out / "results" / "diarization_tuning.json").read_text(encoding="utf-8"))
    converted = SpeakerEncoder.load(str(out / "exp" / "speaker" / "converted"))
    enc = SpeakerEncoder.load(str(out / "speaker-campplus"))
    shipped = SpeakerEncoder.load(str(ROOT / "checkpoints" / "speaker-campplus"))
    audio = load_audio(str(CLIP))
    assert np.allclose(converted.embed_utterance(audio), shipped.embed_utterance(audio), atol=1e-6)  # the network
    tuned = enc.embed_utterance(audio)
    assert not np.allclose(tuned, shipped.embed_utterance(audio), atol=1e-4)     # moved by the fine-tune ...
    assert float(tuned @ shipped.embed_utterance(audio)) > 0.9                   # ... not lost
    cfg = enc.config
    assert cfg["provenance"]["stored_dtype"] == "float16" and "train_speaker" in cfg["provenance"]["training"]
    stored = load_file(str(out / "speaker-campplus" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for k, v in stored.items() if v.is_floating_point() and "projection" not in k)
    assert cfg["projection"]["kind"] == "wccn" and enc.projection[1].shape == (192, 192)
    assert not np.allclose(enc.projection[1], shipped.projection[1])       # fitted on its own conversations
    settings = release_settings(enc)
    assert settings.method == tuning["best"]["method"] and settings.threshold == tuning["best_ahc"]["threshold"]
    assert json.loads((out / "results" / "diarization_eval.json").read_text(encoding="utf-8"))["summary"]
    woman, man = (load_audio(str(ROOT / "tests" / "fixtures" / "gender" / f)) for f in ("ava00021.flac", "emh00305.flac"))
    gap = np.zeros(8000, np.float32)
    both = np.concatenate([woman, gap, man, gap, woman])
    assert len({k for *_, k in diarize(both, speech_spans(both, max_span=30.0), enc)}) == 2


def test_tune_mixed_scores_the_recipes_train_conversations(campplus, tmp_path):
    """training/tune_mixed on the recipe's train conversations and window cache: one row per file
    and grid pair; with nothing taken out, its DER is the diarization's as tune_diarization scores it."""
    from speech.diarize import assign, release_settings
    from speech.speaker import SpeakerEncoder
    from training.diarization import annotation, der_metric, reference
    from training.tune_mixed import choose, main

    out, _ = campplus
    conv, cache = out / "data" / "conversations" / "train", out / "exp" / "speaker" / "cache" / "train"
    main(["--conversations", str(conv), "--caches", str(cache), "--variants", "tv,clean", "--limit", "2",
          "--grid", "0/0,0.92/0.15", "--out", str(tmp_path / "mixed")])
    res = json.loads((tmp_path / "mixed.json").read_text(encoding="utf-8"))
    assert len(res["rows"]) == 2 * 2 * 2 and [r["confidence"] for r in res["summary"]] == [0.0, 0.92]
    assert "| none taken out |" in (tmp_path / "mixed.md").read_text(encoding="utf-8")
    # The pair chosen has the lowest share error; among pairs that measure alike, the middle one.
    share = {r["confidence"]: np.mean([r[v]["share_error_pp"] for v in ("tv", "clean")]) for r in res["summary"]}
    assert res["chosen"] == choose(res["summary"], ["tv", "clean"]) and share[res["chosen"]["confidence"]] == min(share.values())
    alike = [{**res["summary"][0], "confidence": c} for c in (0.9, 0.95, 0.97, 0.99)]
    assert choose(alike, ["tv", "clean"])["confidence"] == 0.95
    enc = SpeakerEncoder.load()
    truths = {t["name"]: t for t in map(json.loads, (conv / "truth.jsonl").read_text(encoding="utf-8").splitlines())}
    for r in res["rows"]:
        if r["confidence"] == 0:
            z = np.load(cache / f"{r['conversation']}.{r['variant']}.npz")
            hyp = assign(enc.project(z["emb"]), [tuple(w) for w in z["wins"]], z["owner"],
                         [tuple(s) for s in z["spans"]], None, release_settings(enc))
            der = der_metric()(reference(truths[r["conversation"]]), annotation(hyp))
            assert r["der"] == pytest.approx(100 * der, abs=0.01)


def test_evaluate_speakers_scores_the_analysis_with_and_without_tv_detection(campplus, tmp_path):
    """training/evaluate_speakers on the recipe's dev conversation: the `speakers-tv` system is the
    analysis with --detect-tv, scored and reported beside `speakers`; an unknown system is refused."""
    from training.evaluate_speakers import main

    out, _ = campplus
    res = tmp_path / "eval"
    main(["--conversations", str(out / "data" / "conversations" / "dev"), "--variants", "tv",
          "--systems", "speakers,speakers-tv", "--out", str(res)])
    report = json.loads(res.with_suffix(".json").read_text(encoding="utf-8"))
    assert set(report["summary"]) == {"speakers/tv", "speakers-tv/tv"}
    rows = {r["system"]: r for r in report["rows"]}
    assert all(0.0 <= rows[k]["der"] < 100.0 and "tv_speakers_found" in rows[k] for k in rows)
    # Without TV detection the report warns exactly where the detection would take speakers.
    assert rows["speakers"]["tv_warning"] == (rows["speakers-tv"]["tv_speakers_found"] > 0)
    assert not rows["speakers-tv"]["tv_warning"] and rows["speakers"]["tv_speakers_found"] == 0
    md = res.with_suffix(".md").read_text(encoding="utf-8")
    assert "--systems speakers,speakers-tv" in md
    assert f"speakers/tv {int(rows['speakers']['tv_warning'])} of 1" in md
    assert report["gender_model"] == "gender-child-ko" and "gender model gender-child-ko;" in md
    with pytest.raises(SystemExit):
        main(["--conversations", str(out / "data" / "conversations" / "dev"), "--systems", "speakers,tv-only"])
    # --model: another gender release scores the same analysis (the female / male one never says child).
    main(["--conversations", str(out / "data" / "conversations" / "dev"), "--variants", "tv", "--systems", "speakers",
          "--model", "checkpoints/gender-ko", "--out", str(res)])
    other = json.loads(res.with_suffix(".json").read_text(encoding="utf-8"))
    assert other["gender_model"] == "gender-ko" and "--model checkpoints/gender-ko" in res.with_suffix(".md").read_text(encoding="utf-8")
    assert other["rows"][0]["der"] == pytest.approx(rows["speakers"]["der"], abs=0.01)   # the speakers found are the same


def test_tune_tv_measures_the_found_speakers_once_and_sweeps_the_rule(campplus, tmp_path):
    """training/tune_tv on the recipe's dev conversation with a TV: one row per found speaker (its
    seconds, TV probability and level as speech.tv.speaker_scores gives them, and how much of it is
    family speech), the whole grid judged from those rows; a second run from the saved rows agrees,
    and rows of several runs are pooled."""
    from training.tune_tv import FAR_DB_GRID, FAR_PROBABILITY_GRID, MIN_SPEAKERS_GRID, SOUNDS_DB_GRID, main

    out, _ = campplus
    conv = out / "data" / "conversations" / "dev"
    res = main(["--conversations", f"{conv}:tv", "--out", str(tmp_path / "tune")])
    assert res["rows"] and len(res["grid"]) == (len(SOUNDS_DB_GRID) * len(FAR_DB_GRID) * len(FAR_PROBABILITY_GRID)
                                                * len(MIN_SPEAKERS_GRID))
    assert all(0.0 <= r["family"] <= 1.0 and r["seconds"] > 0 and 0.0 <= r["probability"] <= 1.0 and r["level_db"] < 0
               for r in res["rows"])
    assert max(r["family"] for r in res["rows"]) > 0.8          # the family's speakers are found
    report = json.loads((tmp_path / "tune.json").read_text(encoding="utf-8"))
    assert report["chosen"] == res["chosen"] and "far_probability" in (tmp_path / "tune.md").read_text(encoding="utf-8")
    again = main(["--rows", str(tmp_path / "tune.json"), "--out", str(tmp_path / "again")])
    assert again["grid"] == res["grid"] and again["chosen"] == res["chosen"]
    pooled = main(["--rows", str(tmp_path / "tune.json"), str(tmp_path / "again.json"), "--out", str(tmp_path / "pooled")])
    assert pooled["rows"] == res["rows"] * 2


def test_train_tv_fits_on_the_speakers_found_in_conversations(campplus, tmp_path):
    """training/train_tv with the recipe's dev conversation (TV variant): the speakers the analysis
    finds there (training/tv_rows) join the fit and its family threshold; the release loads
    through speech.tv, and tune_tv --detector scores the saved rows with it from their features.
    The rows' own probabilities are what the shipped detector gives for those features."""
    from speech.tv import MIN_SECONDS, TVDetector, default_detector
    from training import train_tv, tune_tv
    from training.tv_rows import rescore

    out, _ = campplus
    conv = out / "data" / "conversations" / "dev"
    res = train_tv.main(["--train", str(out / "data" / "train.jsonl"), "--dev", str(out / "data" / "dev.jsonl"),
                         "--noise", str(SHARED / "noise"), "--n", "4", "--conversations", f"{conv}:tv",
                         "--min-cluster-seconds", "1", "--out", str(tmp_path / "tv"), "--results", str(tmp_path / "tv_eval")])
    rows = res["rows"]
    fitted = [r for r in rows if r["seconds"] >= MIN_SECONDS]
    assert fitted and all("features" in r for r in fitted) and all(0.0 <= r["child"] <= 1.0 for r in rows)
    shipped = rescore(rows, default_detector())
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(rows, shipped)) < 2e-3
    det = TVDetector.load(str(tmp_path / "tv"))
    assert det.config["provenance"]["conversation_clusters"] == len(fitted) == res["conversations"]["clusters"]
    assert det.config["provenance"]["clusters"] == len(fitted) + 4 * 8      # 4 per family condition, 8 per TV one
    family = [r for r in fitted if r["family"] >= 0.5]
    assert sum(det.probability_of(r["features"]) >= det.threshold for r in family) <= 0.01 * (len(family) + 16)
    assert "TV vs parents across the room" in (tmp_path / "tv_eval.md").read_text(encoding="utf-8")
    tuned = tune_tv.main(["--rows", str(tmp_path / "tv_eval.json"), "--detector", str(tmp_path / "tv"),
                          "--out", str(tmp_path / "tune")])
    assert tuned["threshold"] == det.threshold
    assert [r["probability"] for r in tuned["rows"]] == [r["probability"] for r in rescore(rows, det)]
    assert [r["probability"] for r in tuned["rows"]] != [r["probability"] for r in rows]


def test_speaker_recipe_writes_a_tuned_release_that_finds_speakers(speaker):
    from speech.diarize import diarize, release_settings
    from speech.speaker import SpeakerEncoder
    from speech.vad import speech_spans

    out, log = speaker
    for n, name in enumerate(["prepare", "teacher", "conversations", "train", "tune", "project", "evaluate"]):
        assert f"stage {n} {name}: done" in log
    tuning = json.loads((out / "results" / "diarization_tuning.json").read_text(encoding="utf-8"))
    enc = SpeakerEncoder.load(str(out / "speaker-ko"))
    assert enc.model_name == "speaker-ko" and enc.config["provenance"]["steps"] == 3
    assert enc.config["projection"]["kind"] == "wccn" and enc.projection[1].shape == (256, 256)
    # the clustering the tune stage chose for this encoder is the one diarize uses (spectral's
    # fallback for short recordings: the best average-linkage threshold)
    ahc = min((r for r in tuning["grid"] if r["method"] == "ahc"), key=lambda r: r["der_mean"])
    settings = release_settings(enc)
    assert settings.method == tuning["best"]["method"] == enc.config["diarization"]["method"]
    assert settings.threshold == ahc["threshold"] == tuning["best_ahc"]["threshold"] == enc.config["diarization"]["threshold"]
    assert {r["method"] for r in tuning["grid"]} == {"ahc", "spectral"}
    assert json.loads((out / "results" / "diarization_eval.json").read_text(encoding="utf-8"))["summary"]
    # Weights of its own (not the teacher's), and they still tell a man from a woman.
    teacher = SpeakerEncoder.load(str(ROOT / "checkpoints" / "speaker-resemblyzer"))
    audio = load_audio(str(CLIP))
    assert not np.allclose(enc.embed_utterance(audio), teacher.embed_utterance(audio), atol=1e-4)
    woman, man = (load_audio(str(ROOT / "tests" / "fixtures" / "gender" / f)) for f in ("ava00021.flac", "emh00305.flac"))
    gap = np.zeros(8000, np.float32)
    both = np.concatenate([woman, gap, man, gap, woman])
    found = diarize(both, speech_spans(both, max_span=30.0), enc)
    assert len({k for *_, k in found}) == 2


def test_curve_recipe_trains_nested_subsets_and_fits_cer_against_hours(curve):
    out, log = curve
    for stage in ["0 prepare", "1 subsets", "2 train-0.1min", "2 train-all", "3 evaluate-0.1min", "3 evaluate-all",
                  "4 fit"]:
        assert f"stage {stage}: done" in log
    subsets = json.loads((out / "data" / "curve" / "subsets.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in subsets] == ["0.1min", "all"]
    assert set(subsets[0]["speakers"]) < set(subsets[1]["speakers"]) and subsets[0]["hours"] < subsets[1]["hours"]
    report = json.loads((out / "results" / "ds2-learning-curve.json").read_text(encoding="utf-8"))
    assert [p["name"] for p in report["points"]] == ["0.1min", "all"]
    for point in report["points"]:
        assert point["steps"] == 2 and point["stopped"] == "max_steps 2 reached"   # the same cap for every point
        assert 0 < point["dev_cer_greedy"] <= 2 and 0 <= point["dev_cer_beam"] <= 2
        # Each point's release loads through the library and answers on a real clip.
        engine = load_engine("ds2", model=str(out / "exp" / point["name"] / "ds2"), decoder="beam")
        assert engine.decoder_name == "beam+lm" and abs(engine.transcribe(str(CLIP)).duration - 2.3) < 0.05
    assert {f["key"] for f in report["fits"]} == {"dev_cer_greedy", "dev_cer_beam"}
    assert (out / "results" / "ds2-learning-curve.png").stat().st_size > 10_000
    assert "200 h" in (out / "results" / "ds2-learning-curve.md").read_text(encoding="utf-8")


def test_distill_recipe_trains_a_student_on_whisper_teacher_posteriors(distill):
    out, log, _ = distill
    stages = ["prepare", "states", "head", "posteriors", "train-posteriors", "package-posteriors", "evaluate-posteriors"]
    for n, name in enumerate(stages):
        assert f"stage {n} {name}: done" in log
    head = load_bundle(out / "teacher" / "head", "whisper-ctc-head")
    assert head.metrics["holdout_utterances"] > 0 and "eval" in head.metrics        # dev only reported
    assert set(head.metrics["holdout_speakers"]).isdisjoint({json.loads(line)["speaker"] for line in
                                                             (out / "data" / "dev-small.jsonl").read_text().splitlines()})
    for target, teacher in (("posteriors", "teacher/train-top8"), ("states", "teacher/states")):
        train_log = [json.loads(line) for line in (out / "exp" / target / "student" / "train.log").read_text().splitlines()]
        assert all(r["train_kd_loss"] > 0 for r in train_log)
        release = out / f"ds2-distilled-{target}"
        student = load_bundle(release, "deepspeech2", weights=False)
        assert student.info["training"]["config"]["teacher"].endswith(teacher)
        report = json.loads((out / "results" / f"dev-ds2-distilled-{target}.json").read_text(encoding="utf-8"))
        assert [s["system"].split(" ")[-1] for s in report["systems"]] == [
            str(release), str(release), "checkpoints/ds2-ko", "checkpoints/ds2-ko"]


def test_distill_recipe_runs_the_states_target_beside_without_redoing_the_teacher(distill):
    _, _, log_states = distill
    for name in ("train-states", "package-states", "evaluate-states"):
        assert f"{name}: done" in log_states
    assert "stage 1 states" not in log_states and "stage 2 head" not in log_states
