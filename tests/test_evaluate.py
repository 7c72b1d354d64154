"""training.evaluate_stt on three real clips with a tiny DeepSpeech2 built here."""
import json
import mmap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech.audio import SAMPLE_RATE
from speech.bundle import save_release
from speech.features import FeatureConfig
from speech.models.deepspeech2 import DeepSpeech2, DS2Dims
from speech.stt import load_engine
from speech.text import JamoTokenizer
from training import evaluate_stt as ev
from training.memory import RssSampler, rss_mb

FIXTURES = Path(__file__).parent / "fixtures" / "ko-speech"
MANIFEST = FIXTURES / "manifest.jsonl"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    torch.manual_seed(0)
    tok, feats = JamoTokenizer(), FeatureConfig()
    dims = DS2Dims(n_features=feats.n_features, n_tokens=len(tok), rnn_hidden=32, rnn_layers=1, conv_channels=4)
    model = DeepSpeech2(dims).eval()
    return save_release(tmp_path_factory.mktemp("tiny") / "release", model.state_dict(),
                        {"model_type": "deepspeech2", "name": "tiny", "dims": dims.to_dict(),
                         "features": feats.to_dict(), "tokenizer": tok.to_dict()})


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    """A noise folder in the shared format (manifest.tsv + audio): 3 s of seeded brown-ish noise."""
    d = tmp_path_factory.mktemp("noise")
    x = np.cumsum(np.random.default_rng(1).standard_normal(3 * SAMPLE_RATE))
    x = (x - np.convolve(x, np.ones(400) / 400, mode="same")) * 0.01
    sf.write(d / "hum.flac", x.astype(np.float32), SAMPLE_RATE)
    (d / "manifest.tsv").write_text("path\tcategory\tduration\nhum.flac\thum\t3.0\n", encoding="utf-8")
    return d


def test_table_and_json(release, noise_dir, tmp_path, capsys):
    out = tmp_path / "results" / "tiny"
    conditions = ["clean", "noise0", "farfield"]
    report = ev.main(["--manifest", str(MANIFEST), "--system", f"ds2:{release}", "--system", f"ds2:{release}:greedy",
                      "--conditions", ",".join(conditions), "--noise-dir", str(noise_dir), "--denoise",
                      "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    saved = json.loads(out.with_name("tiny.json").read_text(encoding="utf-8"))
    md = out.with_name("tiny.md").read_text(encoding="utf-8")
    assert saved["systems"] == json.loads(json.dumps(report["systems"], ensure_ascii=False))
    assert saved["utterances"] == 3 and saved["conditions"] == conditions

    table = [line for line in printed.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["system"] + [f"{c} CER / WER" for c in conditions] + ["RTF", "load s", "peak RSS MB"]
    assert len(table) == 2 + 4                     # 2 systems, each also behind the denoiser
    assert "\n".join(table) in md
    assert sum("+denoise" in line for line in table[2:]) == 2

    refs = saved["references"]
    for s in saved["systems"]:
        assert s["peak_rss_mb"] > 0 and s["rss_before_mb"] > 0   # the sampler itself: test_rss_sampler_sees_a_passing_peak
        for c in conditions:
            r = s["conditions"][c]
            assert len(r["hypotheses"]) == 3 and r["rtf"] > 0
            assert r["chars"] == sum(len(x.replace(" ", "")) for x in refs)
            assert r["cer"] == pytest.approx(r["char_errors"] / r["chars"])
    # The same model on the same (seeded) audio: identical transcripts, condition by condition.
    a, b = saved["systems"][0]["conditions"], saved["systems"][1]["conditions"]
    assert all(a[c]["hypotheses"] == b[c]["hypotheses"] for c in conditions)
    # ...and they are what the engine gives for that audio outside the script.
    engine = load_engine("ds2", model=str(release))
    conds = ev.ConditionSet(ev.read_manifest(MANIFEST), str(noise_dir), saved["seed"])
    assert [engine.transcribe(x).text for x in conds.audio("noise0")] == a["noise0"]["hypotheses"]
    # Every condition really is different audio.
    assert len(set(saved["audio_sha1"].values())) == len(conditions)


def test_noise_is_mixed_at_the_requested_snr_and_reproducible(noise_dir):
    rows = ev.read_manifest(MANIFEST)
    one, two = ev.ConditionSet(rows, str(noise_dir), seed=7), ev.ConditionSet(rows, str(noise_dir), seed=7)
    other_seed = ev.ConditionSet(rows, str(noise_dir), seed=8)
    for clean, noisy, again, other in zip(one.clean, one.audio("noise10"), two.audio("noise10"),
                                          other_seed.audio("noise10")):
        assert noisy.shape == clean.shape and np.array_equal(noisy, again) and not np.array_equal(noisy, other)
        gain = float(noisy @ clean / (clean @ clean))  # the peak limiter may have scaled the mix
        residual = noisy / gain - clean
        snr = 10 * np.log10((clean ** 2).mean() / (residual ** 2).mean())
        assert snr == pytest.approx(10.0, abs=0.5)
    assert ev.audio_sha1(one.audio("farfield")) == ev.audio_sha1(two.audio("farfield")) != ev.audio_sha1(one.clean)


def test_bad_condition_is_refused(noise_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        ev.main(["--manifest", str(MANIFEST), "--conditions", "clean,noisy", "--noise-dir", str(noise_dir),
                 "--out", str(tmp_path / "x")])
    assert "Unknown condition 'noisy'" in capsys.readouterr().err


def test_package_records_the_evaluation_it_is_given(release, tmp_path):
    from training import package_ds2

    results = tmp_path / "dev"
    ev.main(["--manifest", str(MANIFEST), "--system", f"ds2:{release}", "--conditions", "clean",
             "--out", str(results), "--quiet"])
    saved = json.loads(results.with_name("dev.json").read_text(encoding="utf-8"))
    out = tmp_path / "shipped"
    package_ds2.main(["--release", str(release), "--out", str(out), "--lm-weight", "1.5",
                      "--metrics", str(results.with_name("dev.json"))])
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["decoder"]["beam"] == {"lm_weight": 1.5, "word_score": 0.0}
    (name, conditions), = config["evaluation"]["systems"].items()
    assert name == saved["systems"][0]["system"]
    assert conditions["clean"]["cer"] == round(saved["systems"][0]["conditions"]["clean"]["cer"], 4)
    assert config["evaluation"]["utterances"] == 3
    assert (out / "model.safetensors").read_bytes() == (Path(release) / "model.safetensors").read_bytes()


def test_package_refuses_a_file_that_is_not_an_evaluation(release, tmp_path, capsys):
    from training import package_ds2

    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"summary": {}}', encoding="utf-8")
    with pytest.raises(SystemExit):
        package_ds2.main(["--release", str(release), "--out", str(tmp_path / "out"), "--metrics", str(bogus)])
    assert "not a training.evaluate_stt results file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_each_system_can_have_its_own_lm(release, tmp_path):
    """Two LMs in one run (the old and the new), and `whisper` alone for the default Whisper."""
    old, new = ev.parse_system(f"ds2:{release}:beam:old/lm.bin"), ev.parse_system(f"ds2:{release}:beam:new/lm.bin")
    assert (old.model, old.decoder, old.lm) == (str(release), "beam", "old/lm.bin") and new.lm == "new/lm.bin"
    assert old.name != new.name and "old/lm.bin" in old.name   # the table tells them apart
    shipped = ev.parse_system(f"ds2:{release}:beam", lm="global.bin")
    assert (shipped.decoder, shipped.lm) == ("beam", "global.bin")
    assert ev.parse_system("whisper") == ev.System(engine="whisper", model=None)
    # a per-system LM is really used: an LM file that is not there fails when that system loads
    with pytest.raises((OSError, ValueError, RuntimeError)):
        ev.parse_system(f"ds2:{release}:beam:{tmp_path / 'missing.bin'}").load()


def test_rss_sampler_sees_a_passing_peak():
    """The peak RSS the tables report is sampled while the work runs: 300 MB held for a moment and
    freed before the block ends is in the peak, though RSS before and after the block is lower.
    The block is fresh anonymous memory from the kernel with every page written, so no allocator can
    serve it from memory an earlier test left resident (np.ones could, and the RSS did not rise in CI)."""
    size = 300 * 2 ** 20
    with RssSampler(interval=0.005) as mem:
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        time.sleep(0.3)
        block.close()
        after = rss_mb()
    assert after < mem.start + 100                         # freed: the end alone would not show it
    assert mem.peak - mem.start > 250, (mem.start, mem.peak)
