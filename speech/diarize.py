"""Who spoke when: speaker embeddings of short windows, clustering (spectral, or average-linkage
cosine), and a smoothing pass, over the speech regions of one recording.

    segs = diarize(audio, spans, SpeakerEncoder.load())           # [(start, end, speaker_index)]
    segs = diarize(audio, spans, encoder, speakers=2)              # a fixed number of speakers

1. Every speech region is raised to -30 dBFS (the encoder's training level; quiet speech counts as
   much as loud) and cut into `window`-second windows every `hop` seconds (a region shorter than a
   window is one window); each window gets one embedding.
2. Embeddings go through the release's projection (a within-speaker whitening fitted on train
   speakers in clean, noisy and TV conversations: training/fit_speaker_lda.py), and runs of
   `block` windows inside a region (about 3 s) are averaged. The blocks are clustered:
   - `method="spectral"` (for recordings of `spectral_min_blocks` blocks or more): auto-tuned
     spectral clustering (`spectral`, NME-SC), which finds the number of speakers from the
     eigengap of the recording's own affinity graph, with no threshold; then a cluster whose
     blocks fall into groups more than `split` apart is split (`split_apart`);
   - `method="ahc"` (the shipped release's, and shorter recordings): average-linkage
     agglomerative clustering on cosine distance cut at `threshold` (the number of speakers follows).
   `speakers` fixes the count for either. Clusters with less than `min_speaker` seconds (or
   `min_share` of the recording's speech, in long recordings) are folded into the nearest larger
   one: a short odd stretch (a cough, a sentence ending) does not make a speaker. With `merge`, a
   cluster whose centroid lies within `merge` of a larger one's joins it.
3. Each window's similarity to each speaker's centroid, smoothed by Viterbi inside a region (a
   change of speaker inside a region costs `switch_penalty`; at a pause it is free). A window owns
   the time between the midpoints to its neighbours. A speaker the pass leaves with less than
   `min_speaker` seconds (it can shrink a cluster below what step 2 allowed) gives its windows to
   the others and the pass runs again (not when `speakers` fixes the count).

`diarization()` keeps steps 1 and 2 (a `Diarization`); its `segments()` is step 3, and
`segments(without=[k])` runs step 3 again without speaker k's centroid, so that a speaker found to
be no one (speech/analysis.py: a mixed voice) gives its windows to the speakers they are closest to:

    d = diarization(audio, spans, encoder)
    segs = d.segments()                      # as diarize()
    segs = d.segments(without=[2])           # speaker 2's windows go to the others

Why spectral: a threshold tuned on train speakers was far from right on other voices (22.7% DER
at 0.65 on 30 dev conversations; spectral 12.0%, with the split 10.3%): results/diarization_spectral.md.
With resemblyzer's encoder; with the fine-tuned CAM++, its whitening and the merge, average linkage
and spectral clustering tie on train conversations and the release's tune stage picks (average
linkage at 0.6): results/diarization_campplus_ft.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .speaker import SpeakerEncoder, raise_level

# Tuned on synthetic conversations of TRAIN speakers (training/tune_diarization.py --fit wccn:
# each conversation scored through a projection fitted without its speakers,
# results/diarization_tuning.md), in the space of the release's projection; dev speakers are
# held out for results/diarization_eval.md.
THRESHOLD = 0.75


@dataclass(frozen=True)
class DiarizationSettings:
    method: str = "ahc"               # "ahc": average linkage cut at `threshold`; "spectral": NME-SC (below)
    threshold: float = THRESHOLD      # cosine distance at which average-linkage clustering of regions stops
    max_speakers: int = 6             # "spectral": the most speakers its eigengap may find
    spectral_min_blocks: int = 30     # "spectral": fewer blocks (about 70 s of speech) are clustered by "ahc"
    split: float = 0.7                # "spectral": a cluster holding groups this far apart (average linkage) splits
    window: float = 1.6               # seconds per embedding (the encoder's partial length)
    hop: float = 0.8
    block: int = 3                    # windows per clustered block (0: a whole speech region)
    min_speaker: float = 4.0          # seconds: smaller clusters join the nearest larger one
    min_share: float = 0.01           # ... and, in long recordings, clusters under this share of the speech
    merge: float = 0.0                # a cluster whose centroid lies closer than this (cosine distance) to a
                                      # larger one's joins it (0: never; `speakers` fixed: never)
    switch_penalty: float = 0.3       # in cosine-similarity units (x scale below)
    scale: float = 10.0               # similarity -> log-score


def _windows(start: float, end: float, window: float, hop: float) -> list[tuple[float, float]]:
    if end - start <= window:
        return [(start, end)]
    n = int(np.ceil((end - start - window) / hop)) + 1
    starts = np.minimum(start + hop * np.arange(n), end - window)
    return [(float(s), float(s + window)) for s in starts]


def embed_regions(audio: np.ndarray, spans, encoder: SpeakerEncoder, window: float, hop: float,
                  batch_size: Optional[int] = None, gain: float = 1.0):
    """-> (embeddings (N, E), windows [(start, end)], region index of each window). `gain` undoes
    a level normalisation the caller applied (the encoder wants the recording's own level)."""
    p = encoder.dims.partial_frames
    batch_size = batch_size or encoder.model.batch_size
    frames_per_s = SAMPLE_RATE / encoder.features.hop_length
    mels, wins, owner, out = [], [], [], []
    for k, (s, e) in enumerate(spans):
        chunk = audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)]
        chunk = raise_level(chunk * np.float32(gain) if gain != 1.0 else chunk, encoder.dims.target_dbfs)
        m = encoder.mels(chunk, level=False)                      # one STFT per region
        for ws, we in _windows(s, e, window, hop):
            a = int(round((ws - s) * frames_per_s))
            mels.append(encoder.partial(m[a:a + min(p, int(round((we - ws) * frames_per_s)))]))
            wins.append((ws, we))
            owner.append(k)
            if len(mels) == batch_size:          # embed as we go: memory stays flat for hours of audio
                out.append(encoder.embed_mels(torch.stack(mels), batch_size))
                mels = []
    if mels:
        out.append(encoder.embed_mels(torch.stack(mels), batch_size))
    if not out:
        return np.zeros((0, encoder.dims.embedding), np.float32), [], np.zeros(0, int)
    return np.concatenate(out), wins, np.array(owner)


def cluster(emb: np.ndarray, threshold: float, speakers: Optional[int] = None) -> np.ndarray:
    """Average-linkage agglomerative clustering on cosine distance -> labels 0..K-1."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(emb)
    if n == 0:
        return np.zeros(0, int)
    if n == 1 or speakers == 1:
        return np.zeros(n, int)
    z = linkage(emb.astype(np.float64), method="average", metric="cosine")
    if speakers:
        labels = fcluster(z, t=min(speakers, n), criterion="maxclust")
    else:
        labels = fcluster(z, t=threshold, criterion="distance")
    return np.unique(labels, return_inverse=True)[1]


def spectral(emb: np.ndarray, speakers: Optional[int] = None, max_speakers: int = 6,
             min_neighbours: float = 0.1, max_neighbours: float = 0.25) -> np.ndarray:
    """Spectral clustering that finds its own pruning and speaker count (NME-SC: Park et al.,
    "Auto-tuning spectral clustering for speaker diarization using normalized maximum eigengap",
    IEEE SPL 2019). For each p, every row of the cosine affinity keeps its p largest entries
    (binarised, then symmetrised); the p whose graph Laplacian has the largest eigengap (relative to
    its largest eigenvalue) for the fewest neighbours wins, the number of speakers is where that gap
    lies (or `speakers`), and k-means on the Laplacian's first k eigenvectors gives the labels.
    p runs from `min_neighbours` to `max_neighbours` of the blocks: on train conversations the
    smallest p (2, 3 neighbours) cut one speaker into many (results/diarization_spectral.md).
    No threshold: each recording's own structure sets the count."""
    from scipy.cluster.vq import kmeans2
    from scipy.linalg import eigh

    n = len(emb)
    if n <= 2 or speakers == 1:
        return np.zeros(n, int)
    x = emb.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    order = np.argsort(-(x @ x.T), axis=1)
    kmax = min(max_speakers, n - 1)
    lo = max(2, int(min_neighbours * n))
    best = None
    for p in np.unique(np.linspace(lo, max(lo, int(max_neighbours * n)), 24).round().astype(int)):
        a = np.zeros((n, n))
        np.put_along_axis(a, order[:, :p], 1.0, axis=1)
        a = (a + a.T) / 2
        lap = np.diag(a.sum(1)) - a
        vals, vecs = eigh(lap, subset_by_index=[0, kmax])
        top = eigh(lap, eigvals_only=True, subset_by_index=[n - 1, n - 1])[0]
        gaps = np.diff(vals)
        k = int(np.argmax(gaps)) + 1
        ratio = p / (gaps[k - 1] / (top + 1e-10) + 1e-10)
        if best is None or ratio < best[0]:
            best = (ratio, k, vecs)
    _, k, vecs = best
    k = min(speakers, n) if speakers else k
    if k == 1:
        return np.zeros(n, int)
    feats = vecs[:, :k]
    labels = kmeans2(feats, feats[_spread(feats, k)], minit="matrix", iter=50)[1]
    return np.unique(labels, return_inverse=True)[1]


def split_apart(emb: np.ndarray, labels: np.ndarray, threshold: float, min_blocks: int = 3) -> np.ndarray:
    """Each cluster's blocks clustered again by average linkage cut at `threshold`; every group of at
    least `min_blocks` blocks (about 7 s) besides the first becomes a cluster of its own. The eigengap
    can miss a voice with few blocks (a mother with 10 s beside three minutes of others)."""
    out, nxt = labels.copy(), labels.max() + 1
    for c in range(labels.max() + 1):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= min_blocks:
            continue
        sub = cluster(emb[idx], threshold)
        for j in range(1, sub.max() + 1):
            if (sub == j).sum() >= min_blocks:
                out[idx[sub == j]] = nxt
                nxt += 1
    return np.unique(out, return_inverse=True)[1]


def _spread(x: np.ndarray, k: int) -> list[int]:
    """k row indices spread over x (k-means' seeds, deterministic): the row farthest from the mean,
    then each time the row farthest from those chosen."""
    chosen = [int(np.argmax(((x - x.mean(0)) ** 2).sum(1)))]
    dist = ((x - x[chosen[0]]) ** 2).sum(1)
    while len(chosen) < k:
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, ((x - x[chosen[-1]]) ** 2).sum(1))
    return chosen


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _centroids(emb, labels, k):
    c = np.stack([emb[labels == j].mean(0) for j in range(k)])
    return c / np.linalg.norm(c, axis=1, keepdims=True).clip(min=1e-12)


def fold_small(emb: np.ndarray, labels: np.ndarray, seconds: np.ndarray, min_speaker: float,
               keep: Optional[int] = None) -> np.ndarray:
    """Clusters under `min_speaker` seconds (`seconds`: each item's duration) join the most similar
    remaining cluster (with `keep`, the `keep` longest survive whatever their length)."""
    labels = labels.copy()
    seconds = np.broadcast_to(np.asarray(seconds, dtype=float), labels.shape)
    while True:
        ids = np.unique(labels)
        counts = np.array([seconds[labels == i].sum() for i in ids])
        if len(ids) <= 1:
            break
        order = np.argsort(-counts)
        big = ids[order[:keep]] if keep else ids[counts >= min_speaker]
        if len(big) == 0:
            big = ids[order[:1]]
        small = [i for i in ids if i not in set(big)]
        if not small:
            break
        s = small[int(np.argmin([counts[list(ids).index(i)] for i in small]))]   # the smallest first
        sims = [float(_unit(emb[labels == s].mean(0)) @ _unit(emb[labels == b].mean(0))) for b in big]
        labels[labels == s] = big[int(np.argmax(sims))]
    return np.unique(labels, return_inverse=True)[1]


def merge_close(emb: np.ndarray, labels: np.ndarray, seconds: np.ndarray, distance: float) -> np.ndarray:
    """Clusters whose centroid is within `distance` (cosine) of a larger cluster's centroid join the
    nearest such larger cluster, the smallest first, until none is left. With a TV under the
    conversation, windows of family speech with the TV's voice beneath form a small cluster next to
    their speaker's (results/diarization_campplus.md)."""
    labels = labels.copy()
    seconds = np.broadcast_to(np.asarray(seconds, dtype=float), labels.shape)
    while True:
        ids = np.unique(labels)
        size = {i: seconds[labels == i].sum() for i in ids}
        cent = {i: _unit(emb[labels == i].mean(0)) for i in ids}
        best = None
        for i in ids:
            larger = [j for j in ids if (size[j], -j) > (size[i], -i)]        # ties: the lower id is larger
            if not larger:
                continue
            j = max(larger, key=lambda j: float(cent[i] @ cent[j]))
            if 1.0 - float(cent[i] @ cent[j]) < distance and (best is None or size[i] < best[0]):
                best = (size[i], i, j)
        if best is None:
            return np.unique(labels, return_inverse=True)[1]
        labels[labels == best[1]] = best[2]


def release_settings(encoder: SpeakerEncoder, **changes) -> DiarizationSettings:
    """The settings tuned for this encoder: its release's `diarization` section (e.g. the threshold
    its own projection was tuned with) over the defaults above, then `changes`."""
    tuned = encoder.config.get("diarization") or {}
    return replace(DiarizationSettings(), **{**tuned, **changes})


def diarize(audio: np.ndarray, spans, encoder: SpeakerEncoder, speakers: Optional[int] = None,
            settings: Optional[DiarizationSettings] = None, gain: float = 1.0) -> list[tuple[float, float, int]]:
    """Speech regions of one 16 kHz recording -> [(start, end, speaker)] with speakers numbered
    0, 1, ... by first appearance. `settings`: default, the encoder's release_settings."""
    return diarization(audio, spans, encoder, speakers, settings, gain).segments()


def diarization(audio: np.ndarray, spans, encoder: SpeakerEncoder, speakers: Optional[int] = None,
                settings: Optional[DiarizationSettings] = None, gain: float = 1.0) -> "Diarization":
    """Steps 1 and 2 for one recording: its windows and their clusters (`Diarization.segments()`
    is step 3)."""
    if speakers is not None and speakers < 1:
        raise ValueError(f"speakers must be 1 or more, got {speakers}")
    settings = settings or release_settings(encoder)
    emb, wins, owner = embed_regions(audio, spans, encoder, settings.window, settings.hop, gain=gain)
    return Diarization.from_windows(encoder.project(emb), wins, owner, spans, speakers, settings)


def _blocks(owner: np.ndarray, size: int) -> np.ndarray:
    """Block index of each window: runs of at most `size` windows inside one region (0: whole regions)."""
    out = np.zeros(len(owner), dtype=int)
    b, run = 0, 0
    for i in range(len(owner)):
        if i > 0 and (owner[i] != owner[i - 1] or (size and run == size)):
            b, run = b + 1, 0
        out[i] = b
        run += 1
    return out


def cluster_windows(emb: np.ndarray, wins: list, owner: np.ndarray, spans, speakers: Optional[int] = None,
                    settings: DiarizationSettings = DiarizationSettings()) -> np.ndarray:
    """Window embeddings (from embed_regions, projected) -> each window's cluster: step 2 above."""
    block = _blocks(owner, settings.block)
    blocks = np.unique(block)
    blk_emb = np.stack([_unit(emb[block == b].mean(0)) for b in blocks])
    blk_sec = np.array([wins[np.flatnonzero(block == b)[-1]][1] - wins[np.flatnonzero(block == b)[0]][0]
                        for b in blocks])
    if settings.method == "spectral" and len(blocks) >= settings.spectral_min_blocks:
        blk_labels = spectral(blk_emb, speakers, settings.max_speakers)
        if not speakers:
            blk_labels = split_apart(blk_emb, blk_labels, settings.split)
    elif settings.method in ("ahc", "spectral"):
        blk_labels = cluster(blk_emb, settings.threshold, speakers)
    else:
        raise ValueError(f"unknown clustering method {settings.method!r} (ahc or spectral)")
    # An hour holds more stray clusters (a laugh, a shout, a noisy minute) than a few minutes: on an
    # hour of chained train conversations (20 speakers) 4 s alone left 29 speakers, 1% of the speech 21.
    blk_labels = fold_small(blk_emb, blk_labels, blk_sec, smallest_speaker(settings, spans),
                            keep=speakers if speakers else None)
    if settings.merge and not speakers:
        blk_labels = merge_close(blk_emb, blk_labels, blk_sec, settings.merge)
    return blk_labels[block]                                    # each window starts with its block's speaker


def smallest_speaker(settings: DiarizationSettings, spans) -> float:
    """Seconds of speech a speaker needs: `min_speaker`, or `min_share` of the speech in long recordings."""
    return max(settings.min_speaker, settings.min_share * sum(e - s for s, e in spans))


@dataclass(eq=False)
class Diarization:
    """One recording's projected window embeddings and their clusters (steps 1 and 2), from which
    `segments` draws who spoke when (step 3). Kept whole so that a speaker found afterwards to be
    no one (speech/analysis.py: a voice neither clearly female nor male, windows of two voices at
    once) can be taken out and its windows given to the speakers they are closest to."""

    emb: np.ndarray
    wins: list
    owner: np.ndarray
    spans: list
    labels: np.ndarray                # each window's cluster
    settings: DiarizationSettings
    fixed: bool = False               # the caller fixed the number of speakers

    @classmethod
    def from_windows(cls, emb, wins, owner, spans, speakers: Optional[int] = None,
                     settings: DiarizationSettings = DiarizationSettings()) -> "Diarization":
        labels = cluster_windows(emb, wins, owner, spans, speakers, settings) if len(wins) else np.zeros(0, int)
        return cls(emb, wins, owner, spans, labels, settings, fixed=bool(speakers))

    def segments(self, without=()) -> list[tuple[float, float, int]]:
        """[(start, end, speaker)], speakers numbered 0, 1, ... by first appearance. `without`:
        speakers (numbered as `segments()` numbers them) whose windows go to the others."""
        if len(self.wins) == 0:
            return []
        out = self._settled(list(range(self.labels.max() + 1)))
        if without:
            first = list(dict.fromkeys(c for *_, c in out))         # cluster of speaker 0, 1, ...
            gone = {first[i] for i in without}
            keep = sorted(c for c in first if c not in gone)        # a cluster that owned no window stays out
            if not keep:
                raise ValueError("cannot take out every speaker")
            out = self._settled(keep)
        number = {}
        for *_, c in out:
            number.setdefault(c, len(number))
        return [(a, b, number[c]) for a, b, c in out]

    def _settled(self, keep: list) -> list[tuple[float, float, int]]:
        """Step 3 over the clusters in `keep`; a speaker the pass leaves with less speech than
        `smallest_speaker` (step 2 folded small clusters before it, but the pass can shrink one
        below it) gives its windows to the others, and the pass runs again. Not when the count was
        fixed, and never every speaker."""
        out = self._viterbi(keep)
        floor = smallest_speaker(self.settings, self.spans)
        while not self.fixed:
            seconds: dict = {}
            for a, b, c in out:
                seconds[c] = seconds.get(c, 0.0) + b - a
            small = {c for c, t in seconds.items() if t < floor}
            if not small or len(small) == len(seconds):
                break
            out = self._viterbi(sorted(c for c in seconds if c not in small))
        return out

    def _viterbi(self, keep: list) -> list[tuple[float, float, int]]:
        """Step 3 with the centroids of the clusters in `keep` only -> [(start, end, cluster)]."""
        from .analysis import viterbi

        st = self.settings
        cent = _centroids(self.emb, self.labels, self.labels.max() + 1)[keep]
        sim = self.emb @ cent.T                                         # (N, K)
        owner = self.owner
        cost = np.full(len(self.wins), st.switch_penalty * st.scale)
        cost[np.r_[True, owner[1:] != owner[:-1]]] = 0.0              # a new region may start with anyone
        path = viterbi(st.scale * sim, cost) if len(keep) > 1 else np.zeros(len(self.wins), int)
        path = np.asarray(keep)[path]
        out = []
        for r in np.unique(owner):
            idx = np.flatnonzero(owner == r)
            s, e = self.spans[r]
            centres = np.array([(self.wins[i][0] + self.wins[i][1]) / 2 for i in idx])
            edges = np.concatenate([[s], (centres[1:] + centres[:-1]) / 2, [e]])
            for j, i in enumerate(idx):
                a, b, spk = float(edges[j]), float(edges[j + 1]), int(path[i])
                if out and out[-1][2] == spk and abs(out[-1][1] - a) < 1e-6:
                    out[-1] = (out[-1][0], b, spk)
                elif b > a:
                    out.append((a, b, spk))
        return out


def assign(emb: np.ndarray, wins: list, owner: np.ndarray, spans, speakers: Optional[int] = None,
           settings: DiarizationSettings = DiarizationSettings()) -> list[tuple[float, float, int]]:
    """Window embeddings (from embed_regions, projected) -> speaker segments: steps 2 and 3 above."""
    return Diarization.from_windows(emb, wins, owner, spans, speakers, settings).segments()


def count_voices(audio: np.ndarray, encoder: SpeakerEncoder, settings: Optional[DiarizationSettings] = None) -> int:
    """How many voices one clip holds (0 without speech): the gender tab's check that it was given
    one speaker. Each voice needs `settings.min_speaker` seconds of speech (less than in a long
    recording: a short clip's second voice may say only one sentence)."""
    from .vad import speech_spans

    spans = [(s, e) for s, e in speech_spans(audio, max_span=30.0) if e - s >= 0.15]
    settings = settings or release_settings(encoder, min_speaker=2.4)
    return len({k for *_, k in diarize(audio, spans, encoder, settings=settings)})
