"""training/train_speaker.py on real clips: the student learns to give a noisy crop the clean crop's
embedding, and what it writes is a speaker release the analysis loads."""
from __future__ import annotations

from pathlib import Path

import torch

from speech.speaker import SpeakerEncoder
from training.noise import HOUSEHOLD, NoiseBank
from training.train_speaker import Room, SpeakerTrainConfig, distance, train

FIX = Path(__file__).parent / "fixtures"


def test_student_hears_the_voice_through_the_room(tmp_path):
    torch.manual_seed(0)
    cfg = SpeakerTrainConfig(manifest=str(FIX / "ko-speech" / "manifest.jsonl"), noise=str(FIX / "noise"),
                             out=str(tmp_path / "run"), name="speaker-test", steps=40, batch=8, lr=3e-4, val_speakers="",
                             tv_tracks=2, clean_prob=0.0, threads=1, snr_min=0.0, snr_max=5.0)
    release = train(cfg)
    # the teacher is the release training started from (resemblyzer's), not the project default
    teacher, student = SpeakerEncoder.load(cfg.init), SpeakerEncoder.load(str(release))
    assert student.model_name == "speaker-test" and student.projection is None
    assert "fine-tuned by this project" in student.config["provenance"]["source"]
    # fresh crops and noise draws (another seed) of the same clips
    from training.data import load_utterances
    from training.manifest import read_manifest

    utts = load_utterances(read_manifest(cfg.manifest))
    room = Room(cfg, utts, [], NoiseBank(cfg.noise, categories=HOUSEHOLD), 1.6, seed=123)
    clean, noisy, _ = room.pairs(32, teacher.features, teacher.dims.target_dbfs)
    with torch.no_grad():
        target = teacher.model(clean)
        before = float(distance(teacher.model(noisy), target))
        after = float(distance(student.model(noisy), target))
        kept = float(distance(student.model(clean), target))
    assert after < 0.8 * before, (before, after)
    assert kept < 0.05, kept
