"""training.learning_curve: nested subsets by whole speakers, the power-law fit and its
leave-one-out check, and the reading of a real training log (the shipped model's stage-1 run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import learning_curve as lc

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = ROOT / "results" / "ds2-cpu-main"      # the shipped DS2's stage-1 run: log and release


def rows(minutes_by_speaker: dict[str, float]) -> list[dict]:
    """Two utterances per speaker, half the speaker's minutes each."""
    return [{"speaker": s, "gender": "female" if i % 2 else "male", "duration": 30.0 * m, "audio": f"{s}{k}.flac"}
            for i, (s, m) in enumerate(minutes_by_speaker.items()) for k in range(2)]


def test_subsets_are_nested_whole_speakers_near_their_targets():
    minutes = {f"s{i:02d}": m for i, m in enumerate([0.3, 0.5, 0.7, 1.2, 1.5, 1.6, 1.7, 1.8, 2.7, 3.0, 7.8, 26.2,
                                                     1.3, 1.5, 1.6, 1.7, 0.7, 0.5, 2.9, 1.2, 1.5, 1.7, 0.7, 1.6])}
    subsets = lc.nested_subsets(rows(minutes), [10, 20, 40], seed=3)
    assert len(subsets) == 4
    for small, big in zip(subsets, subsets[1:]):
        assert set(small) < set(big)                        # nested, and each one grows
    assert sorted(subsets[-1]) == sorted(minutes)           # the last is everything
    for target, speakers in zip([10, 20, 40], subsets):
        got = sum(minutes[s] for s in speakers)
        assert target * 0.9 <= got <= target * lc.OVERSHOOT, (target, got)
    assert lc.nested_subsets(rows(minutes), [10, 20, 40], seed=3) == subsets
    assert lc.nested_subsets(rows(minutes), [10, 20, 40], seed=4) != subsets


def test_a_subset_no_speaker_fits_still_takes_one():
    subsets = lc.nested_subsets(rows({"a": 5.0, "b": 6.0, "c": 7.0}), [1, 2], seed=0)
    assert [len(s) for s in subsets] == [1, 2, 3]


def test_the_fit_recovers_a_power_law_and_checks_it_by_leaving_points_out():
    hours = [10 / 60, 20 / 60, 40 / 60, 68 / 60]
    points = [{"hours": h, "dev_cer_greedy": 0.5 * h ** -0.3} for h in hours]
    f = lc.fit(points, "dev_cer_greedy")
    assert f["a"] == pytest.approx(0.5) and f["b"] == pytest.approx(0.3)
    assert f["predictions"]["200"] == pytest.approx(0.5 * 200 ** -0.3)
    assert f["rms_log_residual"] == pytest.approx(0, abs=1e-9)
    assert [x["predicted"] for x in f["leave_one_out"]] == pytest.approx([x["measured"] for x in f["leave_one_out"]])
    points[-1]["dev_cer_greedy"] *= 1.5                     # a last point off the curve: LOO misses it
    f = lc.fit(points, "dev_cer_greedy")
    last = f["leave_one_out"][-1]
    assert last["measured"] / last["predicted"] == pytest.approx(1.5)
    assert lc.fit(points[:1], "dev_cer_greedy") is None     # one point: nothing to fit


@pytest.mark.skipif(not (STAGE1 / "train.log").exists(), reason="results/ds2-cpu-main/train.log missing")
def test_a_run_is_read_from_its_training_log():
    run = lc.read_run(STAGE1)
    records = [json.loads(line) for line in (STAGE1 / "train.log").read_text().splitlines()]
    evals = [r for r in records if "dev_cer" in r]
    assert run["dev_cer_greedy"] == min(r["dev_cer"] for r in evals)
    assert run["steps"] == records[-1]["step"] and run["evaluations"] == len(evals)
    assert run["best_step"] in [r["step"] for r in evals]
    assert run["steps_between_evaluations"] > 0
