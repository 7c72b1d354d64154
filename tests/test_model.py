"""DeepSpeech2 (speech.models.deepspeech2) and its release folders (speech.bundle).

Output lengths are swept like icefall's subsampling tests (CTC needs them exact), an utterance gives
the same log-probs alone and padded in a batch, and a release round trip gives the same outputs
without ever unpickling.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from speech.audio import load_audio
from speech.bundle import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_bundle, load_release, save_release
from speech.features import FeatureConfig, compute_features
from speech.models.deepspeech2 import FRONTENDS, DeepSpeech2, DS2Dims

CLIPS = sorted((Path(__file__).parent / "fixtures" / "ko-speech").glob("*.flac"))
FEATS = FeatureConfig(n_mels=40)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other work for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw) -> DS2Dims:
    base = dict(n_features=FEATS.n_features, n_tokens=12, conv_channels=4, rnn_hidden=16, rnn_layers=2)
    return DS2Dims(**{**base, **kw})


def build(dims: DS2Dims, seed: int = 0) -> DeepSpeech2:
    """A model with random BatchNorm statistics, so eval-mode normalisation is not the identity."""
    torch.manual_seed(seed)
    model = DeepSpeech2(dims)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def features() -> list[torch.Tensor]:
    """Real features of the three fixture clips (different lengths), plus a cut one."""
    feats = [compute_features(load_audio(p), FEATS) for p in CLIPS]
    return feats + [feats[0][:37]]


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_output_lengths_equal_forward_lengths(frontend):
    model = build(tiny(frontend=frontend, rnn_layers=1, rnn_hidden=8))
    lengths = torch.arange(1, 301)
    predicted = model.output_lengths(lengths)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for T in lengths.tolist():
            lp, out_len = model(torch.randn(1, T, FEATS.n_features, generator=g), torch.tensor([T]))
            assert lp.shape[1] == int(out_len[0]) == int(predicted[T - 1]), T
        # The same lengths as one padded batch.
        x = torch.randn(len(lengths), 300, FEATS.n_features, generator=g)
        lp, out_len = model(x, lengths)
    assert torch.equal(out_len, predicted)
    assert lp.shape[1] == int(predicted.max())
    assert int(predicted.min()) >= 1
    stride = model.dims.time_stride
    # Subsampling by the front end's time stride, rounded up.
    assert torch.equal(predicted, (lengths + stride - 1) // stride)


CASES = {
    "bigru": tiny(),
    "bilstm": tiny(rnn_type="lstm"),
    "unigru-lookahead": tiny(bidirectional=False, lookahead=3),
    "unilstm": tiny(rnn_type="lstm", bidirectional=False),
    "ds2-frontend": tiny(frontend="ds2", rnn_layers=1),
}


@pytest.mark.parametrize("name", CASES)
def test_alone_equals_padded_in_batch(features, name):
    model = build(CASES[name])
    lengths = torch.tensor([f.shape[0] for f in features])
    T = int(lengths.max()) + 13  # extra padding past the longest too
    # Fill the padding with loud noise: the model must not look at it.
    batch = 50 * torch.randn(len(features), T, FEATS.n_features, generator=torch.Generator().manual_seed(3))
    for i, f in enumerate(features):
        batch[i, : len(f)] = f
    with torch.no_grad():
        lp, out_len = model(batch, lengths)
        for i, f in enumerate(features):
            alone, alone_len = model(f.unsqueeze(0), torch.tensor([len(f)]))
            assert int(out_len[i]) == int(alone_len[0]) == alone.shape[1]
            torch.testing.assert_close(lp[i, : out_len[i]], alone[0], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["bigru", "unigru-lookahead"])
def test_forward_returns_log_probs_in_train_and_eval(features, name):
    model = build(replace(CASES[name], dropout=0.3))
    lengths = torch.tensor([f.shape[0] for f in features])
    batch = torch.zeros(len(features), int(lengths.max()), FEATS.n_features)
    for i, f in enumerate(features):
        batch[i, : len(f)] = f
    for train in (True, False):
        model.train(train)
        lp, out_len = model(batch, lengths)
        assert lp.dtype == torch.float32
        assert lp.shape == (len(features), int(out_len.max()), model.dims.n_tokens)
        assert (lp <= 0).all()
        torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(lp.shape[:2]), atol=1e-5, rtol=0)
        if train:  # gradients reach every parameter through the CTC loss
            targets = torch.randint(1, model.dims.n_tokens, (len(features), 3))
            loss = torch.nn.functional.ctc_loss(lp.transpose(0, 1), targets, out_len, torch.full((len(features),), 3))
            loss.backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, missing


def test_dims_validation():
    with pytest.raises(ValueError) as e:
        tiny(frontend="vgg")
    assert all(k in str(e.value) for k in FRONTENDS)
    with pytest.raises(ValueError, match="gru"):
        tiny(rnn_type="transformer")
    with pytest.raises(ValueError, match="lookahead"):
        tiny(bidirectional=True, lookahead=2)
    with pytest.raises(ValueError):
        tiny(n_tokens=1)
    with pytest.raises(ValueError):
        tiny(rnn_layers=0)
    dims = tiny(bidirectional=False, lookahead=2)
    assert DS2Dims.from_dict(json.loads(json.dumps(dims.to_dict()))) == dims
    with pytest.raises(ValueError, match="hidden_size"):
        DS2Dims.from_dict({**dims.to_dict(), "hidden_size": 3})


def release_config(dims: DS2Dims) -> dict:
    return {"model_type": "deepspeech2", "name": "tiny", "dims": dims.to_dict(), "features": FEATS.to_dict()}


def load_model(folder) -> DeepSpeech2:
    return load_bundle(folder, "deepspeech2").build_model()


@pytest.mark.parametrize("dtype", [None, torch.float16], ids=["float32", "float16"])
def test_release_round_trip(tmp_path, features, dtype):
    dims = tiny(bidirectional=False, lookahead=2)
    model = build(dims)
    save_release(tmp_path, model.state_dict(), release_config(dims), dtype=dtype)
    loaded = load_model(tmp_path)
    state = loaded.state_dict()
    for k, v in model.state_dict().items():
        assert state[k].dtype == v.dtype, k  # floats come back as float32, counters as int64
    f = features[0].unsqueeze(0)
    n = torch.tensor([f.shape[1]])
    with torch.no_grad():
        a, _ = model(f, n)
        b, _ = loaded(f, n)
    if dtype is None:
        assert torch.equal(a, b)
    else:
        assert not torch.equal(a, b)  # the weights really were rounded
        torch.testing.assert_close(b, a, atol=5e-2, rtol=0)
        assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    # The file is half the size in float16.
    if dtype is not None:
        with safe_open(str(tmp_path / WEIGHTS_NAME), "pt") as fh:
            assert all(fh.get_tensor(k).dtype in (torch.float16, torch.int64) for k in fh.keys())


def test_release_config_travels_with_the_weights(tmp_path):
    dims = tiny()
    save_release(tmp_path, build(dims).state_dict(), release_config(dims))
    _, config = load_release(tmp_path)
    assert config["model_type"] == "deepspeech2" and config["dims"] == dims.to_dict()
    assert FeatureConfig.from_dict(config["features"]) == FEATS
    with safe_open(str(tmp_path / WEIGHTS_NAME), "pt") as fh:
        assert fh.metadata()["model_type"] == "deepspeech2"
    # A path to the weights file works as well as the folder.
    assert load_release(tmp_path / WEIGHTS_NAME)[1] == config


def test_release_refuses_wrong_type_and_missing_config(tmp_path):
    from speech.models.gender import GenderDims, GenderNet

    dims = tiny()
    gender = GenderDims(n_features=FEATS.n_features)
    save_release(tmp_path / "gender", GenderNet(gender).state_dict(),
                 {"model_type": "gender-cnn", "dims": gender.to_dict(), "features": FEATS.to_dict()})
    with pytest.raises(CheckpointError) as e:
        load_release(tmp_path / "gender", expected_type="deepspeech2")
    assert "gender-cnn" in str(e.value) and "deepspeech2" in str(e.value)
    with pytest.raises(CheckpointError, match="deepspeech2"):   # the message lists the known types
        save_release(tmp_path / "unknown", build(dims).state_dict(), {**release_config(dims), "model_type": "gender"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=CONFIG_NAME):
        load_release(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="model_type"):
        save_release(tmp_path / "untyped", build(dims).state_dict(), {"dims": dims.to_dict()})


def test_release_never_pickles(tmp_path, features, monkeypatch):
    dims = tiny()
    model = build(dims)
    save_release(tmp_path, model.state_dict(), release_config(dims))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME])
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pkl"))
    head = (tmp_path / WEIGHTS_NAME).read_bytes()[:16]
    assert not head.startswith(b"\x80") and not head.startswith(b"PK")  # neither a pickle nor torch's zip

    def refuse(*a, **k):
        raise AssertionError("loading a release unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_model(tmp_path)
    f = features[1].unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(loaded(f, torch.tensor([f.shape[1]]))[0], model(f, torch.tensor([f.shape[1]]))[0])


def test_embedded_default_is_a_strict_safetensors_release():
    folder = Path(__file__).parent.parent / "checkpoints" / "ds2-ko"
    # No pickle and no torch.save zip (a KenLM .bin beside the weights is fine: it is not code).
    assert not [p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".ckpt")]
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            head = fh.read(4)
        assert not head.startswith(b"\x80") and head != b"PK\x03\x04", p
    model = load_model(folder)  # strict: every key present, none extra
    _, config = load_release(folder)
    assert model.dims.n_features == FeatureConfig.from_dict(config["features"]).n_features
    assert model.dims.n_tokens == len(config["tokenizer"]["tokens"])
    # the count the release recorded when it was trained, and its model card's 3.78M
    assert model.num_parameters() == config["parameters"] == 3_777_248
