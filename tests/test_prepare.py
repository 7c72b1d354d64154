import json
import os
from pathlib import Path

import pytest

from training import prepare_aihub, prepare_ko_speech, prepare_kspon, prepare_tsv
from training.manifest import (filter_duration, normalize_gender, read_manifest, remove_sentences,
                               sentence_overlap, speaker_split, write_manifest)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "corpora"
KO_SPEECH = prepare_ko_speech.DEFAULT_DATA


def by_utt(rows):
    return {r["utt"]: r for r in rows}


def test_aihub(tmp_path):
    out = tmp_path / "aihub.jsonl"
    prepare_aihub.main(["--root", str(FIXTURES / "aihub"), "--out", str(out), "--min-duration", "0.1"])
    rows = by_utt(read_manifest(out))
    assert set(rows) == {"일반남여_일반통합_F001_00001", "일반남여_일반통합_F001_00002",
                         "일반남여_일반통합_M002_00001", "일반남여_일반통합_M002_00002"}
    r = rows["일반남여_일반통합_F001_00002"]
    assert r["text"] == "음 그래서 저는 집에 갔어요"
    assert r["raw_text"] == "(FP:음) 그래서 저는 (NO:) 집에 갔어요?"
    assert (r["speaker"], r["gender"], r["age"], r["env"]) == ("F001", "female", "37", "실내")
    assert r["duration"] == pytest.approx(0.35)
    assert Path(r["audio"]).is_absolute() and Path(r["audio"]).is_file()
    assert rows["일반남여_일반통합_F001_00001"]["audio"].endswith("label/실내/일반남여_일반통합_F001_00001.wav")
    assert rows["일반남여_일반통합_M002_00001"]["gender"] == "male"   # "남성"
    assert rows["일반남여_일반통합_M002_00002"]["gender"] == "male"   # "M"
    assert rows["일반남여_일반통합_M002_00001"]["text"] == "밥은 먹었어"


def test_aihub_keep_masked_and_duration_filter(tmp_path):
    out = tmp_path / "aihub.jsonl"
    prepare_aihub.main(["--root", str(FIXTURES / "aihub" / "label"), "--audio-root", str(FIXTURES / "aihub"),
                        "--out", str(out), "--min-duration", "0.32", "--max-duration", "0.6", "--keep-masked"])
    rows = by_utt(read_manifest(out))
    # F001_00001 is 0.3 s: too short; the masked M002_00003 is kept, without the mask.
    assert set(rows) == {"일반남여_일반통합_F001_00002", "일반남여_일반통합_M002_00001",
                         "일반남여_일반통합_M002_00002", "일반남여_일반통합_M002_00003"}
    assert rows["일반남여_일반통합_M002_00003"]["text"] == "씨 안녕하세요"


def test_kspon_tree(tmp_path):
    out = tmp_path / "kspon.jsonl"
    prepare_kspon.main(["--root", str(FIXTURES / "kspon"), "--out", str(out), "--min-duration", "0.1"])
    rows = by_utt(read_manifest(out))
    assert set(rows) == {"KsponSpeech_000001", "KsponSpeech_000002", "KsponSpeech_001001"}
    r = rows["KsponSpeech_000001"]
    assert r["text"] == "아 모 몬 소리야 칠십 퍼센트 확률이라니"
    assert r["raw_text"] == "b/ 아/ 모+ 몬 소리야 (70%)/(칠십 퍼센트) 확률이라니 n/"
    assert r["duration"] == pytest.approx(0.5)                   # 16000 bytes / 32000
    assert (r["speaker"], r["speaker_is_proxy"], r["gender"]) == ("KsponSpeech_0001", True, None)
    assert rows["KsponSpeech_000002"]["text"] == "그럼 쓰리 쥐로 할까"
    assert rows["KsponSpeech_001001"]["speaker"] == "KsponSpeech_0002"


def test_kspon_trn_utf8_and_cp949(tmp_path):
    utf8 = tmp_path / "train.jsonl"
    prepare_kspon.main(["--trn", str(FIXTURES / "kspon" / "train.trn"), "--out", str(utf8), "--min-duration", "0.1"])
    assert [r["utt"] for r in read_manifest(utf8)] == ["KsponSpeech_000001", "KsponSpeech_000002"]
    cp949 = tmp_path / "eval.jsonl"
    prepare_kspon.main(["--trn", str(FIXTURES / "kspon" / "eval.trn"),
                        "--audio-root", str(FIXTURES / "kspon"), "--out", str(cp949), "--min-duration", "0.1"])
    rows = read_manifest(cp949)
    assert [(r["utt"], r["text"]) for r in rows] == [("KsponSpeech_001001", "어 그 그러니까 닭이 먹고 싶어")]


def test_tsv(tmp_path):
    out = tmp_path / "tsv.jsonl"
    prepare_tsv.main(["--tsv", str(FIXTURES / "tsv" / "list.tsv"), "--out", str(out), "--min-duration", "0.1"])
    rows = by_utt(read_manifest(out))
    assert set(rows) == {"a1", "a2", "b2"}                      # b1 has digits
    assert rows["a2"]["text"] == "값이 넋을 잃었다"
    assert (rows["b2"]["speaker"], rows["b2"]["gender"], rows["b2"]["corpus"]) == ("b", "male", "list")
    assert rows["a1"]["duration"] == pytest.approx(0.3)


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_aihub.main(["--root", str(tmp_path / "nope"), "--out", str(tmp_path / "x.jsonl")])
    assert "folder not found" in capsys.readouterr().err


def make_rows():
    rows = []
    for spk, gender in [("f1", "female"), ("f2", "female"), ("f3", "female"), ("f4", "female"),
                        ("m1", "male"), ("m2", "male"), ("m3", "male")]:
        for i in range(4):
            rows.append({"audio": f"/a/{spk}_{i}.wav", "text": f"문장 {i}", "duration": 1.0 + i,
                         "speaker": spk, "gender": gender, "utt": f"{spk}_{i}"})
    return rows


def test_speaker_split():
    rows = make_rows()
    train, dev = speaker_split(rows, 0.3, seed=1)
    assert len(train) + len(dev) == len(rows)
    assert not {r["speaker"] for r in train} & {r["speaker"] for r in dev}
    assert {r["gender"] for r in dev} == {"female", "male"}
    assert {r["gender"] for r in train} == {"female", "male"}
    assert speaker_split(rows, 0.3, seed=1) == (train, dev)
    with pytest.raises(ValueError):
        speaker_split(rows, 1.5)


def test_overlap_filter_and_genders():
    rows = make_rows()
    train, dev = rows[:4], rows[4:]
    assert sentence_overlap(train, dev) == ["문장 0", "문장 1", "문장 2", "문장 3"]
    assert remove_sentences(train, [{"text": "문장0"}]) == train[1:]   # compared without spaces
    assert [r["duration"] for r in filter_duration(rows[:4], 2.0, 3.0)] == [2.0, 3.0]
    assert filter_duration([{"duration": None}], 0.5, None) == []
    assert [normalize_gender(g) for g in ("여", "여성", "F", "남", "남성", "m", "?", None)] == \
        ["female", "female", "female", "male", "male", "male", None, None]


def test_manifest_paths_round_trip(tmp_path):
    audio = tmp_path / "audio" / "a.wav"
    audio.parent.mkdir()
    audio.write_bytes(b"")
    rows = [{"audio": str(audio), "text": "가", "speaker": "s", "extra": 1}]
    path = tmp_path / "m" / "train.jsonl"
    write_manifest(path, rows)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["audio"] == "../audio/a.wav"
    assert read_manifest(path) == [{**rows[0], "audio": os.path.normpath(str(audio))}]


@pytest.mark.skipif(not (KO_SPEECH / "manifest.tsv").is_file(), reason="shared ko-speech corpus not present")
def test_ko_speech_split(tmp_path):
    train, dev = prepare_ko_speech.main(["--out-dir", str(tmp_path)])
    assert read_manifest(tmp_path / "dev.jsonl") == dev
    dev_speakers = {r["speaker"] for r in dev}
    assert not dev_speakers & {r["speaker"] for r in train}
    assert {r["gender"] for r in dev} == {"female", "male"}
    assert any(r.get("note") == "teen" for r in dev)
    assert sentence_overlap(train, dev) == []
    total = sum(r["duration"] for r in train + dev)
    assert 0.10 < sum(r["duration"] for r in dev) / total < 0.25
    assert prepare_ko_speech.main(["--out-dir", str(tmp_path / "again")])[1] == dev   # deterministic


def test_pack_for_device_opus(tmp_path):
    """Packing for a lent GPU rewrites the manifest to Opus files that decode to the same length,
    and cuts the noise clips."""
    from speech.audio import audio_duration
    from training import pack_for_device
    from training.noise import NoiseBank

    fixtures = Path(__file__).resolve().parent / "fixtures"
    pack_for_device.main(["--manifest", str(fixtures / "ko-speech" / "manifest.jsonl"),
                          "--noise-dir", str(fixtures / "noise"), "--noise-max-seconds", "2",
                          "--out", str(tmp_path)])
    src = read_manifest(fixtures / "ko-speech" / "manifest.jsonl")
    packed = read_manifest(tmp_path / "ko-speech" / "manifest.jsonl")
    assert [r["text"] for r in packed] == [r["text"] for r in src]
    for a, b in zip(src, packed):
        assert b["audio"].endswith(".ogg")
        assert audio_duration(b["audio"]) == pytest.approx(audio_duration(a["audio"]), abs=0.03)
    bank = NoiseBank(str(tmp_path / "noise"))
    assert len(bank.clips) == len(NoiseBank(str(fixtures / "noise")).clips) >= 1   # every clip, each cut to 2 s
    assert all(len(c) == pytest.approx(2 * 16000, abs=400) for c in bank.clips)
