"""The child class: adults stay adults, child-like voices are children, 2-class releases still load."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from speech.audio import SAMPLE_RATE, load_audio
from speech.bundle import load_release, save_release
from speech.gender import CHILD, GenderClassifier
from speech.pitch import median_f0
from training.child_voice import child_voice, envelope_factor, speed_child, world_child
from training.train_gender import distill_loss, holdout_split, init_from

FIX = Path(__file__).parent / "fixtures" / "gender"
ADULTS = [(FIX / "avc00010.flac", "female"), (FIX / "ava00021.flac", "female"),
          (FIX / "emf00002.flac", "male"), (FIX / "emh00305.flac", "male")]


CHILD_RELEASE = Path(__file__).parent.parent / "checkpoints" / "gender-child-ko"


@pytest.fixture(scope="module")
def clf():
    c = GenderClassifier.load(str(CHILD_RELEASE))
    assert c.labels == ("female", "male", CHILD)
    return c


def test_child_voice_sets_pitch_and_keeps_length():
    a = load_audio(ADULTS[2][0])                          # a man, ~120 Hz
    y = child_voice(a, f0=300.0, formant_scale=1.35)
    assert len(y) == len(a) and np.isfinite(y).all()
    assert abs(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(a ** 2)) - 1) < 0.05
    assert 250 < median_f0(y) < 360
    # the formant warp moves spectral weight up: more energy above 2 kHz than a pitch change alone
    def upper_share(x):
        s = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        return s[f > 2000].sum() / s.sum()
    assert upper_share(y) > 1.3 * upper_share(child_voice(a, f0=300.0, formant_scale=1.0))


@pytest.mark.parametrize("path,label", ADULTS)
def test_world_child_sets_pitch_and_formants(path, label):
    """training.child_voice.world_child (the WORLD vocoder's chain): the median F0 set, the spectral
    envelope stretched by the formant scale and by nothing else, length and RMS kept."""
    a = load_audio(path)
    w = world_child(a, f0=300.0, formant_scale=1.35)
    assert len(w) == len(a) and np.isfinite(w).all()
    assert abs(np.sqrt(np.mean(w ** 2)) / np.sqrt(np.mean(a ** 2)) - 1) < 0.05
    assert 250 < median_f0(w) < 360
    assert 1.25 < envelope_factor(a, w) < 1.45
    assert 0.95 < envelope_factor(a, world_child(a, f0=300.0, formant_scale=1.0)) < 1.05


@pytest.mark.parametrize("path,label", ADULTS)
def test_adults_are_not_children(clf, path, label):
    r = clf.predict(path)
    assert r.label == label
    assert set(r.probabilities) == {"female", "male", "child"}
    assert abs(sum(r.probabilities.values()) - 1) < 1e-3


@pytest.mark.parametrize("path,label", ADULTS)
def test_shifted_adult_reads_as_child(clf, path, label):
    a = load_audio(path)
    rng = random.Random(str(path))
    y = child_voice(a, f0=rng.uniform(260, 340), formant_scale=1.3 if label == "female" else 1.4)
    r = clf.predict((SAMPLE_RATE, y))
    assert r.label == "child", r.probabilities


def test_resampled_adult_reads_as_child(clf):
    """A transform the model was not trained on: plain resampling (F0, formants, tempo together)."""
    r = clf.predict((SAMPLE_RATE, speed_child(load_audio(ADULTS[0][0]), 1.4)))
    assert r.label == "child", r.probabilities


def test_high_pitched_woman_stays_adult(clf):
    """A mother speaking to her child raises her pitch; her formants stay hers."""
    a = load_audio(ADULTS[0][0])
    y = child_voice(a, f0=1.3 * median_f0(a), formant_scale=1.0)
    assert clf.predict((SAMPLE_RATE, y)).label == "female"


def test_two_class_release_still_loads(tmp_path):
    """Older releases (labels female, male) load and answer with two labels."""
    state, config = load_release(CHILD_RELEASE, expected_type="gender-cnn")
    labels = config["dims"]["labels"]
    keep = [labels.index("female"), labels.index("male")]
    state = {k: (v[keep] if k.startswith("head.") else v) for k, v in state.items()}
    config = json.loads(json.dumps(config))
    config["dims"]["labels"] = ["female", "male"]
    save_release(tmp_path, state, config)
    assert GenderClassifier.load().labels[:2] == ("female", "male")     # the embedded default
    old = GenderClassifier.load(str(tmp_path))
    assert old.labels == ("female", "male")
    r = old.predict(ADULTS[2][0])
    assert r.label == "male" and set(r.probabilities) == {"female", "male"}
    # and a 2-class release seeds a 3-class network by label (train_gender --init)
    from speech.gender import GenderDims, GenderNet

    net = GenderNet(GenderDims.from_dict({**config["dims"], "labels": ["female", "male", "child"]}))
    init_from(net, str(tmp_path))
    assert torch.equal(net.head.weight[:2], state["head.weight"])


def test_calibration_holdout_takes_whole_utterances_of_train_speakers():
    """The temperature is fitted on train-speaker utterances held out of training, each with all
    of its synthetic copies (a copy of a held-out utterance left in training would leak it)."""
    rows = []
    for spk, n in (("nea", 20), ("kih", 10)):
        for i in range(n):
            utt = f"{spk}{i:05d}"
            rows += [{"utt": utt, "speaker": spk, "gender": "female"},
                     {"utt": utt + ".child0", "speaker": "child-" + spk, "gender": "child", "source_speaker": spk},
                     {"utt": utt + ".female0", "speaker": spk, "gender": "female", "source_speaker": spk}]
    kept, held = holdout_split(rows, 0.1, seed=0)
    assert len(kept) + len(held) == len(rows) and not {r["utt"] for r in kept} & {r["utt"] for r in held}
    held_src = {r["utt"].split(".")[0] for r in held}
    assert len(held) == 3 * len(held_src) and len(held_src) == 2 + 1          # 10 % of 20 and of 10
    assert not held_src & {r["utt"].split(".")[0] for r in kept}
    assert holdout_split(rows, 0.1, seed=0) == (kept, held)                    # reproducible


def test_distillation_constrains_only_the_adult_split():
    """Learning `child` may move the child logit freely; adults keep the teacher's female:male odds."""
    teacher = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 2.0]])
    y = torch.tensor([0, 1, 2])                                                # female, male, child
    adult = torch.tensor([0, 1])
    same = torch.cat([teacher + 4.0, torch.tensor([[-3.0], [5.0], [9.0]])], 1)   # shifted, any child logit
    assert float(distill_loss(same, teacher, y, adult)) < 1e-6
    flipped = torch.cat([teacher.flip(1), torch.zeros(3, 1)], 1)
    assert float(distill_loss(flipped, teacher, y, adult)) > 0.5
    only_children = torch.tensor([2, 2, 2])
    assert float(distill_loss(flipped, teacher, only_children, adult)) == 0.0


def test_default_model_is_the_child_release_calibrated_without_dev_speakers():
    """gender-child-ko answers by default; its temperature was fitted on utterances of training
    speakers held out of training, never on the dev speakers its evaluation reports."""
    clf = GenderClassifier.load()
    assert clf.labels == ("female", "male", CHILD) and clf.folder.resolve() == CHILD_RELEASE.resolve()
    prov = clf.config["provenance"]
    calib = {u.split(".")[0][:3] for u in prov["calibration_utterances"]}
    assert calib and calib <= set(prov["train_speakers"]) and not calib & set(prov["dev_speakers"])


def test_one_child_voice_per_source_speaker(tmp_path, capsys):
    """child_voice --one-voice: every utterance of one source speaker gets the same child voice (the
    conversations' child), without it a new one each."""
    from training import child_voice as cv

    clips = [FIX.parent / "examples" / "ko_female_ava00013.flac", FIX / "ava00021.flac", FIX / "emh00305.flac"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(c), "speaker": c.stem.split("_")[-1][:3], "gender": g, "text": "",
                                            "utt": c.stem}) + "\n" for c, g in zip(clips, ["female", "female", "male"])),
                        encoding="utf-8")
    voices = {}
    for flag in (["--one-voice"], []):
        out = tmp_path / ("one" if flag else "each")
        cv.main(["--manifest", str(manifest), "--out", str(out), "--copies", "1", "--seed", "3", *flag])
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [r["speaker"] for r in rows] == ["child-ava", "child-ava", "child-emh"]
        voices[bool(flag)] = [(r["f0"], r["formant_scale"]) for r in rows]
    assert voices[True][0] == voices[True][1] != voices[True][2]
    assert voices[False][0] != voices[False][1]
    # --speed (plain resampling): one factor per source speaker with --one-voice, and the same random
    # stream either way (the utterance drawn first keeps its factor).
    for flag in (["--one-voice"], []):
        out = tmp_path / ("speed-one" if flag else "speed-each")
        cv.main(["--manifest", str(manifest), "--out", str(out), "--copies", "1", "--speed", "1.25", "1.5", "--seed", "3", *flag])
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
        voices[bool(flag)] = [r["factor"] for r in rows]
        assert all(1.25 <= f <= 1.5 for f in voices[bool(flag)])
    assert voices[True][0] == voices[True][1] != voices[True][2] and voices[True][2] == voices[False][2]
    assert voices[False][0] != voices[False][1] and voices[True][0] == voices[False][0]
    # --world (the WORLD vocoder): the same voice draws as the training transform's, another chain.
    out = tmp_path / "world"
    cv.main(["--manifest", str(manifest), "--out", str(out), "--copies", "1", "--world", "--seed", "3", "--one-voice"])
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["transform"] for r in rows} == {"world"}
    one = [json.loads(x) for x in (tmp_path / "one" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["f0"], r["formant_scale"]) for r in rows] == [(r["f0"], r["formant_scale"]) for r in one]
    # with --adult-pitch-copies, the pitch-raised adults go through WORLD too (the vocoder alone is no
    # cue for `child`): the adult's label and envelope, a higher F0.
    out = tmp_path / "world-adults"
    cv.main(["--manifest", str(manifest), "--out", str(out), "--copies", "0", "--adult-pitch-copies", "1", "--world"])
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["gender"], r["transform"]) for r in rows] == [("female", "world_pitch_only")] * 2 + [("male", "world_pitch_only")]
    for r, c in zip(rows, clips):
        a, y = load_audio(str(c)), load_audio(str(out / r["audio"]))
        assert r["f0"] > r["source_f0"] and median_f0(y) > 1.05 * median_f0(a)
        assert 0.93 < envelope_factor(a, y) < 1.07
    with pytest.raises(SystemExit):
        cv.main(["--manifest", str(manifest), "--out", str(out), "--world", "--speed", "1.25", "1.5"])
    # --check-envelope: each utterance's envelope factor through both transforms, nothing written.
    capsys.readouterr()
    cv.main(["--manifest", str(manifest), "--out", str(tmp_path / "none"), "--check-envelope"])
    checks = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [c["utt"] for c in checks] == [c.stem for c in clips] and not (tmp_path / "none").exists()
    assert all(1.25 < c["world_child_1.35"] < 1.45 and 0.95 < c["world_child_1.0"] < 1.05 for c in checks)
