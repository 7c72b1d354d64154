"""Diarization scoring and the speaker-embedding LDA fit, shared by tune_diarization,
tune_mixed, evaluate_speakers and fit_speaker_lda: the reference and hypothesis as pyannote
annotations, the DER (0.25 s collar, overlap skipped), the who-spoke scores of one file (`score`:
DER, female-share error, wrong-gender time, child/adult confusions), a conversation's speech regions and window
embeddings (kept in a cache folder), and the projections (LDA, within-speaker whitening) of window
embeddings of train speakers; and the float16 check of the speaker-encoder converters.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def annotation(segments):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for i, (s, e, spk) in enumerate(segments):
        ann[Segment(s, e), i] = spk
    return ann


def der_metric():
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate(collar=0.25, skip_overlap=True)


def reference(truth: dict):
    return annotation([(s, e, x[3] if len(x) > 3 else x[2]) for x in truth["segments"] for s, e in [x[:2]]])


STEP = 0.01


def gender_frames(segments, duration):
    """-> (N,) 0 none, 1 female, 2 male, 3 both."""
    codes = np.zeros(int(np.ceil(duration / STEP)) + 1, dtype=np.int8)
    for s, e, g in segments:
        if g in ("female", "male"):
            codes[int(s / STEP):int(e / STEP)] |= 1 if g == "female" else 2
    return codes


def score(truth, hyp_gender, hyp_speaker, female_share):
    true = gender_frames([x[:3] for x in truth["segments"]], truth["duration"])
    hyp = gender_frames(hyp_gender, truth["duration"])[:len(true)]
    hyp = np.pad(hyp, (0, len(true) - len(hyp)))
    single = ((true == 1) | (true == 2)) & (hyp > 0)
    m = der_metric()
    d = m(reference(truth), annotation(hyp_speaker), detailed=True)
    extra = {"adult_as_child": adult_as_child(truth, hyp_gender, len(true))}
    if any(x[2] == "child" for x in truth["segments"]):
        extra["child_as_parent"] = child_as_parent(truth, hyp_gender, len(true))
    return {
        **extra,
        "der": round(100 * d["diarization error rate"], 2),
        "confusion": round(100 * d["confusion"] / max(d["total"], 1e-9), 2),
        "miss": round(100 * d["missed detection"] / max(d["total"], 1e-9), 2),
        "false_alarm": round(100 * d["false alarm"] / max(d["total"], 1e-9), 2),
        "share_error_pp": round(100 * abs(female_share - truth["female_share"]), 2),
        "wrong_gender": round(100 * float((hyp[single] != true[single]).mean()), 2) if single.any() else 0.0,
        "speakers_found": len({x[2] for x in hyp_speaker}),
    }


def cover(segments, n: int, keep=lambda label: True) -> np.ndarray:
    """(n,) how many of `segments` ((start, end, label, ...)) whose label `keep` accepts cover each STEP frame."""
    out = np.zeros(n, np.int16)
    for s, e, g, *_ in segments:
        if keep(g):
            out[int(s / STEP):int(e / STEP)] += 1
    return out


def child_as_parent(truth, hyp_gender, n: int) -> float:
    """% of the time only the child talks and something is found that is labelled female or male."""
    only = (cover(truth["segments"], n, lambda g: g == "child") > 0) & (cover(truth["segments"], n, lambda g: g != "child") == 0)
    only &= cover(hyp_gender, n) > 0
    parent = cover(hyp_gender, n, lambda g: g in ("female", "male")) > 0
    return round(100 * float(parent[only].mean()), 2) if only.any() else 0.0


def adult_as_child(truth, hyp_gender, n: int) -> float:
    """% of the time exactly one adult talks and something is found that is labelled child (the
    wrong-gender figure counts female/male swaps only)."""
    one = (cover(truth["segments"], n, lambda g: g in ("female", "male")) == 1) & (cover(truth["segments"], n) == 1)
    one &= cover(hyp_gender, n) > 0
    child = cover(hyp_gender, n, lambda g: g == "child") > 0
    return round(100 * float(child[one].mean()), 2) if one.any() else 0.0


def cached_windows(folder: Path, name: str, variant: str, encoder, settings, min_samples: int,
                   cache=None):
    """One conversation file's speech regions (as the analysis finds them: speech.analysis.find_speech,
    regions too short for the gender classifier dropped) and raw window embeddings -> (spans, emb,
    wins, owner); read from / written to `cache`/NAME.VARIANT.npz when a cache folder is given."""
    from speech.analysis import find_speech
    from speech.audio import SAMPLE_RATE, load_audio
    from speech.diarize import embed_regions

    f = Path(cache) / f"{name}.{variant}.npz" if cache else None
    if f is not None and f.exists():
        z = np.load(f)
        return [tuple(x) for x in z["spans"]], z["emb"], [tuple(x) for x in z["wins"]], z["owner"]
    audio = load_audio(Path(folder) / f"{name}.{variant}.flac")
    spans = [(s, e) for s, e in find_speech(audio) if (e - s) * SAMPLE_RATE >= min_samples]
    emb, wins, owner = embed_regions(audio, spans, encoder, settings.window, settings.hop)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, spans=np.array(spans), emb=emb, wins=np.array(wins), owner=owner)
    return spans, emb, wins, owner


def window_labels(truth: dict, wins) -> list:
    out = []
    for s, e in wins:
        c = (s + e) / 2
        who = {x[3] for x in truth["segments"] if x[0] <= c <= x[1]}
        out.append(next(iter(who)) if len(who) == 1 else None)
    return out


def labelled_windows(truths: list, cache: Path, variants: list, exclude=()):
    """-> (x (N, E) float64, speaker (N,)): cached window embeddings where exactly one speaker
    talks, without the speakers in `exclude`."""
    xs, ys = [], []
    for t in truths:
        for v in variants:
            z = np.load(cache / f"{t['name']}.{v}.npz")
            for e, lab in zip(z["emb"], window_labels(t, [tuple(w) for w in z["wins"]])):
                if lab and lab not in exclude:
                    xs.append(e)
                    ys.append(lab)
    return np.array(xs, dtype=np.float64), np.array(ys)


def fit_wccn(truths: list, cache: Path, variants: list, shrink: float, exclude=()):
    """Within-speaker whitening -> (mean (E,), matrix (E, E), windows, speakers): matrix =
    (Sw + shrink * mean eigenvalue(Sw) * I)^(-1/2), Sw the within-speaker scatter of the windows."""
    x, y = labelled_windows(truths, cache, variants, exclude)
    xc = x.copy()
    for s in set(y):
        xc[y == s] -= x[y == s].mean(0)
    sw = xc.T @ xc / len(x)
    sw += shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    w, v = np.linalg.eigh(sw)
    matrix = (v / np.sqrt(w)) @ v.T
    return x.mean(0).astype(np.float32), matrix.astype(np.float32), len(y), len(set(y))


def fit_lda(truths: list, cache: Path, variants: list, dims: int, exclude=()):
    """-> (mean (E,), matrix (E, K), windows, speakers) from cached window embeddings of these conversations."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y = labelled_windows(truths, cache, variants, exclude)
    k = min(dims, len(set(y)) - 1)
    lda = LinearDiscriminantAnalysis(n_components=k).fit(x, y)
    mean, matrix = lda.xbar_.astype(np.float32), lda.scalings_[:, :k].astype(np.float32)
    assert np.allclose((x[:5] - mean) @ matrix, lda.transform(x[:5]), atol=1e-3)
    return mean, matrix, len(y), len(set(y))


FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def release_dtype(dtype: str, min_cosine: float, network, dims, state: dict, features, clips=None):
    """The converters' and train_speaker's choice of stored dtype ("float16" or "float32", their
    --dtype, --min-cosine, --check-audio) -> (torch dtype or None for float32, worst float16
    cosine): float16 only if no check clip's embedding moves below min_cosine; otherwise it stops
    and says so."""
    import torch

    worst = float16_worst_cosine(network, dims, state, features, clips)
    print(f"float16 vs float32 embeddings on the check clips: worst cosine {worst:.6f}")
    if dtype != "float16":
        return None, worst
    if worst < min_cosine:
        raise SystemExit(f"float16 parity fails ({worst:.6f} < {min_cosine}); use --dtype float32")
    return torch.float16, worst


def float16_worst_cosine(network, dims, state: dict, features, clips=None) -> float:
    """The lowest cosine, over real clips (default: the ko-speech and example test clips), between
    the utterance embeddings of a speaker network with `state` and with `state` rounded to float16:
    what a float16 release would lose (convert_resemblyzer, convert_campplus)."""
    from speech.audio import load_audio
    from speech.speaker import SpeakerEncoder

    full, half = network(dims), network(dims)
    full.load_state_dict(state, strict=True)
    half.load_state_dict({k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    clips = clips or sorted(str(x) for x in (FIXTURES / "ko-speech").glob("*.flac")) + \
        sorted(str(x) for x in (FIXTURES / "examples").glob("ko_*.flac"))
    a, b = SpeakerEncoder(full, features, {}), SpeakerEncoder(half, features, {})
    return min(float(a.embed_utterance(w) @ b.embed_utterance(w)) for w in map(load_audio, clips))
