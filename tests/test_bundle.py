"""Releases through speech.bundle: every shipped release loads (format 1), a bundle round-trips, the
writer is the only one, the shipped decoder settings reach the decoder, a missing local path is an
error, and the engines import in one direction."""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from speech.bundle import (CONFIG_NAME, FORMAT_VERSION, MODEL_TYPES, WEIGHTS_NAME, Bundle, CheckpointError,
                           DecoderSettings, load_bundle, main, read_config, save_bundle, upgrade_config)
from speech.features import FeatureConfig
from speech.hub import ModelNotFoundError, default_model, resolve_model

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"
SHIPPED = sorted(p.name for p in CHECKPOINTS.iterdir() if (p / CONFIG_NAME).is_file())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def normalised(config: dict) -> dict:
    """JSON-equal form, with the feature config through FeatureConfig (defaults filled in)."""
    config = json.loads(json.dumps(config))
    if "features" in config:
        config["features"] = FeatureConfig.from_dict(config["features"]).to_dict()
    return config


# Model types only training writes (the distillation teacher's head) have no embedded default.
TRAINING_ONLY = {"whisper-ctc-head"}


def test_there_are_shipped_releases_of_every_type():
    assert {read_config(CHECKPOINTS / n)["model_type"] for n in SHIPPED} == set(MODEL_TYPES) - TRAINING_ONLY


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_release_loads_and_describes_itself(name):
    folder = CHECKPOINTS / name
    raw = read_config(folder)
    bundle = load_bundle(folder)
    assert bundle.model_type == raw["model_type"] and bundle.name == raw["name"] == name
    assert bundle.folder == folder
    # Nothing is lost: the typed bundle gives back the config it was read from (in the current layout).
    assert normalised(bundle.to_config()) == normalised(upgrade_config(raw))
    assert bundle.to_config()["format_version"] == FORMAT_VERSION
    if bundle.type.weights:
        model = bundle.build_model()          # strict: every tensor used, none missing
        assert sum(p.numel() for p in model.parameters()) > 0
    else:
        assert bundle.state is None and not (folder / WEIGHTS_NAME).exists()


def test_the_default_of_each_type_comes_through_the_registry():
    kinds = {}
    for model_type, mt in MODEL_TYPES.items():
        kinds.setdefault(mt.kind, []).append(model_type)
    for kind, types in kinds.items():
        if set(types) <= TRAINING_ONLY:
            with pytest.raises(ModelNotFoundError, match="No embedded default"):
                load_bundle(None, types[0], weights=False)
            continue
        # one embedded default per kind; a kind of two networks (speaker) accepts either
        bundle = load_bundle(None, tuple(types), weights=False)
        assert bundle.model_type in types and bundle.folder == default_model(kind)
    assert load_bundle(None, ("speaker-campplus", "speaker-lstm"), weights=False).model_type == "speaker-campplus"
    with pytest.raises(CheckpointError, match="'speaker-campplus' model, but a 'speaker-lstm'"):
        load_bundle(None, "speaker-lstm", weights=False)
    with pytest.raises(CheckpointError) as e:
        load_bundle(CHECKPOINTS / "gender-ko", "deepspeech2")
    assert "gender-cnn" in str(e.value) and "deepspeech2" in str(e.value)
    with pytest.raises(CheckpointError, match="model types"):
        load_bundle(CHECKPOINTS / "ds2-ko", "wav2vec")


def test_format_1_labels_are_read_once_and_must_agree(tmp_path):
    raw = read_config(CHECKPOINTS / "gender-ko")
    assert raw["format_version"] == 1 and raw["labels"] == raw["dims"]["labels"]   # written twice in format 1
    bundle = load_bundle(CHECKPOINTS / "gender-ko")
    assert bundle.labels == ("female", "male") and "labels" not in bundle.to_config()
    assert bundle.to_config()["dims"]["labels"] == ["female", "male"]
    bad = {**raw, "labels": ["male", "female"]}
    with pytest.raises(CheckpointError, match="differ"):
        Bundle.from_config(bad)
    with pytest.raises(CheckpointError, match="newer version"):
        Bundle.from_config({**raw, "format_version": FORMAT_VERSION + 1})


def test_upgrade_rewrites_the_config_and_keeps_the_weights(tmp_path):
    from speech.gender import GenderClassifier

    folder = tmp_path / "gender-ko"
    shutil.copytree(CHECKPOINTS / "gender-ko", folder)
    before = sha(folder / WEIGHTS_NAME)
    assert main(["upgrade", str(folder)]) == 0
    assert main(["upgrade", str(tmp_path / "no-such-release")]) == 2      # an error message, not a traceback
    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    assert config["format_version"] == FORMAT_VERSION and "labels" not in config
    assert config["dims"]["labels"] == ["female", "male"]
    assert sha(folder / WEIGHTS_NAME) == before                  # bit-identical weights
    a, b = GenderClassifier.load(str(CHECKPOINTS / "gender-ko")), GenderClassifier.load(str(folder))
    x = torch.randn(2, 200, a.features.n_features)
    n = torch.tensor([200, 150])
    assert torch.equal(a.model(x, n), b.model(x, n)) and a.temperature == b.temperature
    assert a.labels == b.labels


def test_save_bundle_copies_unloaded_weights_byte_for_byte(tmp_path):
    bundle = load_bundle(CHECKPOINTS / "ds2-ko", weights=False)
    out = save_bundle(tmp_path / "copy", bundle.with_info(note="repackaged"))
    assert sha(out / WEIGHTS_NAME) == sha(CHECKPOINTS / "ds2-ko" / WEIGHTS_NAME)
    again = load_bundle(out)
    assert again.info["note"] == "repackaged" and again.decoder == bundle.decoder
    assert again.tokenizer.tokens == bundle.tokenizer.tokens and again.features == bundle.features
    # A loaded state is written from memory; float16 on request.
    loaded = load_bundle(CHECKPOINTS / "ds2-ko")
    save_bundle(tmp_path / "half", loaded, dtype=torch.float16)
    third = load_bundle(tmp_path / "half")
    assert all(torch.equal(third.state[k], loaded.state[k]) for k in loaded.state)   # shipped weights are float16


def test_the_name_is_derived_in_one_place(tmp_path):
    bundle = load_bundle(CHECKPOINTS / "gender-ko")
    out = save_bundle(tmp_path / "my-gender", replace(bundle, name=""))
    assert read_config(out)["name"] == "my-gender" == load_bundle(out).name


def test_save_refuses_what_would_not_load(tmp_path):
    bundle = load_bundle(CHECKPOINTS / "ds2-ko", weights=False)
    with pytest.raises(CheckpointError, match="decoder"):
        Bundle.from_config({**bundle.to_config(), "decoder": {"beam_width": 3}})
    with pytest.raises(CheckpointError, match="no weights"):
        save_bundle(tmp_path / "x", replace(bundle, folder=None))
    assert not (tmp_path / "x" / CONFIG_NAME).exists()


# -- the shipped decoder settings are applied -----------------------------------------------------

def release_with_decoder(tmp_path, settings: DecoderSettings) -> Path:
    src = CHECKPOINTS / "ds2-ko"
    bundle = load_bundle(src, weights=False)
    out = save_bundle(tmp_path / "ds2-dec", replace(bundle, decoder=settings))
    if settings.lm:
        (out / settings.lm).symlink_to(src / settings.lm)
        (out / "lm.json").symlink_to(src / "lm.json")
    return out


def test_beam_search_uses_the_release_decoder_settings(tmp_path):
    from speech.stt import load_engine

    shipped = load_bundle(CHECKPOINTS / "ds2-ko", weights=False).decoder
    assert shipped.beam_size == 32 and shipped.lm == "lm.bin" and shipped.lm_weight == 2.0
    d = load_engine("ds2", decoder="beam").decoder
    assert (d.beam_size, d.lm_weight, d.word_score) == (shipped.beam_size, shipped.lm_weight, shipped.word_score)
    assert Path(d.lm_path) == CHECKPOINTS / "ds2-ko" / "lm.bin"

    folder = release_with_decoder(tmp_path, DecoderSettings(beam_size=3, lm="lm.bin", lm_weight=0.7, word_score=-1.0))
    engine = load_engine("ds2", model=str(folder), decoder="beam")
    assert (engine.decoder.beam_size, engine.decoder.lm_weight, engine.decoder.word_score) == (3, 0.7, -1.0)
    # The caller's own arguments win, one by one.
    other = engine.with_decoder("beam", beam_size=5, lm_weight=0.1)
    assert (other.decoder.beam_size, other.decoder.lm_weight, other.decoder.word_score) == (5, 0.1, -1.0)
    # ... and the settings change what the decoder does: a 1-wide beam without LM is greedy search.
    narrow = load_engine("ds2", model=str(release_with_decoder(tmp_path / "n", DecoderSettings(beam_size=1))),
                         decoder="beam")
    assert narrow.decoder.beam_size == 1 and narrow.decoder.lm_path is None


def test_cli_beam_size_defaults_to_the_release():
    from speech.cli import build_parser

    args = build_parser().parse_args(["transcribe", "x.wav", "--engine", "ds2", "--decoder", "beam"])
    assert args.beam_size is None


# -- a local-looking path that does not exist -----------------------------------------------------

@pytest.mark.parametrize("ref", ["./no-such-model", "../no-such-model", "/no/such/model", "~/no-such-model",
                                 "runs/a/release", "checkpoints/ds2-k0"])
def test_missing_local_path_is_an_error_not_the_default(ref, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.chdir(ROOT)              # checkpoints/ is a folder here: checkpoints/x is a path
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)   # a Hub lookup would fall back
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model(ref, "stt")
    assert repr(ref) in str(e.value) and str(Path(ref).expanduser()) in str(e.value)
    with pytest.raises(ModelNotFoundError):
        load_bundle(ref, "deepspeech2")


def test_repo_ids_still_reach_the_hub(monkeypatch, tmp_path):
    """owner/name stays a Hub reference (offline: the embedded default answers, with a log line)."""
    import huggingface_hub.constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert resolve_model("someone/ds2-ko", "stt") == default_model("stt")
    assert resolve_model(str(CHECKPOINTS / "ds2-ko" / CONFIG_NAME), "stt") == CHECKPOINTS / "ds2-ko"


# -- imports go one way ----------------------------------------------------------------------------

ENGINE_MODULES = ["speech.engines.base", "speech.engines.ds2", "speech.engines.whisper", "speech.engines",
                  "speech.stt", "speech.whisper_engine", "speech.default_engine", "speech.bundle"]


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_each_module_imports_first(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr


def imported_modules(path: Path, package: str) -> set:
    """Every module a file imports, at the top or inside functions, as absolute names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            mod = ".".join(x for x in (base, node.module) if x)
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_engines_never_import_the_modules_that_import_them():
    upward = {"speech.stt", "speech.whisper_engine", "speech.default_engine", "speech.analysis", "speech.batch",
              "speech.cli"}
    for path in sorted((ROOT / "speech" / "engines").glob("*.py")):
        bad = imported_modules(path, "speech.engines") & upward
        assert not bad, f"{path.name} imports {bad}"
    for name in ("base.py",):   # the base knows no engine
        mods = imported_modules(ROOT / "speech" / "engines" / name, "speech.engines")
        assert not {m for m in mods if m.startswith(("speech.engines.ds2", "speech.engines.whisper"))}
    for path in (ROOT / "speech" / "bundle.py", *sorted((ROOT / "speech" / "models").glob("*.py"))):
        mods = imported_modules(path, "speech")
        assert not {m for m in mods if m.startswith(("speech.engines", "speech.stt", "speech.gender",
                                                      "speech.speaker", "speech.tv"))}, path


def test_bundle_is_the_only_writer_of_config_json():
    """No other code writes a release's config.json (a Whisper model's own config.json is not ours)."""
    writes = re.compile(r"(CONFIG_NAME|[\"']config\.json[\"']).*\.(write_text|write_bytes)\(|json\.dump\(.*config\.json")
    found = []
    for path in [*ROOT.glob("speech/**/*.py"), *ROOT.glob("training/**/*.py"), ROOT / "app.py"]:
        if path.name == "bundle.py":
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if writes.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, found


# -- training scripts read and write releases through the bundle ----------------------------------

def test_a_release_without_weights_round_trips(tmp_path):
    """The TV detector is a few numbers in config.json (training/train_tv.py writes it this way)."""
    from speech.bundle import save_release
    from speech.tv import FEATURES, TVDetector

    config = {k: v for k, v in read_config(CHECKPOINTS / "tv-ko").items() if k not in ("format", "format_version")}
    out = save_release(tmp_path / "tv", None, config)
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_NAME]
    a, b = TVDetector.load(), TVDetector.load(str(out))
    feats = {k: float(i) for i, k in enumerate(FEATURES)}
    assert a.probability_of(feats) == b.probability_of(feats) and a.threshold == b.threshold


def test_build_lm_takes_the_tokenizer_of_a_release():
    from training.build_lm import load_tokenizer

    assert load_tokenizer(CHECKPOINTS / "ds2-ko").tokens == load_bundle(None, "deepspeech2", weights=False).tokenizer.tokens
    assert load_tokenizer(CHECKPOINTS / "ds2-ko" / CONFIG_NAME).unit == "jamo"
    with pytest.raises(ValueError, match="without a tokenizer"):
        load_tokenizer(CHECKPOINTS / "gender-ko")


def test_train_ds2_init_from_the_shipped_release(tmp_path):
    """--init-from reads the release's weights, tokenizer and features through the bundle; the shipped
    release (format 1, features written before FeatureConfig had all its fields) is accepted."""
    from training import train_ds2

    tiny = ["--train", str(ROOT / "tests/fixtures/ko-speech/manifest.jsonl"),
            "--dev", str(ROOT / "tests/fixtures/ko-speech/manifest.jsonl"), "--batch-seconds", "5",
            "--max-duration", "5", "--device", "cpu", "--threads", "1", "--no-amp", "--noise-prob", "0",
            "--reverb-prob", "0", "--max-steps", "1", "--lr", "0"]
    shipped = load_bundle(CHECKPOINTS / "ds2-ko")
    d = shipped.dims
    same = ["--n-mels", str(d.n_features), "--frontend", d.frontend, "--conv-channels", str(d.conv_channels),
            "--rnn-hidden", str(d.rnn_hidden), "--rnn-layers", str(d.rnn_layers)]
    n = torch.get_num_threads()
    try:
        train_ds2.main([*tiny, *same, "--init-from", str(CHECKPOINTS / "ds2-ko"), "--out", str(tmp_path / "a")])
        with pytest.raises(SystemExit, match="init-from"):
            train_ds2.main([*tiny, *same, "--n-mels", "40", "--init-from", str(CHECKPOINTS / "ds2-ko"),
                            "--out", str(tmp_path / "b")])
    finally:
        torch.set_num_threads(n)
    ck = torch.load(tmp_path / "a" / "last.pt", map_location="cpu", weights_only=True)
    # lr 0: one step leaves the shipped weights as they were (BatchNorm statistics aside).
    assert all(torch.equal(v.float(), shipped.state[k]) for k, v in ck["model"].items() if "running" not in k
               and "num_batches" not in k)


def test_both_engines_share_one_transcribe():
    from speech.engines import DS2Engine, WhisperEngine
    from speech.engines.base import Engine

    assert DS2Engine.transcribe is Engine.transcribe and WhisperEngine.transcribe is Engine.transcribe
    assert "transcribe" not in vars(DS2Engine) and "transcribe" not in vars(WhisperEngine)
    import speech.stt
    import speech.whisper_engine

    assert speech.stt.load_engine is __import__("speech.engines").engines.load_engine
    assert speech.whisper_engine.WhisperEngine is WhisperEngine and speech.stt.DS2Engine is DS2Engine


def test_a_loaded_release_keeps_its_weights_when_the_file_is_rewritten(tmp_path):
    """load_file memory-maps model.safetensors: a release copied over in place (a recipe's install
    stage, `cp`) while a long evaluation has it loaded must not change the loaded weights (it once
    turned a loaded projection into NaNs mid-run)."""
    folder, other = tmp_path / "speaker", tmp_path / "other"
    shutil.copytree(CHECKPOINTS / "speaker-campplus", folder)
    bundle = load_bundle(folder)
    before = {k: v.clone() for k, v in bundle.state.items()}
    save_bundle(other, replace(bundle, state={k: torch.full_like(v, 7) for k, v in bundle.state.items()}, folder=None))
    shutil.copyfile(other / WEIGHTS_NAME, folder / WEIGHTS_NAME)          # in place: same inode
    assert load_bundle(folder).state["projection.matrix"].eq(7).all()
    assert all(torch.equal(before[k], v) for k, v in bundle.state.items())
