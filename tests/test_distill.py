"""Distillation from Whisper base (training.whisper_teacher, training.distill, train_ds2 --teacher):
the teacher loss follows the teacher frame by frame whatever the student's length, and the whole
chain runs on real clips: Whisper encoder states, a CTC head that learns from them, its top-k
posteriors, and a DeepSpeech2 student that trains with them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speech.audio import load_audio
from speech.bundle import load_bundle
from speech.text import JamoTokenizer
from training import whisper_teacher as wt
from training.distill import StatesStudent, TeacherPosteriors, TeacherStates, audio_key, load_teacher
from training.manifest import read_manifest

from needs import WHISPER_BASE

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "ko-speech"


def posteriors_folder(tmp_path: Path, frames: list[np.ndarray], k: int = 3) -> tuple[Path, list[str]]:
    """A posteriors folder from full teacher log-prob matrices, one per utterance (top-k kept)."""
    ids, logp, index, offset, paths = [], [], {}, 0, []
    for n, lp in enumerate(frames):
        top = torch.from_numpy(lp).topk(k, dim=-1)
        ids.append(top.indices.to(torch.int16).numpy())
        logp.append(top.values.to(torch.float16).numpy())
        paths.append(f"/audio/{n}.flac")
        index[audio_key(paths[-1])] = [offset, len(lp)]
        offset += len(lp)
    np.save(tmp_path / "ids.npy", np.concatenate(ids))
    np.save(tmp_path / "logp.npy", np.concatenate(logp))
    (tmp_path / "index.json").write_text(json.dumps({"info": {"k": k}, "index": index}))
    return tmp_path, paths


def test_teacher_loss_follows_the_teacher_at_any_student_length(tmp_path):
    V, g = 10, torch.Generator().manual_seed(0)
    teacher = torch.randn(8, V, generator=g).mul(4).log_softmax(-1)
    folder, paths = posteriors_folder(tmp_path, [teacher.numpy()])
    tp = TeacherPosteriors(folder, paths)
    for t_s in (8, 12, 16):        # speed perturbation: more student frames than teacher frames
        src = torch.arange(t_s) * 8 // t_s
        copy = teacher[src][None].clone().requires_grad_(True)      # a student that already agrees
        other = torch.randn(1, t_s, V, generator=g).mul(4).log_softmax(-1)
        agree, disagree = tp.loss(copy, torch.tensor([t_s]), torch.tensor([0])), tp.loss(other, torch.tensor([t_s]), torch.tensor([0]))
        assert agree < disagree, t_s
        agree.backward()
        assert copy.grad.abs().sum() > 0
    # Frames past the student's length (padding) are not scored.
    padded = torch.cat([teacher[None], torch.full((1, 4, V), -30.0)], 1)
    assert tp.loss(padded, torch.tensor([8]), torch.tensor([0])) == pytest.approx(
        float(tp.loss(teacher[None], torch.tensor([8]), torch.tensor([0]))), rel=1e-6)
    with pytest.raises(ValueError, match="no teacher output for 1 of 2"):
        TeacherPosteriors(folder, paths + ["/audio/elsewhere.flac"])


def states_folder(tmp_path: Path, states: list[np.ndarray]) -> tuple[Path, list[str]]:
    """An encoder-states folder (training.whisper_teacher's format), one (frames, D) array per utterance."""
    index, offset, paths = {}, 0, []
    for n, st in enumerate(states):
        paths.append(f"/audio/{n}.flac")
        index[audio_key(paths[-1])] = [offset, len(st)]
        offset += len(st)
    np.save(tmp_path / "states.npy", np.concatenate(states).astype(np.float16))
    (tmp_path / "index.json").write_text(json.dumps({"info": {"utterances": len(states), "rate": 50}, "index": index}))
    return tmp_path, paths


def test_states_teacher_pulls_the_projected_student_towards_the_encoder_states(tmp_path):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(10, 6, generator=g)                  # 10 teacher frames (50/s), 6-d states
    folder, paths = states_folder(tmp_path, [target.numpy()])
    ts = load_teacher(folder, paths)
    assert isinstance(ts, TeacherStates) and ts.needs_hidden and ts.dim == 6
    target = torch.from_numpy(ts.array[:10].astype(np.float32))     # as stored (float16)
    for t_s in (5, 8, 10):                                    # the student's frame rate is half the teacher's, or sped up
        src = torch.arange(t_s) * 10 // t_s
        agree = ts.loss(3.0 * target[src][None], torch.tensor([t_s]), torch.tensor([0]))    # cosine: scale-free
        other = ts.loss(torch.randn(1, t_s, 6, generator=g), torch.tensor([t_s]), torch.tensor([0]))
        assert float(agree) == pytest.approx(0.0, abs=1e-5) and float(other) > 0.5 * t_s * 0.5, t_s
    # The projection and the student both learn from it; padding frames are not scored.
    from speech.models.deepspeech2 import DeepSpeech2, DS2Dims

    student = StatesStudent(DeepSpeech2(DS2Dims(n_features=80, n_tokens=69, rnn_hidden=16, rnn_layers=1)), ts.dim)
    feats = torch.randn(1, 24, 80, generator=g)
    lp, n, hidden = student(feats, torch.tensor([20]))
    assert hidden.shape == (1, lp.shape[1], 6) and int(n[0]) < lp.shape[1]
    ts.loss(hidden, n, torch.tensor([0])).backward()
    assert student.proj.weight.grad.abs().sum() > 0 and student.model.rnns[0].rnn.weight_ih_l0.grad.abs().sum() > 0
    padded = torch.cat([hidden.detach(), torch.full((1, 3, 6), 9.0)], 1)
    hidden = hidden.detach()
    assert float(ts.loss(padded, n, torch.tensor([0]))) == pytest.approx(float(ts.loss(hidden, n, torch.tensor([0]))), rel=1e-6)
    # The folder says which teacher it holds.
    (tmp_path / "p").mkdir()
    assert isinstance(load_teacher(posteriors_folder(tmp_path / "p", [np.zeros((4, 5), np.float32)])[0],
                                   ["/audio/0.flac"]), TeacherPosteriors)
    with pytest.raises(ValueError, match="neither teacher posteriors"):
        load_teacher(tmp_path / "nothing", paths)


@pytest.mark.slow
@pytest.mark.whisper_base(WHISPER_BASE)
def test_the_teacher_chain_runs_on_real_clips(tmp_path):
    manifest = FIXTURES / "manifest.jsonl"
    info = wt.encode_states([str(manifest)], str(WHISPER_BASE), tmp_path / "states", threads=1)
    rows = read_manifest(manifest)
    frames = [wt.state_frames(len(load_audio(r["audio"]))) for r in rows]     # 50 per second of each clip
    assert info["utterances"] == 3 and info["frames"] == sum(frames)
    states = wt.States(tmp_path / "states")
    assert [states.get(r["audio"]).shape for r in rows] == [(n, 512) for n in frames]

    tok = JamoTokenizer()
    head, report = wt.train_head(states, rows, {"lmy"}, steps=300, lr=3e-3, batch=2, log=lambda *_: None)
    assert report["parameters"] == 121_541 and report["fit_utterances"] == 2
    # The head learns the jamo of its own clips from the frozen states (the held-out one is one clip).
    assert wt.head_cer(head, states, rows[:2], tok)["cer"] < 0.3

    main = ["head", "--states", str(tmp_path / "states"), "--train", str(manifest), "--holdout-speakers", "lmy",
            "--steps", "100", "--batch", "2", "--out", str(tmp_path / "head")]
    assert wt.main(main) == 0
    bundle = load_bundle(tmp_path / "head", "whisper-ctc-head")
    assert bundle.metrics["holdout"]["step"] == 100 and bundle.tokenizer.tokens == tok.tokens
    assert wt.main(["posteriors", "--states", str(tmp_path / "states"), "--head", str(tmp_path / "head"),
                    "--manifest", str(manifest), "--k", "4", "--out", str(tmp_path / "post")]) == 0
    tp = TeacherPosteriors(tmp_path / "post", [r["audio"] for r in rows])
    assert tp.ids.shape[1] == 4 and list(tp.frames) == [(n + 1) // 2 for n in frames]

    # A DeepSpeech2 student trains with them: the teacher loss is logged and the release records it.
    from training import train_ds2

    train_ds2.main(["--train", str(manifest), "--dev", str(manifest), "--unit", "jamo", "--rnn-hidden", "32",
                    "--rnn-layers", "1", "--batch-seconds", "8", "--max-duration", "8", "--workers", "0", "--epochs", "1",
                    "--device", "cpu", "--threads", "1", "--teacher", str(tmp_path / "post"), "--kd-weight", "0.5",
                    "--out", str(tmp_path / "student")])
    (record,) = [json.loads(line) for line in (tmp_path / "student" / "train.log").read_text().splitlines()]
    assert record["train_kd_loss"] > 0 and record["train_loss"] > 0.5 * record["train_kd_loss"]
    student = load_bundle(tmp_path / "student" / "release", "deepspeech2", weights=False)
    assert student.info["training"]["config"]["teacher"] == str(tmp_path / "post")

    # Or with the encoder states as the teacher: the projection trains beside it, is kept for a
    # resume, and the release holds the student alone.
    train_ds2.main(["--train", str(manifest), "--dev", str(manifest), "--unit", "jamo", "--rnn-hidden", "32",
                    "--rnn-layers", "1", "--batch-seconds", "8", "--max-duration", "8", "--workers", "0", "--epochs", "1",
                    "--device", "cpu", "--threads", "1", "--teacher", str(tmp_path / "states"),
                    "--out", str(tmp_path / "student-states")])
    (record,) = [json.loads(line) for line in (tmp_path / "student-states" / "train.log").read_text().splitlines()]
    assert 0 < record["train_kd_loss"] < record["train_loss"]
    ck = torch.load(tmp_path / "student-states" / "last.pt", weights_only=True)
    assert ck["kd_projection"]["weight"].shape == (512, 32)
    released = load_bundle(tmp_path / "student-states" / "release", "deepspeech2")
    assert set(released.build_model().state_dict()) == set(ck["model"])
