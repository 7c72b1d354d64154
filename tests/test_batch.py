"""`python -m speech batch` (speech.batch): a folder of real recordings to one table; resuming after
a finished run, a changed file and `kill -9`; a bad file; manifests; the same table on a local Ray."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speech import cli
from speech.batch import TIMING_FIELDS, Job, discover, read_summary
from speech.stt import load_engine

ROOT = Path(__file__).parent.parent
EXAMPLES = Path(__file__).parent / "fixtures" / "examples"
KO = Path(__file__).parent / "fixtures" / "ko-speech"
FAMILY = EXAMPLES / "family_conversation.ogg"
FAMILY_TRUTH = json.loads((EXAMPLES / "family_conversation.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.usefixtures("one_thread")


def make_folder(root: Path, families: int = 1) -> Path:
    """Real clips in nested folders, and one file that is not audio."""
    (root / "house-a").mkdir(parents=True)
    (root / "house-b" / "day2").mkdir(parents=True)
    for k in range(families):
        shutil.copy(FAMILY, root / ("house-a" if k % 2 == 0 else "house-b/day2") / f"family{k}.ogg")
    shutil.copy(EXAMPLES / "ko_female_ava00013.flac", root / "house-a")
    shutil.copy(EXAMPLES / "ko_male_emh00003.flac", root / "house-b")
    for f in sorted(KO.glob("*.flac")):
        shutil.copy(f, root / "house-b" / "day2")
    (root / "house-b" / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really audio")
    (root / "notes.txt").write_text("not audio, not listed\n")
    return root


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speech", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted in-process run over a folder: (input folder, output folder, summary rows)."""
    root = make_folder(tmp_path_factory.mktemp("in"), families=3)
    out = tmp_path_factory.mktemp("out")
    code = cli.main(["batch", str(root), "--out", str(out), "--tasks", "analyze,gender", "--no-progress"])
    assert code == 1                                  # the broken file is an error in the table
    return root, out, read_summary(out / "summary.csv")


def test_folder_to_table_with_exports_and_a_bad_file(reference):
    root, out, rows = reference
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(ids) == 9       # every audio file once, notes.txt left out
    assert "house-b/broken.wav" in ids
    by = {r["id"]: r for r in rows}
    bad = by.pop("house-b/broken.wav")
    assert "could not be read" in bad["error"] and bad["duration"] == "" and bad["speech_seconds"] == ""
    for r in by.values():
        assert r["error"] == "" and r["gender_model"].startswith("gender-child-ko@")
        assert 0 < float(r["speech_seconds"]) <= float(r["duration"])
        assert float(r["female_seconds"]) + float(r["male_seconds"]) == pytest.approx(float(r["speech_seconds"]), abs=2e-3)
    assert by["house-a/ko_female_ava00013.flac"]["gender"] == "female"
    assert float(by["house-a/ko_female_ava00013.flac"]["female_share"]) > 0.9
    assert by["house-b/ko_male_emh00003.flac"]["gender"] == "male"
    assert float(by["house-b/ko_male_emh00003.flac"]["male_share"]) > 0.9
    fam = by["house-a/family0.ogg"]
    assert float(fam["female_share"]) == pytest.approx(FAMILY_TRUTH["female_share"], abs=0.03)
    assert float(fam["parents_ratio"]) == pytest.approx(float(fam["female_seconds"]) / float(fam["male_seconds"]), rel=1e-3)
    # The per-recording files: JSON with the full analysis, the RTTM and per-turn CSV.
    rec = json.loads((out / "results" / "house-a" / "family0.ogg.json").read_text(encoding="utf-8"))
    assert rec["analysis"]["n_turns"] == int(fam["turns"]) == len(rec["analysis"]["turns"]) > 5
    assert rec["gender"]["label"] == fam["gender"] and rec["job"]["tasks"] == ["analyze", "gender"]
    rttm = (out / "results" / "house-a" / "family0.ogg.rttm").read_text().splitlines()
    assert rttm and all(line.split()[0] == "SPEAKER" and line.split()[1] == "family0" for line in rttm)
    speech = sum(float(line.split()[4]) for line in rttm)
    assert speech == pytest.approx(float(fam["speech_seconds"]), abs=0.05)
    turns_csv = (out / "results" / "house-a" / "family0.ogg.turns.csv").read_text().splitlines()
    assert turns_csv[0].startswith("turn,start,end") and len(turns_csv) == int(fam["turns"]) + 1
    assert not (out / "results" / "house-b" / "broken.wav.rttm").exists()
    assert (out / "summary.png").stat().st_size > 10_000


def test_a_second_run_skips_finished_recordings_and_redoes_changed_ones(reference, tmp_path):
    root, ref_out, ref_rows = reference
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    n = len(ref_rows)
    before = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    p = run_cli("batch", str(root), "--out", str(out), "--tasks", "gender,analyze", "--no-progress")
    assert f"0 processed, {n} already done" in p.stderr, p.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")} == before
    assert without_timing(read_summary(out / "summary.csv")) == without_timing(ref_rows)
    # Another task set is another job: nothing is reused.
    p = run_cli("batch", str(root), "--out", str(out), "--tasks", "gender", "--no-progress")
    assert f"{n} processed, 0 already done" in p.stderr, p.stderr
    # A recording whose file changed is done again, the others are not.
    changed = root / "house-b" / "broken.wav"
    saved = changed.read_bytes()
    try:
        shutil.copy(EXAMPLES / "ko_male_emh00003.flac", changed)
        p = run_cli("batch", str(root), "--out", str(out), "--tasks", "gender", "--no-progress")
        assert f"1 processed, {n - 1} already done" in p.stderr, p.stderr
        assert p.returncode == 0                          # no error left in the table
        rows = {r["id"]: r for r in read_summary(out / "summary.csv")}
        assert rows["house-b/broken.wav"]["gender"] == "male" and rows["house-b/broken.wav"]["error"] == ""
        p = run_cli("batch", str(root), "--out", str(out), "--tasks", "gender", "--no-progress", "--force")
        assert f"{n} processed, 0 already done" in p.stderr, p.stderr
    finally:
        changed.write_bytes(saved)


def test_kill_9_mid_batch_then_resume_gives_the_same_summary(reference, tmp_path):
    root, _, ref_rows = reference
    out = tmp_path / "out"
    args = [sys.executable, "-m", "speech", "batch", str(root), "--out", str(out), "--tasks", "analyze,gender",
            "--jobs", "2", "--no-progress"]
    # Its own process group, so that kill -9 reaches the driver and its workers at once.
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    done = []
    while time.monotonic() < deadline and proc.poll() is None:
        done = list((out / "results").rglob("*.json")) if (out / "results").exists() else []
        if done:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list((out / "results").rglob("*.json"))
    assert 1 <= len(done) < len(ref_rows), "the batch was not killed in the middle"
    for p in done:                                    # what is there is whole
        json.loads(p.read_text(encoding="utf-8"))
    visible = [p for p in (out / "results").rglob("*") if p.is_file() and not p.name.startswith(".")]
    n_done = len(list((out / "results").rglob("*.json")))
    p = run_cli("batch", str(root), "--out", str(out), "--tasks", "analyze,gender", "--jobs", "2", "--no-progress")
    assert p.returncode == 1, p.stderr                # the broken file, as in the reference run
    assert f"{len(ref_rows) - n_done} processed, {n_done} already done" in p.stderr, p.stderr
    assert not [q for q in out.rglob(".*") if q.is_file()]   # no temporary file left
    assert all(q.exists() for q in visible)
    assert without_timing(read_summary(out / "summary.csv")) == without_timing(ref_rows)


def test_transcribe_with_and_without_analysis(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLES / "ko_female_ava00013.flac", folder)
    shutil.copy(EXAMPLES / "ko_male_emh00003.flac", folder)
    out = tmp_path / "out"
    assert cli.main(["batch", str(folder), "--out", str(out), "--tasks", "transcribe", "--engine", "ds2",
                     "--no-progress"]) == 0
    engine = load_engine("ds2")
    rows = {r["id"]: r for r in read_summary(out / "summary.csv")}
    for name in rows:
        text = engine.transcribe(folder / name).text
        assert (out / "results" / f"{name}.txt").read_text(encoding="utf-8") == text + "\n"
        assert int(rows[name]["transcript_chars"]) == len(text.replace(" ", "")) > 0
        assert rows[name]["stt_engine"].startswith("ds2") and rows[name]["stt_model"].startswith("ds2-ko@")
        assert rows[name]["speech_seconds"] == "" and (out / "results" / f"{name}.srt").exists()
    assert not (out / "summary.png").exists()         # the figure needs the analysis
    # With the analysis, every turn is transcribed and the captions carry the gender.
    out2 = tmp_path / "out2"
    assert cli.main(["batch", str(folder), "--out", str(out2), "--tasks", "analyze,transcribe", "--engine", "ds2",
                     "--exports", "srt,txt", "--no-progress"]) == 0
    rec = json.loads((out2 / "results" / "ko_female_ava00013.flac.json").read_text(encoding="utf-8"))
    assert rec["transcript"]["per_turn"] and rec["transcript"]["text"]
    assert [t["text"] for t in rec["analysis"]["turns"] if t["text"]] == [s["text"] for s in rec["transcript"]["segments"]]
    assert " female]" in (out2 / "results" / "ko_female_ava00013.flac.srt").read_text(encoding="utf-8")  # [S1 female]


def test_manifest_input_and_bad_options(tmp_path):
    manifest = tmp_path / "list.jsonl"
    lines = [{"audio": str(KO / "kih00023.flac")}, {"audio": "missing.flac"}, {"audio": str(KO / "kih00023.flac")}]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    items = discover(manifest)
    assert [Path(i.path).name for i in items] == ["kih00023.flac", "missing.flac"]   # duplicates once
    assert items[1].id == "missing.flac" and items[1].path == str(tmp_path / "missing.flac")
    out = tmp_path / "out"
    assert cli.main(["batch", str(manifest), "--out", str(out), "--tasks", "gender", "--no-progress"]) == 1
    rows = read_summary(out / "summary.csv")
    assert rows[0]["gender"] == "male" and "No such audio file" in rows[1]["error"]
    with pytest.raises(ValueError, match=r"tasks = \['analyze', 'transcribe', 'gender'\]"):
        Job(tasks=("analyse",))
    with pytest.raises(ValueError, match="rttm export needs the task analyze"):
        Job(tasks=("transcribe",), exports=("rttm",))
    assert cli.main(["batch", str(manifest), "--out", str(out), "--tasks", "count"]) == 2
    assert cli.main(["batch", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_ray_gives_the_same_summary_as_the_local_run(reference, tmp_path):
    pytest.importorskip("ray", reason="Ray is in the cluster extra: pip install '.[cluster]'")
    root, _, ref_rows = reference
    out = tmp_path / "out"
    t0 = time.perf_counter()
    # local: a new Ray instance on this machine (auto would join a cluster already running here)
    p = run_cli("batch", str(root), "--out", str(out), "--tasks", "analyze,gender", "--jobs", "2", "--ray", "local",
                "--no-progress")
    print(f"ray run: {time.perf_counter() - t0:.1f} s")
    assert p.returncode == 1, p.stderr
    assert f"{len(ref_rows)} processed" in p.stderr, p.stderr
    rows = read_summary(out / "summary.csv")
    assert without_timing(rows) == without_timing(ref_rows)
    assert len({r["worker"] for r in rows}) >= 1 and all(r["worker"] for r in rows)


def test_analysis_alone_decodes_in_the_analysis_with_the_same_rows(reference, tmp_path):
    """With analyze alone a worker hands analyze the file (one copy of the samples, the level gain
    applied in place); the reference run, with gender too, hands it the decoded array. Same rows;
    and a recording without speech still gets its duration beside its error."""
    from speech.audio import SAMPLE_RATE, load_audio
    from speech.batch import Worker

    root, _, ref_rows = reference
    out = tmp_path / "out"
    assert cli.main(["batch", str(root), "--out", str(out), "--tasks", "analyze", "--no-progress"]) == 1

    def analysis_only(rows):
        return [{k: v for k, v in r.items() if k not in ("gender", "female_probability")} for r in without_timing(rows)]

    assert analysis_only(read_summary(out / "summary.csv")) == analysis_only(ref_rows)
    noise = Path(__file__).parent / "fixtures" / "noise" / "vacuum_6s.flac"
    rec = Worker(Job(tasks=("analyze",)))({"id": "noise", "path": str(noise)})
    assert "No speech" in rec["error"] and rec["duration"] == round(len(load_audio(noise)) / SAMPLE_RATE, 3) > 5
