"""The DeepSpeech2 trainer's input pipeline, sized for 1,000 hours.

- `CompactManifest` holds a manifest as a few numpy arrays (paths and texts as one UTF-8 blob each,
  durations as float32), so 500k rows cost tens of MB and no per-row Python objects: DataLoader
  workers forked from it share its pages instead of copying them on every reference count.
- `BucketBatchSampler` builds length-bucketed batches from the manifest's durations (no pass over
  the audio), the same plan on every rank, sharded so each rank takes the same number of batches,
  and can start an epoch at any batch (mid-epoch resume).
- `SpeechDataset` decodes, resamples and augments one utterance in a worker. Every random draw comes
  from a seed fixed by (run seed, epoch, batch, position), so the data a step sees does not depend
  on the number of workers, on which worker ran it, or on a resume.
- `collate` pads waveforms into a batch; features and SpecAugment run on the training device
  (`speech.features.compute_features`, the one feature function).
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from scipy.fft import next_fast_len

from speech.audio import SAMPLE_RATE, load_audio
from training.flags import flag
from training.manifest import iter_manifest
from training.noise import NoiseBank, limit_peak, mix_at_snr, synthetic_rir


@dataclass(frozen=True)
class AugmentConfig:
    speed: tuple = (0.9, 1.0, 1.1)          # speed perturbation factors, one drawn per utterance
    noise_dir: Optional[str] = flag(None, "noise folder with manifest.tsv (path, category, ...), e.g. "
                                          "../shared/data/noise")
    noise_prob: float = flag(0.6, "share of utterances mixed with noise")
    snr_min: float = 0.0
    snr_max: float = 20.0
    reverb_prob: float = flag(0.0, "share of utterances given a synthetic room impulse response")
    freq_masks: int = 2
    freq_mask_width: int = 15
    time_masks: int = 4
    time_mask_ratio: float = flag(0.05, "each SpecAugment time mask is at most this share of the utterance")
    gain_db: float = flag(6.0, "random gain, +- dB")


class CompactManifest:
    """A JSONL manifest (training/manifest.py format) as arrays: audio path, text, duration."""

    def __init__(self, paths: list[str], texts: list[str], durations):
        self._paths, self._path_off = _pack(paths)
        self._texts, self._text_off = _pack(texts)
        self.durations = np.asarray(durations, dtype=np.float32)

    @classmethod
    def read(cls, path: str | os.PathLike, max_duration: float = float("inf")) -> "CompactManifest":
        """Rows with a non-empty text and a duration up to `max_duration`, audio paths resolved.
        Rows are packed as they are read, so the peak is the packed size, not a list of dicts."""
        paths, texts, p_off, t_off, durs = bytearray(), bytearray(), array("q", [0]), array("q", [0]), array("f")
        for row in iter_manifest(path):   # one row at a time, audio path resolved
            try:
                audio, text, dur = row["audio"], row["text"], float(row["duration"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: row {row.get('utt') or row['audio']} needs a duration: {e}") from e
            if dur > max_duration or not text.strip():
                continue
            paths += audio.encode("utf-8")
            texts += text.encode("utf-8")
            p_off.append(len(paths))
            t_off.append(len(texts))
            durs.append(dur)
        m = cls.__new__(cls)
        m._paths, m._path_off = bytes(paths), np.frombuffer(p_off, dtype=np.int64).copy()
        m._texts, m._text_off = bytes(texts), np.frombuffer(t_off, dtype=np.int64).copy()
        m.durations = np.frombuffer(durs, dtype=np.float32).copy()
        return m

    def __len__(self) -> int:
        return len(self.durations)

    def audio(self, i: int) -> str:
        return self._paths[self._path_off[i]:self._path_off[i + 1]].decode("utf-8")

    def text(self, i: int) -> str:
        return self._texts[self._text_off[i]:self._text_off[i + 1]].decode("utf-8")

    @property
    def seconds(self) -> float:
        return float(self.durations.sum(dtype=np.float64))

    def nbytes(self) -> int:
        return len(self._paths) + len(self._texts) + self._path_off.nbytes + self._text_off.nbytes + self.durations.nbytes


def _pack(strings: list[str]) -> tuple[bytes, np.ndarray]:
    encoded = [s.encode("utf-8") for s in strings]
    off = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=off[1:])
    return b"".join(encoded), off


def item_seed(seed: int, epoch: int, batch: int, position: int) -> int:
    """The augmentation seed of one utterance in one step: fixed by where it is in the plan."""
    return int(np.random.SeedSequence([seed, epoch, batch, position]).generate_state(1)[0])


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar length, each at most `batch_seconds` of audio counted as the longest
    utterance times the batch size (what padding really costs). The plan depends only on
    (seed, epoch): every rank computes the same one and takes every world-th batch. The plan is
    padded by reusing batches so that all ranks take exactly `len(self)` batches (DDP's all-reduce
    waits for every rank). Yields lists of (index, augmentation seed)."""

    def __init__(self, durations, batch_seconds: float, *, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world: int = 1):
        self.durations = np.asarray(durations, dtype=np.float64)
        if len(self.durations) == 0:
            raise ValueError("no utterances to batch")
        if batch_seconds < self.durations.max():
            raise ValueError(f"batch_seconds {batch_seconds} is shorter than the longest utterance "
                             f"({self.durations.max():.1f} s)")
        self.batch_seconds, self.shuffle, self.seed = batch_seconds, shuffle, seed
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0
        self._cached: tuple[int, list] = (-1, [])

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch whose plan to give, starting at its `start`-th batch of this rank."""
        self.epoch, self.start = epoch, start

    def plan(self, epoch: int) -> list[np.ndarray]:
        """All ranks' batches of `epoch`, in training order (computed once per epoch)."""
        if self._cached[0] != epoch:
            self._cached = (epoch, self._make_plan(epoch))
        return self._cached[1]

    def _make_plan(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        d = self.durations
        key = d * rng.uniform(0.9, 1.1, size=len(d)) if self.shuffle else d
        order = np.argsort(key, kind="stable")
        sd = d[order]
        batches, i, n = [], 0, len(order)
        while i < n:  # sorted by (noisy) length: grow the batch while longest * count fits
            j, longest = i + 1, sd[i]
            while j < n and max(longest, sd[j]) * (j - i + 1) <= self.batch_seconds:
                longest = max(longest, sd[j])
                j += 1
            batches.append(order[i:j])
            i = j
        if self.shuffle:
            rng.shuffle(batches)
        need = self.world * max(1, -(-len(batches) // self.world))
        if len(batches) < need:
            batches = (batches * (need // len(batches) + 1))[:need]
        return batches

    def __len__(self) -> int:
        """Batches per rank in a full epoch (the same for every epoch up to the plan's jitter)."""
        return len(self.plan(self.epoch)) // self.world

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        plan = self.plan(self.epoch)
        mine = plan[self.rank::self.world][:len(plan) // self.world]
        for b in range(self.start, len(mine)):
            g = b * self.world + self.rank  # the batch's place in the shared plan
            yield [(int(i), item_seed(self.seed, self.epoch, g, p)) for p, i in enumerate(mine[b])]


class SpeechDataset(torch.utils.data.Dataset):
    """One utterance: waveform (float32, 16 kHz, augmented when an `AugmentConfig` is given), its
    token ids, and its index. Indexed by (index, seed) pairs from `BucketBatchSampler`."""

    def __init__(self, manifest: CompactManifest, tokenizer, augment: Optional[AugmentConfig] = None):
        self.manifest, self.tokenizer, self.augment = manifest, tokenizer, augment
        self.noise = None
        if augment is not None and augment.noise_dir and augment.noise_prob > 0:
            self.noise = NoiseBank(augment.noise_dir)  # loaded once, before workers fork

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, 0)
        wav = torch.from_numpy(load_audio(self.manifest.audio(i), check=False))
        if self.augment is not None:
            wav = augment_waveform(wav, self.augment, self.noise, torch.Generator().manual_seed(seed))
        ids = torch.tensor(self.tokenizer.encode(self.manifest.text(i)), dtype=torch.long)
        return i, wav, ids


def augment_waveform(wav: torch.Tensor, c: AugmentConfig, noise: Optional[NoiseBank],
                     gen: torch.Generator) -> torch.Tensor:
    """Speed perturbation, room reverberation, household noise at a random SNR and a random gain,
    then the one peak rule (training.noise.limit_peak). torchaudio does the speed change
    (functional.speed) and the noise addition (functional.add_noise); its SpecAugment and
    SpeedPerturbation transforms draw from the global RNG, which would tie the data to the dropout
    draws and to the worker, so the random choices here come from `gen`."""
    import torchaudio.functional as AF

    def u() -> float:
        return float(torch.rand((), generator=gen))

    if len(c.speed) > 1 or c.speed[0] != 1.0:
        f = c.speed[int(torch.randint(len(c.speed), (1,), generator=gen))]
        if f != 1.0:  # play `f` times faster (torchaudio: recorded at f*sr, resampled to sr)
            wav = AF.speed(wav, SAMPLE_RATE, f)[0]
    if c.reverb_prob and u() < c.reverb_prob:
        rir = synthetic_rir(0.2 + 0.6 * u(), SAMPLE_RATE, gen, wav.device)
        wav = fast_convolve(wav, rir)
    if noise is not None and u() < c.noise_prob:
        snr = c.snr_min + (c.snr_max - c.snr_min) * u()
        wav = mix_at_snr(wav, noise.sample(len(wav), gen), snr)
    if c.gain_db:
        wav = wav * 10 ** ((2 * u() - 1) * c.gain_db / 20)
    return limit_peak(wav)


def load_utterances(rows: list[dict], trim_db: float = 30.0) -> list[np.ndarray]:
    """Manifest rows -> float32 16 kHz arrays, decoded once; leading/trailing silence quieter than
    `trim_db` below the peak trimmed so that crops hold speech (0 = no trim; a trim that would leave
    under 0.25 s keeps the whole clip)."""
    import librosa

    out = []
    for r in rows:
        a = load_audio(r["audio"])
        if trim_db:
            t, _ = librosa.effects.trim(a, top_db=trim_db, frame_length=512, hop_length=160)
            a = t if len(t) >= SAMPLE_RATE // 4 else a
        out.append(a)
    return out


def fast_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The first len(x) samples of x * h, through an FFT of a fast length (5-smooth): a plain
    full-length FFT of an arbitrary size is several times slower."""
    n = next_fast_len(len(x) + len(h) - 1, real=True)
    return torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(h, n), n)[: len(x)]


@dataclass
class Batch:
    index: torch.Tensor         # (B,) manifest rows
    wav: torch.Tensor           # (B, N) zero-padded waveforms
    lengths: torch.Tensor       # (B,) samples
    targets: torch.Tensor       # (sum of target lengths,) token ids, concatenated
    target_lengths: torch.Tensor
    seed: int                   # SpecAugment seed of this batch

    def pin_memory(self) -> "Batch":
        self.wav = self.wav.pin_memory()
        return self

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / SAMPLE_RATE


def collate(items) -> Batch:
    idx, wavs, ids = zip(*items)
    lengths = torch.tensor([len(w) for w in wavs])
    wav = torch.zeros(len(wavs), int(lengths.max()))
    for row, w in enumerate(wavs):
        wav[row, :len(w)] = w
    seed = int(np.random.SeedSequence(list(idx)).generate_state(1)[0])
    return Batch(torch.tensor(idx), wav, lengths, torch.cat(ids), torch.tensor([len(t) for t in ids]), seed)


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, c: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment on (B, T, F): frequency and time masks set to 0 (the normalised mean). The mask
    positions are drawn on the CPU from `gen` and applied with one masked fill on the device.
    (torchaudio's FrequencyMasking/TimeMasking draw from the global RNG and mask the padded width,
    not each utterance's own length, so they do not fit here.)"""
    b, t, nf = feats.shape
    mask = torch.zeros(b, t, nf, dtype=torch.bool)
    for i in range(b):
        for _ in range(c.freq_masks):
            w = int(torch.randint(c.freq_mask_width + 1, (1,), generator=gen))
            f0 = int(torch.randint(max(1, nf - w), (1,), generator=gen))
            mask[i, :, f0:f0 + w] = True
        L = int(lengths[i])
        max_w = max(1, int(L * c.time_mask_ratio))
        for _ in range(c.time_masks):
            w = int(torch.randint(max_w + 1, (1,), generator=gen))
            t0 = int(torch.randint(max(1, L - w), (1,), generator=gen))
            mask[i, t0:t0 + w, :] = True
    return feats.masked_fill(mask.to(feats.device, non_blocking=True), 0.0)


def loader(dataset: SpeechDataset, sampler: BucketBatchSampler, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers, pin_memory=pin,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
        generator=torch.Generator(),  # its base seed is not drawn from (and does not move) the global RNG
        multiprocessing_context="fork" if workers and os.name == "posix" else None)
