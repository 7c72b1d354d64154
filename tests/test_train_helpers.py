"""The shared training helpers: one noise-mixing rule with one peak limit, utterance loading,
evaluation scoring with numbers spelled out, and entry scripts that import
helpers rather than each other."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from speech.audio import SAMPLE_RATE, load_audio
from training.data import AugmentConfig, augment_waveform, load_utterances
from training.manifest import read_manifest
from training.noise import PEAK, NoiseBank, add_at_snr, limit_peak, mix_at_snr, noisy_copies

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "ko-speech" / "manifest.jsonl"
NOISE = FIXTURES / "noise"


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    gain = float(noisy @ clean / (clean @ clean))   # undo a peak limiter's scaling
    residual = noisy / gain - clean
    return 10 * np.log10((clean ** 2).mean() / (residual ** 2).mean())


@pytest.fixture(scope="module")
def speech():
    return torch.from_numpy(load_audio(read_manifest(MANIFEST)[0]["audio"]))


@pytest.fixture(scope="module")
def bank():
    return NoiseBank(str(NOISE))


def test_limit_peak_scales_down_only_above_the_limit():
    x = torch.tensor([0.5, -2.0, 1.0])
    y = limit_peak(x)
    assert float(y.abs().max()) == pytest.approx(PEAK) and torch.allclose(y / y[0], x / x[0])
    quiet = torch.tensor([0.5, -0.9])
    assert limit_peak(quiet) is quiet
    a = np.array([0.1, 1.5], dtype=np.float32)
    assert float(np.abs(limit_peak(a)).max()) == pytest.approx(PEAK) and limit_peak(a).dtype == np.float32
    assert limit_peak(np.zeros(0, np.float32)).size == 0


@pytest.mark.parametrize("snr", [0.0, 5.0, 20.0])
def test_noise_is_mixed_at_the_snr_asked_for(speech, bank, snr):
    noise = bank.sample(len(speech), torch.Generator().manual_seed(3))
    raw = add_at_snr(speech, noise, snr)
    assert snr_db(speech.numpy().astype(np.float64), raw.numpy().astype(np.float64)) == pytest.approx(snr, abs=0.05)
    # The same mix as the hand-written formula it replaced (torchaudio's add_noise).
    scale = torch.sqrt(speech.pow(2).mean() / (noise.pow(2).mean() * 10 ** (snr / 10)))
    torch.testing.assert_close(raw, speech + scale * noise, atol=1e-6, rtol=1e-5)


def test_a_loud_mix_is_limited_and_keeps_its_snr(speech, bank):
    loud = speech / speech.abs().max() * 0.98          # any noise pushes the peak over the limit
    noise = bank.sample(len(loud), torch.Generator().manual_seed(1))
    mixed = mix_at_snr(loud, noise, 0.0)
    assert float(mixed.abs().max()) == pytest.approx(PEAK, abs=1e-6)
    assert snr_db(loud.numpy().astype(np.float64), mixed.numpy().astype(np.float64)) == pytest.approx(0.0, abs=0.05)


def test_silence_on_either_side_adds_nothing(speech):
    assert torch.equal(mix_at_snr(speech, torch.zeros_like(speech), 5.0), limit_peak(speech))
    silent = torch.zeros(1000)
    out = mix_at_snr(silent, torch.ones(1000), 5.0)
    assert torch.equal(out, silent) and torch.isfinite(out).all()


def test_noisy_copies_are_reproducible(speech, bank):
    audio = [speech.numpy(), speech.numpy()[: SAMPLE_RATE]]
    a, b, c = noisy_copies(audio, bank, 5.0, seed=1), noisy_copies(audio, bank, 5.0, seed=1), noisy_copies(audio, bank, 5.0, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], c[0])
    assert noisy_copies(audio, None, 5.0, seed=1) is audio


def test_augmentation_ends_with_the_peak_rule(speech, bank):
    """+20 dB of random gain on speech near full scale: every augmented waveform stays within the limit."""
    cfg = AugmentConfig(noise_dir=str(NOISE), noise_prob=1.0, reverb_prob=1.0, gain_db=20.0)
    loud = speech / speech.abs().max() * 0.9
    peaks = [float(augment_waveform(loud, cfg, bank, torch.Generator().manual_seed(s)).abs().max()) for s in range(8)]
    assert max(peaks) <= PEAK + 1e-6
    assert sum(p == pytest.approx(PEAK, abs=1e-6) for p in peaks) >= 2   # the gain really pushed some over


def test_load_utterances_trims_silence_and_keeps_short_clips_whole(tmp_path):
    import soundfile as sf

    original = read_manifest(MANIFEST)[0]["audio"]
    speech = load_audio(original)
    silence = np.zeros(SAMPLE_RATE, np.float32)
    blip = (0.5 * np.sin(np.arange(SAMPLE_RATE // 10) * 0.3)).astype(np.float32)   # 0.1 s
    sf.write(tmp_path / "padded.wav", np.concatenate([silence, speech, silence]), SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "blip.wav", np.concatenate([silence, blip, silence]), SAMPLE_RATE, subtype="FLOAT")
    rows = [{"audio": str(tmp_path / "padded.wav")}, {"audio": str(tmp_path / "blip.wav")}]
    trimmed, blip_kept = load_utterances(rows, trim_db=30)
    untouched, _ = load_utterances(rows, trim_db=0)
    assert len(untouched) == len(speech) + 2 * SAMPLE_RATE
    (reference,) = load_utterances([{"audio": original}], trim_db=30)
    assert len(reference) < len(speech)                      # the clip's own pauses are trimmed...
    assert abs(len(trimmed) - len(reference)) <= 512         # ...and so is the added second on each side
    assert len(blip_kept) == len(blip) + 2 * SAMPLE_RATE   # trimming would leave < 0.25 s: kept whole


def test_evaluation_scores_digits_as_written_and_spelled_out(monkeypatch):
    """evaluate_stt's scoring: a system that writes 5월 for the reference's 오월 is charged in the
    as-written CER and not in the spelled-out one."""
    from types import SimpleNamespace

    from training import evaluate_stt as ev

    rows = read_manifest(MANIFEST)[:2]
    rows[0]["text"], rows[1]["text"] = "오월 오일에 만나요", "유월에 봐요"
    answers = iter(["x", "5월 5일에 만나요", "6월에 봐요"])   # warm-up, then the two utterances

    class Engine:
        def transcribe(self, audio):
            return SimpleNamespace(text=next(answers))

    system = ev.System(engine="ds2", model="stub")
    monkeypatch.setattr(ev.System, "load", lambda self: Engine())
    result = ev.evaluate_system(system, ev.ConditionSet(rows, None, seed=1), ["clean"], log=lambda *a: None)
    r = result["conditions"]["clean"]
    assert r["chars"] == len("오월오일에만나요유월에봐요") and r["char_errors"] == 2 + 1
    assert r["cer"] == pytest.approx(3 / 13) and r["cer_spelled"] == 0.0 and r["wer_spelled"] == 0.0
    md = ev.markdown_spelled_table({"conditions": ["clean"], "systems": [result]})
    assert "clean CER / WER, numbers spelled" in md and "| 0.0 / 0.0 |" in md


ENTRY_IMPORTS_ALLOWED = {
    # The training-throughput benchmarks time train_ds2's own loop: they run its main().
    ("benchmark", "train_ds2"), ("benchmark_train", "train_ds2"),
    # The CTranslate2 <-> transformers conversion library (it also has a one-conversion CLI).
    ("finetune_whisper", "ct2_whisper"), ("whisper_lora", "ct2_whisper"),
}


def test_entry_scripts_import_helpers_not_each_other():
    files = sorted((ROOT / "training").glob("*.py"))
    entries = {p.stem for p in files if '__name__ == "__main__"' in p.read_text(encoding="utf-8")}
    assert {"train_ds2", "train_gender", "evaluate_stt", "evaluate_gender", "make_conversations"} <= entries
    found = set()
    for p in files:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("training."):
                    target = node.module.split(".")[1]
                elif node.module == "training":
                    target = next((a.name for a in node.names if a.name in entries), None)
                else:
                    continue
                if target in entries and target != p.stem:
                    found.add((p.stem, target))
    assert found == ENTRY_IMPORTS_ALLOWED
