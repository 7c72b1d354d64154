"""Who talked how much: speech turns of a household recording labelled female/male, with shares.

    report = analyze("living_room.m4a", GenderClassifier.load(), stt=None, progress=None)
    report.genders["female"]["share"], report.to_json(), report.to_rttm(), timeline_figure(report)

Pipeline: Silero VAD -> speech regions (at most `max_span` s each, so memory stays bounded)
-> one CNN pass per region, a gender posterior for a `window`-second window around every 40 ms
frame -> two-state Viterbi smoothing (a label change inside a region costs `switch_penalty` nats,
at a pause it is free) -> speech segments -> turns (same-gender segments less than `max_gap` apart
merge) -> optional transcription of each turn. Each gender's seconds count speech only.
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, AudioSource, load_audio
from .formats import to_srt, to_vtt
from .gender import LABELS, GenderClassifier
from .level import normalize_level

Progress = Optional[Callable[[float, str], None]]


@dataclass
class Segment:
    start: float
    end: float
    gender: str
    probability: float          # mean calibrated posterior of `gender` over the segment

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Turn:
    start: float
    end: float
    gender: str
    probability: float
    speech: float               # seconds of speech inside the turn (pauses excluded)
    text: Optional[str] = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class ConversationReport:
    path: Optional[str]
    duration: float
    speech_seconds: float
    genders: dict                     # {"female": {"seconds", "share"}, "male": {...}}
    turns: list
    segments: list
    rtf: float
    model: str
    transcribed: bool = False
    settings: dict = field(default_factory=dict)

    @property
    def n_turns(self) -> int:
        return len(self.turns)

    @property
    def longest_turn(self) -> Optional[Turn]:
        return max(self.turns, key=lambda t: t.duration) if self.turns else None

    def to_dict(self) -> dict:
        longest = self.longest_turn
        d = {
            "path": self.path,
            "duration": round(self.duration, 3),
            "speech_seconds": round(self.speech_seconds, 3),
            **{g: {k: round(v, 4) for k, v in self.genders[g].items()} for g in LABELS},
            "n_turns": self.n_turns,
            "longest_turn": None if longest is None else {
                "start": round(longest.start, 3), "end": round(longest.end, 3),
                "duration": round(longest.duration, 3), "gender": longest.gender},
            "turns": [self._turn_dict(i, t) for i, t in enumerate(self.turns, 1)],
            "model": self.model,
            "transcribed": self.transcribed,
            "rtf": round(self.rtf, 4),
            "settings": self.settings,
        }
        return d

    def _turn_dict(self, i: int, t: Turn) -> dict:
        d = {"turn": i, "start": round(t.start, 3), "end": round(t.end, 3), "duration": round(t.duration, 3),
             "gender": t.gender, "probability": round(t.probability, 4), "speech": round(t.speech, 3)}
        if self.transcribed:
            d["text"] = t.text or ""
        return d

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def table(self) -> tuple[list[str], list[list]]:
        """The per-turn table: header and rows (for CSV, the app's dataframe)."""
        rows = [list(self._turn_dict(i, t).values()) for i, t in enumerate(self.turns, 1)]
        header = ["turn", "start", "end", "duration", "gender", "probability", "speech"]
        return header + (["text"] if self.transcribed else []), rows

    def to_csv(self) -> str:
        header, rows = self.table()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()

    def _captions(self):
        for t in self.turns:
            label = f"[{t.gender}]"
            yield t.start, t.end, f"{label} {t.text}" if t.text else label

    def to_srt(self) -> str:
        return to_srt(self._captions())

    def to_vtt(self) -> str:
        return to_vtt(self._captions())

    def to_rttm(self, file_id: Optional[str] = None) -> str:
        """NIST RTTM, one SPEAKER line per speech segment; the 'speaker' is the gender label."""
        fid = file_id or (Path(self.path).stem if self.path else "audio")
        fid = "_".join(fid.split()) or "audio"
        return "".join(f"SPEAKER {fid} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {s.gender} <NA> <NA>\n"
                       for s in self.segments)

    def summary(self) -> str:
        g = self.genders
        lines = [f"duration {self.duration:.1f} s, speech {self.speech_seconds:.1f} s, {self.n_turns} turns"]
        for k in LABELS:
            lines.append(f"{k}: {g[k]['seconds']:.1f} s ({100 * g[k]['share']:.1f}% of speech)")
        if self.longest_turn:
            t = self.longest_turn
            lines.append(f"longest turn: {t.gender} {t.start:.1f}-{t.end:.1f} s ({t.duration:.1f} s)")
        return "\n".join(lines)


def viterbi(logp: np.ndarray, switch_cost: np.ndarray) -> np.ndarray:
    """Best state path. logp (T, K) frame log-posteriors; switch_cost (T,) nats to change state
    between frame t-1 and t (switch_cost[0] unused)."""
    t_len, k = logp.shape
    if t_len == 0:
        return np.zeros(0, dtype=int)
    score = logp[0].copy()
    back = np.zeros((t_len, k), dtype=np.int64)
    for t in range(1, t_len):
        # cand[i, j]: come from i into j
        cand = score[:, None] - switch_cost[t] * (1 - np.eye(k))
        back[t] = cand.argmax(0)
        score = cand.max(0) + logp[t]
    path = np.zeros(t_len, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(t_len - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def analyze(source: AudioSource, classifier: GenderClassifier, stt=None, progress: Progress = None, *,
            window: float = 1.5, switch_penalty: float = 6.0, max_gap: float = 2.0, max_span: float = 30.0,
            vad_threshold: float = 0.5, path: Optional[str] = None) -> ConversationReport:
    """Analyse one recording. `stt`: an engine from speech.stt.load_engine to transcribe turns."""
    from .vad import speech_spans

    t0 = time.perf_counter()
    if path is None and isinstance(source, (str, Path)):
        path = str(source)
    report_progress = progress or (lambda f, m: None)
    report_progress(0.0, "decoding audio")
    audio = load_audio(source)
    duration = len(audio) / SAMPLE_RATE
    vad_share = 0.3 if stt else 0.6
    spans = speech_spans(normalize_level(audio), threshold=vad_threshold, max_span=max_span,
                         progress=lambda pct: report_progress(vad_share * pct / 100, "detecting speech"))
    spans = [(s, e) for s, e in spans if (e - s) * SAMPLE_RATE >= classifier.min_samples]

    # Frame posteriors for every region, then one Viterbi pass over the whole recording.
    logps, times, costs, owner = [], [], [], []
    score_share = 0.2 if stt else 0.4
    for k, (s, e) in enumerate(spans):
        logits, fs = classifier.window_logits(audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)], window)
        n = len(logits)
        if n == 0:
            continue
        lp = torch.log_softmax(torch.from_numpy(logits) / classifier.temperature, -1).numpy()
        logps.append(lp)
        edges = s + np.arange(n + 1) * fs
        edges[-1] = e
        times.append(edges)
        c = np.full(n, switch_penalty)
        c[0] = 0.0                       # a new region (after a pause) may start with either gender
        costs.append(c)
        owner.append(k)
        report_progress(vad_share + score_share * (k + 1) / len(spans), "labelling gender")
    segments: list[Segment] = []
    if logps:
        lp_all = np.concatenate(logps)
        states = viterbi(lp_all, np.concatenate(costs))
        probs = np.exp(lp_all)
        pos = 0
        for lp, edges in zip(logps, times):
            p = states[pos:pos + len(lp)]
            pr = probs[pos:pos + len(lp)]
            pos += len(lp)
            start = 0
            for i in range(1, len(p) + 1):
                if i == len(p) or p[i] != p[start]:
                    g = int(p[start])
                    segments.append(Segment(float(edges[start]), float(edges[i]), classifier.labels[g],
                                            float(pr[start:i, g].mean())))
                    start = i

    turns: list[Turn] = []
    for seg in segments:
        last = turns[-1] if turns else None
        if last is not None and last.gender == seg.gender and seg.start - last.end <= max_gap:
            w = last.speech + seg.duration
            last.probability = (last.probability * last.speech + seg.probability * seg.duration) / w
            last.speech = w
            last.end = seg.end
        else:
            turns.append(Turn(seg.start, seg.end, seg.gender, seg.probability, seg.duration))

    if stt is not None:
        for i, t in enumerate(turns):
            chunk = audio[int(t.start * SAMPLE_RATE):int(t.end * SAMPLE_RATE)]
            try:
                t.text = stt.transcribe((SAMPLE_RATE, chunk)).text
            except AudioError:
                t.text = ""
            report_progress(0.5 + 0.5 * (i + 1) / len(turns), "transcribing")

    speech = float(sum(s.duration for s in segments))
    genders = {}
    for g in LABELS:
        sec = float(sum(s.duration for s in segments if s.gender == g))
        genders[g] = {"seconds": sec, "share": sec / speech if speech > 0 else 0.0}
    report_progress(1.0, "done")
    elapsed = time.perf_counter() - t0
    model = (classifier.config.get("name") or (classifier.folder.name if classifier.folder else "gender"))
    return ConversationReport(
        path=path, duration=duration, speech_seconds=speech, genders=genders, turns=turns,
        segments=segments, rtf=elapsed / max(duration, 1e-9), model=model, transcribed=stt is not None,
        settings={"window": window, "switch_penalty": switch_penalty, "max_gap": max_gap,
                  "vad_threshold": vad_threshold})
