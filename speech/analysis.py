"""Who talked how much: the speakers of a household recording, each labelled female/male (or
child), with talk time, shares and the parents' ratio.

    report = analyze("living_room.m4a", GenderClassifier.load(), stt=None, progress=None)
    report.parents_ratio, report.speakers, report.genders["female"]["share"], report.to_json(),
    report.to_rttm(), timeline_figure(report)

Pipeline (default, `diarize=True`): Silero VAD -> speech regions -> speaker diarization
(speech/diarize.py: window embeddings, spectral or average-linkage clustering, smoothing; `speakers` fixes
the count) -> a small speaker whose speech is neither clearly female nor male is no one (two voices
at once: a TV under a parent's quiet sentences) and its windows go to the others (`mixed_voices`)
-> each speaker's label from the gender classifier over ALL of that speaker's speech
(so one sentence ending cannot flip it), then segments of at least a second that the classifier
alone calls child inside an adult speaker (or adult inside a child) split off as their own speaker
(`label_speakers`) -> turns (a speaker's segments less than `max_gap` apart merge) -> optional
transcription. `female` and `male` count adult speakers; `child` and `tv` speakers are their own
classes; the family's shares leave `tv` out.

The gender-only pipeline (`diarize=False`, before speakers were found) is kept for comparison:
Silero VAD -> speech regions (at most `max_span` s each, so memory stays bounded)
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
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, AudioSource
from .formats import LINE_WIDTH, split_span, subtitle_cues, text_width, to_srt, to_vtt
from .gender import CHILD, LABELS, GenderClassifier
from .usable import load_speech, require_speech
from .level import level_gain_db
from .memory import release

Progress = Optional[Callable[[float, str], None]]
CLASSES = ("female", "male", "child", "tv")       # female/male: adults; tv: not a family member
FAMILY = ("female", "male", "child")


@dataclass
class Segment:
    start: float
    end: float
    gender: str
    probability: float          # mean calibrated posterior of `gender` over the segment
    speaker: str = ""

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
    # the recogniser's segments in the recording's timeline: (start, end, text, words), for subtitles
    text_segments: list = field(default_factory=list, repr=False)
    speaker: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Speaker:
    id: str                     # S1, S2, ... in order of first speech
    label: str                  # the classifier's label over all of this speaker's speech
    cls: str                    # class counted in the report: female/male (adults), child, tv
    probabilities: dict
    seconds: float
    share: float                # of the family's speech (0 for tv)
    turns: int
    tv_like: bool = False       # speech.tv judges it a TV or radio (its class is `tv` only with TV detection on)

    def to_dict(self) -> dict:
        return {"speaker": self.id, "class": self.cls, "label": self.label,
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
                "seconds": round(self.seconds, 3), "share": round(self.share, 4), "turns": self.turns,
                "tv_like": self.tv_like}


def _csv(header: list, rows: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


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
    speakers: list = field(default_factory=list)
    warnings: list = field(default_factory=list)   # why the labels may be wrong (speech.band: narrowband audio)

    @property
    def n_turns(self) -> int:
        return len(self.turns)

    @property
    def parents_ratio(self) -> Optional[tuple[float, float]]:
        """Adult female : adult male, as two shares summing to 1 (None without adult speech)."""
        f, m = self.genders["female"]["seconds"], self.genders["male"]["seconds"]
        return (f / (f + m), m / (f + m)) if f + m > 0 else None

    @property
    def longest_turn(self) -> Optional[Turn]:
        return max(self.turns, key=lambda t: t.duration) if self.turns else None

    def to_dict(self) -> dict:
        longest = self.longest_turn
        d = {
            "path": self.path,
            "duration": round(self.duration, 3),
            "speech_seconds": round(self.speech_seconds, 3),
            "parents_ratio": None if self.parents_ratio is None else
            {"female": round(self.parents_ratio[0], 4), "male": round(self.parents_ratio[1], 4)},
            **{g: {k: round(v, 4) for k, v in self.genders[g].items()} for g in CLASSES},
            "n_speakers": len(self.speakers),
            "speakers": [sp.to_dict() for sp in self.speakers],
            "n_turns": self.n_turns,
            "longest_turn": None if longest is None else {
                "start": round(longest.start, 3), "end": round(longest.end, 3),
                "duration": round(longest.duration, 3), "gender": longest.gender, "speaker": longest.speaker},
            "turns": [self._turn_dict(i, t) for i, t in enumerate(self.turns, 1)],
            "model": self.model,
            "transcribed": self.transcribed,
            "rtf": round(self.rtf, 4),
            "settings": self.settings,
            "warnings": self.warnings,
        }
        return d

    def _turn_dict(self, i: int, t: Turn) -> dict:
        d = {"turn": i, "start": round(t.start, 3), "end": round(t.end, 3), "duration": round(t.duration, 3),
             "gender": t.gender, "probability": round(t.probability, 4), "speech": round(t.speech, 3),
             "speaker": t.speaker}
        if self.transcribed:
            d["text"] = t.text or ""
        return d

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def table(self) -> tuple[list[str], list[list]]:
        """The per-turn table: header and rows (for CSV, the app's dataframe)."""
        rows = [list(self._turn_dict(i, t).values()) for i, t in enumerate(self.turns, 1)]
        header = ["turn", "start", "end", "duration", "gender", "probability", "speech", "speaker"]
        return header + (["text"] if self.transcribed else []), rows

    def to_csv(self) -> str:
        return _csv(*self.table())

    def speaker_table(self) -> tuple[list[str], list[list]]:
        """The per-speaker table: header and rows."""
        header = ["speaker", "class", "label", "seconds", "share", "turns"] + [f"p_{k}" for k in self.labels]
        rows = [[sp.id, sp.cls, sp.label, round(sp.seconds, 3), round(sp.share, 4), sp.turns]
                + [round(sp.probabilities.get(k, 0.0), 4) for k in self.labels] for sp in self.speakers]
        return header, rows

    @property
    def labels(self) -> list:
        return list(dict.fromkeys(k for sp in self.speakers for k in sp.probabilities))

    def to_speakers_csv(self) -> str:
        return _csv(*self.speaker_table())

    def _captions(self):
        """Subtitle cues sized for reading (speech.formats.subtitle_cues), each led by its gender:
        a transcribed turn splits at word times, one without text at its speech segments."""
        for t in self.turns:
            label = f"[{t.speaker} {t.gender}]" if t.speaker and t.speaker != t.gender else f"[{t.gender}]"
            if t.text:
                items = t.text_segments or [(t.start, t.end, t.text)]
                # the label leads the first line: it takes its width from every line's budget
                for start, end, text in subtitle_cues(items, line_width=LINE_WIDTH - text_width(label + " ")):
                    yield start, end, f"{label} {text}"
            else:
                for seg in self.segments:
                    if seg.start >= t.start - 1e-6 and seg.end <= t.end + 1e-6 and seg.speaker == t.speaker:
                        for start, end in split_span(seg.start, seg.end):
                            yield start, end, label

    def to_srt(self) -> str:
        return to_srt(self._captions())

    def to_vtt(self) -> str:
        return to_vtt(self._captions())

    def to_rttm(self, file_id: Optional[str] = None) -> str:
        """NIST RTTM, one SPEAKER line per speech segment, named by its speaker id (S1, ...; the
        gender label in the gender-only analysis)."""
        fid = file_id or (Path(self.path).stem if self.path else "audio")
        fid = "_".join(fid.split()) or "audio"
        return "".join(f"SPEAKER {fid} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {s.speaker or s.gender} <NA> <NA>\n"
                       for s in self.segments)

    def summary(self) -> str:
        g = self.genders
        lines = [f"warning: {w}" for w in self.warnings]
        if self.parents_ratio is not None:
            lines.append(f"parents' ratio (adult female : adult male): "
                         f"{100 * self.parents_ratio[0]:.1f} : {100 * self.parents_ratio[1]:.1f}")
        lines.append(f"duration {self.duration:.1f} s, speech {self.speech_seconds:.1f} s, {self.n_turns} turns, "
                     f"{len(self.speakers)} speakers")
        for k in CLASSES:
            if k in LABELS or g[k]["seconds"] > 0:
                lines.append(f"{k}: {g[k]['seconds']:.1f} s ({100 * g[k]['share']:.1f}% of "
                             f"{'speech' if k == 'tv' else 'family speech'})")
        for sp in self.speakers:
            lines.append(f"  {sp.id} {sp.cls}: {sp.seconds:.1f} s ({100 * sp.share:.1f}%), {sp.turns} turns, "
                         f"p({sp.label})={sp.probabilities.get(sp.label, 0):.2f}")
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
            vad_threshold: float = 0.5, path: Optional[str] = None, diarize: bool = True,
            speakers: Optional[int] = None, encoder=None, spans: Optional[list] = None,
            detect_tv: bool = False) -> ConversationReport:
    """Analyse one recording. `stt`: an engine from speech.stt.load_engine to transcribe turns.
    Audio without usable speech raises an AudioError saying why (speech.usable).
    `speakers`: fix the number of speakers (default: found automatically); `encoder`: a
    speech.speaker.SpeakerEncoder (default: the embedded one). `diarize=False`: the gender-only
    analysis (frame labels, no speakers); `window` and `switch_penalty` apply to it only.
    `spans`: speech regions already found by `find_speech` (evaluations compare systems on one VAD pass).
    `detect_tv`: report speakers that speech/tv.py calls TV or radio (`tv_speakers`: all speakers
    judged together) as `tv`, outside the family's shares. Off by default: in 10 dB household noise
    its detector called a real man TV (27 s of his speech, tests/test_analysis.py's long
    conversation), which moves the parents' ratio by 15 points, and a parent 9 dB or more under the
    loudest speaker can pass for a far TV (results/tv_speakers.md). Off, the speakers it would
    report stay family, and the report's `warnings` names them (`speech.tv.tv_counted_as_family`).
    Telephone-band audio is labelled by the classifier's narrowband release
    (`GenderClassifier.for_band`; the report's `model` names it and `warnings` says why)."""
    if speakers is not None and speakers < 1:
        raise ValueError(f"speakers must be at least 1, got {speakers}")
    t0 = time.perf_counter()
    if path is None and isinstance(source, (str, Path)):
        path = str(source)
    report_progress = progress or (lambda f, m: None)
    report_progress(0.0, "decoding audio")
    raw = load_speech(source)
    duration = len(raw) / SAMPLE_RATE
    classifier, warnings = classifier.for_band(raw)   # telephone-band audio: the narrowband release
    # The VAD and the gender classifier hear the level-normalised audio (a quiet 16-bit
    # recording's log-mel features otherwise sink into the log floor); the speaker encoder hears
    # the original level (its own front end raises it as resemblyzer does, and the LDA and the
    # threshold were fitted that way); the recogniser gets the original and normalises it its own way.
    gain_db = level_gain_db(raw)
    # One copy of an hour of audio is 230 MB, so only one is kept. Samples decoded here (from a
    # path or bytes) are ours: the gain is applied in place, and a transcription decodes the
    # original again once the speakers are found. A caller's array is never written to.
    decoded_here = not isinstance(source, (np.ndarray, tuple))
    if not gain_db:
        audio = raw
    elif decoded_here:
        audio = np.multiply(raw, np.float32(10.0 ** (gain_db / 20.0)), out=raw)
    else:
        audio = (raw * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)
    if stt is None or audio is raw:
        raw = None
    release()
    vad_share = 0.3 if stt else 0.6
    if spans is None:
        spans = find_speech(audio, vad_threshold, max_span,
                            lambda pct: report_progress(vad_share * pct / 100, "detecting speech"))
    spans = [(s, e) for s, e in spans if (e - s) * SAMPLE_RATE >= classifier.min_samples]
    score_share = 0.2 if stt else 0.4

    def step(frac: float, message: str) -> None:
        report_progress(vad_share + score_share * frac, message)

    if diarize:
        segments, speaker_list = _speaker_segments(audio, spans, classifier, encoder, speakers, step,
                                                   encoder_gain=10.0 ** (-gain_db / 20.0), detect_tv=detect_tv)
    else:
        segments = _gender_segments(audio, spans, classifier, window, switch_penalty, step)
        speaker_list = None
    require_speech(segments)  # no speech is an error (speech.usable), not an all-zero report
    if stt is not None:                   # the recogniser hears the original level
        if raw is None and not gain_db:
            raw = audio
        audio = None
        release()
        if raw is None:                   # the gain was applied in place: decode the original again
            raw = load_speech(source)

    turns: list[Turn] = []
    for seg in segments:
        last = turns[-1] if turns else None
        if last is not None and last.speaker == seg.speaker and seg.start - last.end <= max_gap:
            w = last.speech + seg.duration
            last.probability = (last.probability * last.speech + seg.probability * seg.duration) / w
            last.speech = w
            last.end = seg.end
        else:
            turns.append(Turn(seg.start, seg.end, seg.gender, seg.probability, seg.duration, speaker=seg.speaker))

    if stt is not None:
        for i, t in enumerate(turns):
            chunk = raw[int(t.start * SAMPLE_RATE):int(t.end * SAMPLE_RATE)]
            try:
                result = stt.transcribe((SAMPLE_RATE, chunk))
            except AudioError:
                t.text = ""
            else:
                t.text = result.text
                t.text_segments = [(t.start + g.start, t.start + g.end, g.text,
                                    [(t.start + w.start, t.start + w.end, w.text) for w in g.words])
                                   for g in result.segments]
            release()    # the recogniser's freed buffers: resident memory grew turn after turn without this
            report_progress(0.5 + 0.5 * (i + 1) / len(turns), "transcribing")

    speech = float(sum(s.duration for s in segments))
    if speaker_list is None:      # gender-only: one pseudo-speaker per gender label
        speaker_list = [Speaker(g, g, g, {g: 1.0}, 0.0, 0.0, 0) for g in classifier.labels]
    sp_class = {sp.id: sp.cls for sp in speaker_list}
    seconds = {c: 0.0 for c in CLASSES}
    for sp in speaker_list:
        sp.seconds = float(sum(s.duration for s in segments if s.speaker == sp.id))
        sp.turns = sum(1 for t in turns if t.speaker == sp.id)
    for s in segments:
        seconds[sp_class.get(s.speaker, s.gender)] += s.duration
    family = sum(seconds[c] for c in FAMILY)
    genders = {c: {"seconds": seconds[c],
                   "share": seconds[c] / (speech if c == "tv" else family) if (speech if c == "tv" else family) > 0
                   else 0.0} for c in CLASSES}
    for sp in speaker_list:
        sp.share = sp.seconds / family if family > 0 and sp.cls != "tv" else 0.0
    speaker_list = [sp for sp in speaker_list if sp.seconds > 0]
    counted = [sp for sp in speaker_list if sp.tv_like and sp.cls != "tv"]
    if counted:                   # TV detection off, and speakers sound like one: say so, with the remedy
        from .tv import tv_counted_as_family

        warnings = warnings + [tv_counted_as_family([sp.id for sp in counted], sum(sp.seconds for sp in counted))]
    report_progress(1.0, "done")
    elapsed = time.perf_counter() - t0
    model = classifier.model_name or "gender"
    settings = {"max_gap": max_gap, "vad_threshold": vad_threshold, "diarize": diarize, "detect_tv": detect_tv}
    if diarize:
        from .diarize import release_settings
        from .speaker import default_encoder

        used = encoder or default_encoder()
        settings.update(speakers=speakers, diarization=asdict(release_settings(used)), speaker_model=used.model_name,
                        mixed_voices=None if speakers else mixed_rule(classifier))
    else:
        settings.update(window=window, switch_penalty=switch_penalty)
    return ConversationReport(
        path=path, duration=duration, speech_seconds=speech, genders=genders, turns=turns,
        segments=segments, rtf=elapsed / max(duration, 1e-9), model=model, transcribed=stt is not None,
        settings=settings, speakers=speaker_list, warnings=warnings)


VAD_PAD = 0.25   # s around each region: Silero's regions clip soft onsets and endings (measured on
                 # train conversations: missed + false speech 4-6% at 0.25 s, 8% at its 0.05 s)


def find_speech(audio: np.ndarray, vad_threshold: float = 0.5, max_span: float = 30.0, progress=None) -> list:
    """Speech regions of one 16 kHz recording, as the analysis finds them: the VAD hears the
    level-normalised audio (speech/level.py, as speech to text does), so quiet and far speech counts."""
    from .vad import speech_spans

    # the gain of normalize_level(audio), applied by the VAD block by block: no copy of the recording
    audio = np.asarray(audio, dtype=np.float32)
    return speech_spans(audio, threshold=vad_threshold, max_span=max_span, pad=VAD_PAD,
                        gain_db=level_gain_db(audio), progress=progress)


# A speaker's class is decided over all of its speech, so one sentence cannot flip it; but when
# clustering merges a parent into the child's cluster (or the child into a parent's), whole turns of
# the other class sit inside it. A segment of at least CLASS_SPLIT_SECONDS whose own probabilities
# say child where the speaker is an adult (or an adult where the speaker is a child) with at least
# CLASS_SPLIT_CONFIDENCE becomes a speaker of its own class. Female/male never flip this way.
# Chosen on families of TRAIN speakers (0.8-0.95 and 1-3 s measured alike there);
# results/diarization_class_split.md.
CLASS_SPLIT_SECONDS = 1.0
CLASS_SPLIT_CONFIDENCE = 0.9


# A speaker whose speech is neither clearly female nor male (the likelier of the two under
# `confidence` of their sum, over all of its speech) and who holds under `share` of the speech is no
# one: windows of two voices at once. With a TV under the conversation, a family member's quieter
# sentences (about 5 dB over the TV) cluster apart with the TV's voice beneath them, and the
# cluster's gender follows whichever voice is stronger in them. Its windows go to the speakers they
# are closest to. `confidence` is a threshold on one gender release's calibrated probabilities, so
# it travels in that release's config.json (`mixed_voice`), chosen by its recipe with
# training/tune_mixed.py on conversations of TRAIN speakers; MIXED_* below are for a release that
# carries none (chosen by hand for an earlier gender-child-ko on 56 train conversations: with a TV,
# DER 10.63 -> 10.01%, female-share error 1.62 -> 1.58 pp, worst file 10.07 -> 7.44;
# results/diarization_mixed.md).
MIXED_CONFIDENCE = 0.92
MIXED_SHARE = 0.15


def mixed_rule(classifier: GenderClassifier) -> dict:
    """When a speaker is a mixed voice for this gender release: {"confidence", "share"} from its
    config's `mixed_voice`, else MIXED_* above."""
    rule = classifier.config.get("mixed_voice") or {}
    return {"confidence": float(rule.get("confidence", MIXED_CONFIDENCE)), "share": float(rule.get("share", MIXED_SHARE))}


def _speaker_segments(audio, spans, classifier: GenderClassifier, encoder, speakers, step, encoder_gain=1.0,
                      detect_tv: bool = False):
    """Diarize, take out mixed voices (above), then label each speaker from all of its speech ->
    (segments, speakers)."""
    from .diarize import diarization
    from .speaker import default_encoder

    step(0.0, "finding speakers")
    found = diarization(audio, spans, encoder or default_encoder(), speakers=speakers, gain=encoder_gain)
    release()
    step(0.6, "labelling speakers")
    out = label_diarization(audio, found, classifier, detect_tv=detect_tv)
    step(1.0, "labelling speakers")
    return out


def label_diarization(audio: np.ndarray, found, classifier: GenderClassifier, detect_tv: bool = False,
                      confidence: Optional[float] = None, share: Optional[float] = None,
                      logits: Optional[dict] = None):
    """A speech.diarize.Diarization -> (segments, speakers): mixed voices taken out (not when the
    caller fixed the count, `found.fixed`; `confidence`/`share`: the release's `mixed_rule` unless
    given, 0 takes none out), then
    label_speakers. Each segment is judged by the classifier once (`logits`: the memo, (start, end)
    -> logits, to share with other calls on the same audio)."""
    segs = found.segments()
    logits = {} if logits is None else logits
    if not found.fixed:
        mixed = mixed_voices(audio, segs, classifier, logits, confidence, share)
        if mixed:
            segs = found.segments(without=mixed)
    return label_speakers(audio, segs, classifier, split_classes=not found.fixed, detect_tv=detect_tv, logits=logits)


def mixed_voices(audio: np.ndarray, found: list, classifier: GenderClassifier, logits: Optional[dict] = None,
                 confidence: Optional[float] = None, share: Optional[float] = None) -> list:
    """The speakers of `found` [(start, end, speaker)] that are mixed voices (above; `confidence`,
    `share`: the release's `mixed_rule` unless given); never all of them."""
    rule = mixed_rule(classifier)
    confidence = rule["confidence"] if confidence is None else confidence
    share = rule["share"] if share is None else share
    total = sum(e - s for s, e, _ in found)
    ids = sorted({k for *_, k in found})
    out = []
    for k in ids:
        mine = [(s, e) for s, e, j in found if j == k]
        if sum(e - s for s, e in mine) >= share * total:
            continue
        sums, seconds = _judged(audio, mine, classifier, logits)
        p = pooled_probabilities(audio, mine, sums, seconds, classifier)
        adult = p.get("female", 0.0) + p.get("male", 0.0)
        if _label(p) in ("female", "male") and max(p["female"], p["male"]) < confidence * adult:
            out.append(k)
    return out if len(out) < len(ids) else []


def _judged(audio, spans, classifier, logits: Optional[dict]):
    """segment_logits for `spans`, through the `logits` memo when there is one."""
    if logits is None:
        return segment_logits(audio, spans, classifier)
    todo = [sp for sp in spans if sp not in logits]
    if todo:
        sums, seconds = segment_logits(audio, todo, classifier)
        logits.update({sp: (sums[i], seconds[i]) for i, sp in enumerate(todo)})
    if not spans:
        return torch.zeros(0, len(classifier.labels)), torch.zeros(0)
    return torch.stack([logits[sp][0] for sp in spans]), torch.stack([logits[sp][1] for sp in spans])


def label_speakers(audio: np.ndarray, found: list, classifier: GenderClassifier, split_classes: bool = True,
                   detect_tv: bool = False, logits: Optional[dict] = None):
    """Diarization output [(start, end, speaker index)] -> (segments, speakers): each speaker
    labelled from all of its speech; with `split_classes` (not when the caller fixed the number of
    speakers), turns of the other side of child/adult split off (CLASS_SPLIT_* above). The speakers
    speech.tv takes for a TV are `tv_like`, and of class `tv` only with `detect_tv`. `logits`: a
    memo of segments already judged (filled as it goes)."""
    groups = {}          # speaker key (its index; (index, class) for turns split off) -> [(span, logits, seconds)]
    for k in sorted({k for _, _, k in found}):
        mine = [(s, e) for s, e, j in found if j == k]
        sums, seconds = _judged(audio, mine, classifier, logits)
        label = _label(pooled_probabilities(audio, mine, sums, seconds, classifier))
        own = classifier.probabilities(sums / seconds.clamp(min=1e-9)[:, None])     # each segment on its own
        for i, (s, e) in enumerate(mine):
            cls = classifier.labels[int(own[i].argmax())]
            moves = (split_classes and seconds[i] > 0 and e - s >= CLASS_SPLIT_SECONDS
                     and (cls == CHILD) != (label == CHILD) and float(own[i].max()) >= CLASS_SPLIT_CONFIDENCE)
            groups.setdefault((k, cls) if moves else k, []).append(((s, e), sums[i], seconds[i]))
        release()
    key_of = {span: key for key, items in groups.items() for span, _, _ in items}
    first = {}
    for s, e, _ in found:                     # speakers numbered by first speech, as diarize numbers them
        first.setdefault(key_of[(s, e)], len(first))
    speaker_of = {}
    # Judged whether or not TV detection is on: off, a TV-like speaker stays family and the report says so.
    tv = tv_speakers(audio, {key: [span for span, _, _ in items] for key, items in groups.items()})
    for key in sorted(groups, key=first.get):
        spans_, sums, seconds = zip(*groups[key])
        probs = pooled_probabilities(audio, spans_, torch.stack(sums), torch.stack(seconds), classifier)
        label = _label(probs)
        cls = "tv" if detect_tv and key in tv else label
        speaker_of[key] = Speaker(f"S{first[key] + 1}", label, cls, probs, 0.0, 0.0, 0, tv_like=key in tv)
    segments = [Segment(s, e, sp.label, sp.probabilities[sp.label], speaker=sp.id)
                for s, e, _ in found for sp in [speaker_of[key_of[(s, e)]]]]
    return segments, list(speaker_of.values())


def _label(probs: dict) -> str:
    return max(probs, key=probs.get)


def segment_logits(audio: np.ndarray, spans, classifier: GenderClassifier, max_piece: float = 30.0):
    """Each span's classifier logits, summed over its pieces of at most `max_piece` seconds and
    weighted by their seconds -> (sums (len(spans), C), seconds judged (len(spans),): 0 for a span
    too short to judge). All pieces go through the classifier together (span_logits' batches)."""
    chunks, weights, owner = [], [], []
    for i, (s, e) in enumerate(spans):
        t = s
        while t < e:                      # bounded pieces: memory stays flat for long monologues
            u = min(e, t + max_piece)
            a = audio[int(t * SAMPLE_RATE):int(u * SAMPLE_RATE)]
            if len(a) >= classifier.min_samples:
                chunks.append(a)
                weights.append(u - t)
                owner.append(i)
            t = u
    sums, seconds = torch.zeros(len(spans), len(classifier.labels)), torch.zeros(len(spans))
    if chunks:
        logits = span_logits(classifier, chunks)
        for j, i in enumerate(owner):
            sums[i] += logits[j] * weights[j]
            seconds[i] += weights[j]
    return sums, seconds


def pooled_probabilities(audio: np.ndarray, spans, sums: torch.Tensor, seconds: torch.Tensor,
                         classifier: GenderClassifier) -> dict:
    """The classifier's probabilities over all of these spans (from segment_logits): the
    duration-weighted mean of their logits, calibrated once. Spans too short to judge, all of them:
    their audio joined into one piece (padded to the classifier's minimum)."""
    if float(seconds.sum()) > 0:
        p = classifier.probabilities(sums.sum(0, keepdim=True) / seconds.sum())[0]
    else:
        piece = np.concatenate([audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans])
        if len(piece) < classifier.min_samples:
            piece = np.pad(piece, (0, classifier.min_samples - len(piece)))
        p = classifier.probabilities(span_logits(classifier, [piece]))[0]
    return {k: float(v) for k, v in zip(classifier.labels, p.tolist())}


BATCH_SECONDS = 30.0    # at most this much audio in one gender-CNN batch: its first conv block holds
                        # ~1 MB per second of batch (16 pieces of 30 s took 0.42 GB at once); on a
                        # one-hour recording 30 s batches were also faster than 120 s (4.8 vs 5.9 s CPU)


def span_logits(classifier: GenderClassifier, chunks: list, batch_size: int = 16,
                max_seconds: float = BATCH_SECONDS) -> torch.Tensor:
    """`classifier.span_logits(chunks)` with bounded memory: the same batches of `batch_size`
    length-sorted chunks (so the same logits), except that a batch holding more than
    `max_seconds` of padded audio is split into smaller ones (logits equal within 1e-6)."""
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
    out = torch.zeros(len(chunks), len(classifier.labels))
    for b in range(0, len(order), batch_size):
        group = order[b:b + batch_size]
        longest = max(1, len(chunks[group[-1]]))
        size = max(1, min(len(group), int(max_seconds * SAMPLE_RATE) // longest))
        for c in range(0, len(group), size):
            idx = group[c:c + size]
            out[idx] = classifier.span_logits([chunks[i] for i in idx], batch_size=size)
    return out


def tv_speakers(audio: np.ndarray, spans_of: dict) -> set:
    """The speakers (keys of {key: spans}) that speech/tv.py's detector calls TV or radio, judged
    together (`speech.tv.tv_speakers`). Without a TV model release every speaker counts as family,
    and one log line says so."""
    from . import tv
    from .bundle import CheckpointError

    try:
        return tv.tv_speakers(audio, spans_of)
    except CheckpointError as e:
        _warn_once(f"no TV model, no speaker is reported as TV: {e}")
        return set()


@lru_cache(maxsize=4)
def _warn_once(message: str) -> None:
    import logging

    logging.getLogger("speech").warning(message)


def _gender_segments(audio, spans, classifier: GenderClassifier, window: float, switch_penalty: float,
                     step) -> list:
    """The gender-only analysis: frame posteriors for every region, one Viterbi pass over the
    whole recording, segments named by their gender."""
    logps, times, costs = [], [], []
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
        step((k + 1) / len(spans), "labelling gender")
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
                    g = classifier.labels[int(p[start])]
                    segments.append(Segment(float(edges[start]), float(edges[i]), g,
                                            float(pr[start:i, int(p[start])].mean()), speaker=g))
                    start = i
    return segments
