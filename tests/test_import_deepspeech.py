"""The study's deepspeech.pytorch checkpoints: import, then transcribe exactly as the study's code.

Features are checked against tests/fixtures/study/study_features.npz, computed by
make_study_features.py beside it in a separate environment with the study's pinned librosa 0.10.1,
scipy 1.11.4 and numpy 1.26.2, with log-probabilities of the study's own model code. The model
reference below recomputes what deepspeech.pytorch does,
written the way it does it (int16 / 32767, librosa STFT with a scipy window and zero padding,
log1p magnitude, torch mean/std; T x N x H model with MaskConv, BatchRNN, SequenceWise, its
Lookahead and softmax), from the original state dict.
"""
import dataclasses
import importlib.util
import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn as nn
import torch.nn.functional as F

from speech.audio import load_audio
from speech.features import FeatureConfig, batched_features, compute_features
from speech.import_deepspeech import DeepSpeechImportError, feature_config, import_checkpoint, main
from speech.stt import DS2Engine

FIXTURES = Path(__file__).parent / "fixtures"
CLIP = FIXTURES / "examples" / "ko_male_emh00003.flac"
STUDY_FEATURES = FIXTURES / "study" / "study_features.npz"
STUDY_SCRIPT = FIXTURES / "study" / "make_study_features.py"
# deepspeech.pytorch's convention: blank '_' first, space last.
LABELS = ["_", "'"] + list(dict.fromkeys("안녕하세요기다리고있었습니다가나")) + [" "]
AUDIO_CONF = {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01, "window": "hamming",
              "noise_dir": None, "noise_prob": 0.4, "noise_levels": [0.0, 0.5]}


# --- the study's code, restated ------------------------------------------------------------

def study_features(audio: np.ndarray, conf: dict) -> torch.Tensor:
    y = np.round(audio * 32768).astype(np.float32) / 32767     # the study reads int16, divides by 32767
    n_fft = int(conf["sample_rate"] * conf["window_size"])
    hop = int(conf["sample_rate"] * conf["window_stride"])
    d = librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=scipy.signal.windows.hamming,
                     pad_mode="constant")  # librosa >= 0.9's default; the study pins 0.10.1
    spect, _ = librosa.magphase(d)
    spect = torch.FloatTensor(np.log1p(spect))
    return (spect - spect.mean()) / spect.std()                 # (F, T)


class SequenceWise(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        t, n = x.size(0), x.size(1)
        return self.module(x.view(t * n, -1)).view(t, n, -1)


class BatchRNN(nn.Module):
    def __init__(self, input_size, hidden_size, rnn_type, bidirectional, batch_norm=True, bias=True):
        super().__init__()
        self.bidirectional = bidirectional
        self.batch_norm = SequenceWise(nn.BatchNorm1d(input_size)) if batch_norm else None
        self.rnn = rnn_type(input_size=input_size, hidden_size=hidden_size, bidirectional=bidirectional, bias=bias)

    def forward(self, x, lengths):
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        x = nn.utils.rnn.pack_padded_sequence(x, lengths)
        x, _ = self.rnn(x)
        x, _ = nn.utils.rnn.pad_packed_sequence(x)
        if self.bidirectional:
            x = x.view(x.size(0), x.size(1), 2, -1).sum(2).view(x.size(0), x.size(1), -1)
        return x


class Lookahead(nn.Module):
    def __init__(self, n_features, context):
        super().__init__()
        self.pad = (0, context - 1)
        self.conv = nn.Conv1d(n_features, n_features, kernel_size=context, groups=n_features, bias=False)

    def forward(self, x):
        x = F.pad(x.transpose(0, 1).transpose(1, 2), pad=self.pad, value=0)
        return self.conv(x).transpose(1, 2).transpose(0, 1).contiguous()


class StudyDeepSpeech(nn.Module):
    def __init__(self, labels, hidden_size, hidden_layers, rnn_type, bidirectional, conf, context=20, rnn_bias=True):
        super().__init__()
        self.bidirectional = bidirectional
        self.conv = nn.Module()
        self.conv.seq_module = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)), nn.BatchNorm2d(32),
            nn.Hardtanh(0, 20, inplace=True),
            nn.Conv2d(32, 32, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)), nn.BatchNorm2d(32),
            nn.Hardtanh(0, 20, inplace=True))
        size = int(math.floor((conf["sample_rate"] * conf["window_size"]) / 2) + 1)
        size = int(math.floor(size + 2 * 20 - 41) / 2 + 1)
        size = int(math.floor(size + 2 * 10 - 21) / 2 + 1) * 32
        self.rnns = nn.Sequential(
            BatchRNN(size, hidden_size, rnn_type, bidirectional, batch_norm=False, bias=rnn_bias),
            *(BatchRNN(hidden_size, hidden_size, rnn_type, bidirectional, bias=rnn_bias) for _ in range(hidden_layers - 1)))
        self.lookahead = None if bidirectional else nn.Sequential(Lookahead(hidden_size, context), nn.Hardtanh(0, 20))
        self.fc = nn.Sequential(SequenceWise(nn.Sequential(nn.BatchNorm1d(hidden_size),
                                                           nn.Linear(hidden_size, len(labels), bias=False))))

    def forward(self, x, lengths):                              # x: (N, 1, F, T)
        out_lengths = lengths
        for m in self.conv.seq_module:
            if isinstance(m, nn.Conv2d):
                out_lengths = (out_lengths + 2 * m.padding[1] - (m.kernel_size[1] - 1) - 1) // m.stride[1] + 1
        for m in self.conv.seq_module:                          # MaskConv
            x = m(x)
            for i, n in enumerate(out_lengths.tolist()):
                x[i, :, :, n:] = 0
        s = x.size()
        x = x.view(s[0], s[1] * s[2], s[3]).transpose(1, 2).transpose(0, 1).contiguous()  # T x N x H
        for rnn in self.rnns:
            x = rnn(x, out_lengths)
        if self.lookahead is not None:
            x = self.lookahead(x)
        return F.softmax(self.fc(x).transpose(0, 1), dim=-1), out_lengths


def study_greedy(probs: torch.Tensor, labels) -> str:
    out, prev = [], None
    for i in probs.argmax(-1).tolist():
        if i != prev and i != 0:
            out.append(labels[i])
        prev = i
    return "".join(out)


def make_study_model(seed=0, rnn_type=nn.LSTM, bidirectional=True, context=20, rnn_bias=True):
    torch.manual_seed(seed)
    model = StudyDeepSpeech(LABELS, 32, 3, rnn_type, bidirectional, AUDIO_CONF, context, rnn_bias)
    for m in model.modules():                                   # trained-looking BatchNorm statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    with torch.no_grad():  # a head that follows the frames (not one class everywhere): varied output
        head_norm = model.fc[0].module[0]
        head_norm.running_mean.zero_()
        head_norm.bias.zero_()
        head_norm.running_var.fill_(0.01)
        model.fc[0].module[1].weight.mul_(5)
    return model.eval()


def study_transcribe(model, audio):
    spect = study_features(audio, AUDIO_CONF)
    with torch.no_grad():
        probs, lengths = model(spect[None, None], torch.tensor([spect.shape[1]], dtype=torch.int32))
    return probs[0, :lengths[0]], study_greedy(probs[0, :lengths[0]], LABELS)


def save_pre_lightning(model, path, rnn_type="lstm", bidirectional=True):
    torch.save({"version": "0.0.1", "hidden_size": 32, "hidden_layers": 3, "rnn_type": rnn_type,
                "audio_conf": AUDIO_CONF, "labels": LABELS, "state_dict": model.state_dict(),
                "bidirectional": bidirectional, "epoch": 7, "loss_results": torch.rand(7)}, path)


def save_study_checkpoint_handler(model, path, rnn_type, bidirectional):
    """What the study's CheckpointHandler writes: TrainingState.serialize_state, one flat dict of the
    model's serialize_state, the training state (AdamW's state dict, ...) and the result tensors."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    model(torch.randn(2, 1, 161, 50), torch.tensor([50, 40], dtype=torch.int32))[0].sum().backward()
    optimizer.step()
    model.eval()
    torch.save({"hidden_size": 32, "hidden_layers": 3, "rnn_type": rnn_type, "audio_conf": AUDIO_CONF,
                "labels": LABELS, "state_dict": model.state_dict(), "bidirectional": bidirectional,
                "optim_dict": optimizer.state_dict(), "amp": None, "avg_loss": 1.5, "best_wer": None,
                "epoch": 3, "iteration": None, "loss_results": torch.IntTensor(10),
                "wer_results": torch.IntTensor(10), "cer_results": torch.IntTensor(10)}, path)


@pytest.fixture(scope="module")
def audio():
    return load_audio(CLIP)[:16000 * 2]


def check_same(out_dir, model, audio):
    probs, text = study_transcribe(model, audio)
    engine = DS2Engine(model=str(out_dir))
    engine.gate = False  # parity with the study's decoding of an untrained model; the gate: test_ds2_gate.py
    assert not engine.level_input  # the study's features exactly: level normalisation feeds the VAD only
    ours = engine.log_probs([audio])[0].exp()
    perm = [0, LABELS.index(" ")] + [i for i in range(1, len(LABELS)) if LABELS[i] != " "]
    assert ours.shape == probs.shape
    torch.testing.assert_close(ours, probs[:, perm], atol=2e-4, rtol=1e-3)
    result = engine.transcribe(audio)
    assert " ".join(text.split()) == result.text
    # the comparison covers emitted characters and probabilities that follow the audio
    assert result.text and float(probs.std(0).max()) > 0.01
    return result


def test_import_pre_lightning_bidirectional_lstm(tmp_path, audio):
    model = make_study_model(0)
    save_pre_lightning(model, tmp_path / "study.pth")
    out = import_checkpoint(tmp_path / "study.pth", tmp_path / "release")
    result = check_same(out, model, audio)
    assert result.segments and all(0 <= s.start < s.end <= result.duration + 0.05 for s in result.segments)


def test_import_unidirectional_gru_with_lookahead_and_no_rnn_bias(tmp_path, audio):
    model = make_study_model(1, rnn_type=nn.GRU, bidirectional=False, context=5, rnn_bias=False)
    save_pre_lightning(model, tmp_path / "uni.pth", rnn_type="gru", bidirectional=False)
    assert main([str(tmp_path / "uni.pth"), str(tmp_path / "release")]) == 0
    check_same(tmp_path / "release", model, audio)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_import_tanh_rnn(tmp_path, audio, bidirectional):
    model = make_study_model(4, rnn_type=nn.RNN, bidirectional=bidirectional, context=3)
    save_study_checkpoint_handler(model, tmp_path / "rnn.pth", "rnn", bidirectional)
    out = import_checkpoint(tmp_path / "rnn.pth", tmp_path / "release")
    check_same(out, model, audio)
    engine = DS2Engine(model=str(out))
    assert isinstance(engine.model.rnns[0].rnn, nn.RNN) and engine.model.rnns[0].rnn.nonlinearity == "tanh"


def imported_feature_config(tmp_path, pad_mode):
    model = make_study_model(5)
    save_pre_lightning(model, tmp_path / "study.pth")
    out = tmp_path / f"release-{pad_mode}"
    assert main([str(tmp_path / "study.pth"), str(out), "--pad-mode", pad_mode]) == 0
    return DS2Engine(model=str(out)).features                   # as the release folder states them


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_imported_features_match_the_study_reference(tmp_path, pad_mode):
    ref = np.load(STUDY_FEATURES)
    cfg = imported_feature_config(tmp_path, pad_mode)
    clips = [load_audio(FIXTURES / str(clip)) for clip in ref["clips"]]
    batched = {}
    for idx, feats, frames in batched_features(clips, cfg, batch_size=len(clips)):
        for row, i in enumerate(idx):
            batched[i] = feats[row, :frames[row]]
    for i, audio in enumerate(clips):
        frames, expected = ref[f"{i}_{pad_mode}_frames"], ref[f"{i}_{pad_mode}_features"]
        n_frames = int(ref[f"{i}_{pad_mode}_stats"][0])
        ours = compute_features(audio, cfg)
        assert ours.shape == (n_frames, expected.shape[1]) and frames[0] == 0 and frames[-1] == n_frames - 1
        np.testing.assert_allclose(ours[frames].numpy(), expected, atol=1e-5, rtol=0)
        # the engine's batches (shorter clips padded with zeros) give the same features
        torch.testing.assert_close(batched[i], ours, atol=1e-5, rtol=0)   # float32 FFT batches differ by ~2e-6


def load_script(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("key", ["lstm_bi", "rnn_uni"])
def test_log_probs_match_the_study_model_code(tmp_path, key):
    """Weights drawn as the fixture script drew them for the study's own model.py; our importer,
    audio loader, features and model on the clip give the log-probabilities that code gave."""
    ref = np.load(STUDY_FEATURES)
    labels = ref["labels"].tolist()
    rnn_type, direction = key.split("_")
    bidirectional = direction == "bi"
    shapes = {k: v.shape for k, v in StudyDeepSpeech(labels, 32, 3, {"lstm": nn.LSTM, "rnn": nn.RNN}[rnn_type],
                                                     bidirectional, AUDIO_CONF).state_dict().items()}
    state = {k: torch.from_numpy(v) for k, v in load_script(STUDY_SCRIPT).seeded_state(shapes).items()}
    torch.save({"hidden_size": 32, "hidden_layers": 3, "rnn_type": rnn_type, "audio_conf": AUDIO_CONF,
                "labels": labels, "state_dict": state, "bidirectional": bidirectional}, tmp_path / "study.pth")
    engine = DS2Engine(model=str(import_checkpoint(tmp_path / "study.pth", tmp_path / "release")))
    ours = engine.log_probs([load_audio(FIXTURES / str(ref["clips"][0]))])[0]
    perm = [0, labels.index(" ")] + [i for i in range(1, len(labels)) if labels[i] != " "]
    expected = torch.from_numpy(ref[f"log_probs_{key}"][:, perm])
    assert ours.shape == expected.shape
    # measured: 1.4e-6 (LSTM), 7.9e-6 (RNN); reflect padding or a 1e-5 std epsilon move them 6.7e-5 to 1.9e-3
    torch.testing.assert_close(ours, expected, atol=3e-5, rtol=0)
    assert len(set(expected.argmax(-1).tolist())) > 1           # the outputs follow the audio


def test_each_study_setting_is_needed_to_match(tmp_path):
    """The reference tells each of the three settings apart: changing any one of them misses it."""
    ref = np.load(STUDY_FEATURES)
    cfg = imported_feature_config(tmp_path, "constant")
    assert (cfg.pad_mode, cfg.pcm_scale, cfg.norm_eps) == ("constant", 32767.0, 0.0)
    audio = load_audio(FIXTURES / str(ref["clips"][0]))
    frames, expected = ref["0_constant_frames"], ref["0_constant_features"]
    for change in ({"pad_mode": "reflect"}, {"pcm_scale": 32768.0}, {"norm_eps": 1e-5}):
        ours = compute_features(audio, dataclasses.replace(cfg, **change))[frames].numpy()
        assert np.abs(ours - expected).max() > 3e-5, change


def test_shipped_feature_defaults_are_unchanged():
    cfg = FeatureConfig()
    assert (cfg.pad_mode, cfg.pcm_scale, cfg.norm_eps) == ("constant", 32768.0, 1e-5)
    with pytest.raises(DeepSpeechImportError, match="pad_mode"):
        feature_config(AUDIO_CONF, pad_mode="edge")
    with pytest.raises(ValueError, match="'constant' or 'reflect'"):
        FeatureConfig(pad_mode="edge")


def test_import_lightning_layout(tmp_path, audio):
    model = make_study_model(2)
    torch.save({"epoch": 3, "state_dict": model.state_dict(),
                "hyper_parameters": {"labels": LABELS,
                                     "model_cfg": {"rnn_type": "lstm", "hidden_size": 32, "hidden_layers": 3},
                                     "spect_cfg": {"sample_rate": 16000, "window_size": 0.02,
                                                   "window_stride": 0.01, "window": "hamming"}}},
               tmp_path / "lightning.ckpt")
    check_same(import_checkpoint(tmp_path / "lightning.ckpt", tmp_path / "release"), model, audio)


class Arbitrary:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_refuses_files_that_need_unpickling(tmp_path, capsys):
    torch.save({"state_dict": {}, "hidden_size": 32, "payload": Arbitrary()}, tmp_path / "evil.pth")
    with pytest.raises(DeepSpeechImportError, match="weights_only"):
        import_checkpoint(tmp_path / "evil.pth", tmp_path / "out")
    assert "must never run" not in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_clear_errors(tmp_path):
    model = make_study_model(3)
    ckpt = {"hidden_size": 32, "hidden_layers": 3, "rnn_type": "sru", "audio_conf": AUDIO_CONF,
            "labels": LABELS, "state_dict": model.state_dict()}
    torch.save(ckpt, tmp_path / "rnn.pth")
    with pytest.raises(DeepSpeechImportError, match="rnn_type"):
        import_checkpoint(tmp_path / "rnn.pth", tmp_path / "out")
    torch.save({**ckpt, "rnn_type": "lstm", "labels": LABELS[:-1]}, tmp_path / "nospace.pth")
    with pytest.raises(DeepSpeechImportError, match="space"):
        import_checkpoint(tmp_path / "nospace.pth", tmp_path / "out")
    torch.save({**ckpt, "rnn_type": "lstm", "labels": LABELS + ["x"]}, tmp_path / "labels.pth")
    with pytest.raises(DeepSpeechImportError, match="shape"):
        import_checkpoint(tmp_path / "labels.pth", tmp_path / "out")
