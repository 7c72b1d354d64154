"""The study's deepspeech.pytorch checkpoints: import, then transcribe exactly as the study's code.

The reference below recomputes what deepspeech.pytorch does, written the way it does it (librosa
STFT with a scipy window and reflect padding, log1p magnitude, torch mean/std; T x N x H model
with MaskConv, BatchRNN, SequenceWise, its Lookahead and softmax), from the original state dict.
"""
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
from speech.import_deepspeech import DeepSpeechImportError, import_checkpoint, main
from speech.stt import DS2Engine

CLIP = Path(__file__).parent / "fixtures" / "examples" / "ko_male_emh00003.flac"
# deepspeech.pytorch's convention: blank '_' first, space last.
LABELS = ["_", "'"] + list(dict.fromkeys("안녕하세요기다리고있었습니다가나")) + [" "]
AUDIO_CONF = {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01, "window": "hamming",
              "noise_dir": None, "noise_prob": 0.4, "noise_levels": [0.0, 0.5]}


# --- the study's code, restated ------------------------------------------------------------

def study_features(y: np.ndarray, conf: dict) -> torch.Tensor:
    n_fft = int(conf["sample_rate"] * conf["window_size"])
    hop = int(conf["sample_rate"] * conf["window_stride"])
    d = librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=scipy.signal.windows.hamming,
                     pad_mode="reflect")  # librosa < 0.10 padded with 'reflect'
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
    ckpt = {"hidden_size": 32, "hidden_layers": 3, "rnn_type": "rnn", "audio_conf": AUDIO_CONF,
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
