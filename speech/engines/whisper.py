"""Whisper through faster-whisper (CTranslate2), behind the same interface as DeepSpeech2.

`WhisperEngine(model=REF).transcribe(audio) -> Transcript` (speech.engines.base). REF is a CTranslate2
model folder (what `ct2-transformers-converter` or `training/finetune_whisper.py` writes, or
`python -m training.fetch_whisper_base` for Whisper base) or a Hub repo id such as
`Systran/faster-whisper-small`. Without REF the default Whisper is resolved by
`default_whisper`: `$SPEECH_WHISPER_MODEL`, else Whisper base from the Hub at a pinned revision,
else the copy that `setup.sh` assembles when the Hub cannot be reached. Every Whisper setting
(the environment variable, the pinned Hub copy, the window) is defined here and only here.

The language is fixed to Korean. A VAD finds the speech first, so silence and noise never reach
Whisper: by default faster-whisper's own (Silero) VAD filter over the whole input, decoding each
window conditioned on the previous one, with temperature fallback (the setting that measured best,
results/whisper-grid.md); with `vad=True`, speech.vad's regions grouped into windows of at most
`max_window` seconds (Whisper's 30 s context), each decoded on its own. Timestamps stay in the
original timeline. What Whisper still invents (sign-offs, loops) is removed by
`speech.hallucination.filter_segments`.
"""
from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import numpy as np

from ..audio import SAMPLE_RATE
from ..hallucination import RawSegment, filter_segments
from ..hub import HubUnreachableError, ModelNotFoundError, resolve_model
from .base import MAX_WINDOW, Engine, Progress, Segment, Word

log = logging.getLogger("speech")

WHISPER_ENV = "SPEECH_WHISPER_MODEL"
# Systran/faster-whisper-base: OpenAI Whisper base (MIT, 74M parameters) in CTranslate2 format.
# A commit, not a branch: the weights behind the measured CER and speed cannot change under us.
HUB_DEFAULT = "Systran/faster-whisper-base@ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66"
WHISPER_BASE = "whisper-base"
PROBE_TIMEOUT = 3.0
LANGUAGE = "ko"
# What a CTranslate2 Whisper repo holds; nothing else is fetched.
ALLOW_PATTERNS = ["model.bin", "config.json", "tokenizer.json", "vocabulary.*", "preprocessor_config.json", "*.md"]
# faster-whisper's temperature fallback: a window whose text looks like a loop or is unlikely is
# decoded again, hotter.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "float16", "float32", "bfloat16", "default", "auto")


def setup_copy() -> Path:
    """Where `setup.sh` (training.fetch_whisper_base) assembles Whisper base."""
    cache = Path(os.environ.get("KOREAN_SPEECH_CACHE", Path.home() / ".cache" / "korean-speech"))
    return cache / "whisper-base" / "model"


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """One quick request to the Hub. huggingface_hub retries a dead connection for ~25 s; the
    default engine is resolved at every start, so an offline machine must learn it at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    repo, _, rev = HUB_DEFAULT.partition("@")
    try:
        urllib.request.urlopen(f"{constants.ENDPOINT}/api/models/{repo}/revision/{rev}", timeout=timeout).close()
    except urllib.error.HTTPError:
        return True   # an answer, even a refusal, means the Hub is there
    except (urllib.error.URLError, OSError):
        return False
    return True


def _pinned_hub_copy(token: Optional[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, rev = HUB_DEFAULT.partition("@")
    try:  # a pinned commit never changes: a cached copy needs no network at all
        return resolve_whisper(snapshot_download(repo, revision=rev, allow_patterns=ALLOW_PATTERNS,
                                                 local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ModelNotFoundError):
        pass
    if not hub_reachable():
        raise HubUnreachableError(f"the Hugging Face Hub cannot be reached for {HUB_DEFAULT}")
    return resolve_whisper(HUB_DEFAULT, token)


def default_whisper(token: Optional[str] = None) -> tuple[Path, str, str]:
    """-> (CTranslate2 Whisper folder, where it came from, model name). Raises ModelNotFoundError
    when there is no Whisper at all; a bad $SPEECH_WHISPER_MODEL is an error, not a fallback."""
    ref = os.environ.get(WHISPER_ENV, "").strip()
    if ref:
        return resolve_whisper(ref, token), WHISPER_ENV, ref
    try:
        return _pinned_hub_copy(token), "hub", WHISPER_BASE
    except HubUnreachableError as e:
        copy = setup_copy()
        if (copy / "model.bin").exists():
            log.info("Hugging Face Hub unreachable for %s; using the Whisper base that setup.sh assembled in %s",
                     HUB_DEFAULT, copy)
            return copy, "setup.sh", WHISPER_BASE
        raise ModelNotFoundError(
            f"No Whisper model: {WHISPER_ENV} is not set, {e}, and there is no copy in {copy} "
            "(python -m training.fetch_whisper_base assembles one)") from e


def resolve_whisper(ref: Optional[str], token: Optional[str] = None) -> Path:
    """A local CTranslate2 Whisper folder for a path or Hub repo id (None: the default Whisper)."""
    if ref in (None, "", "default"):
        return default_whisper(token)[0]
    folder = resolve_model(ref, "whisper", token=token, allow_patterns=ALLOW_PATTERNS, fallback=False)
    if not (folder / "model.bin").exists():
        hint = ""
        config = folder / "config.json"
        if config.exists():
            c = json.loads(config.read_text(encoding="utf-8"))
            if c.get("format") == "korean-speech":
                hint = f" It holds a {c.get('model_type')!r} model of this project: use --engine ds2."
            elif "WhisperForConditionalGeneration" in c.get("architectures", []):
                hint = (" It is a Hugging Face transformers Whisper model: convert it with "
                        "`ct2-transformers-converter --model DIR --output_dir OUT --copy_files tokenizer.json "
                        "preprocessor_config.json` (training/finetune_whisper.py does this for its output).")
        raise ModelNotFoundError(f"{ref} is not a CTranslate2 Whisper model folder (no model.bin).{hint}")
    return folder


def group_spans(spans: list[tuple[float, float]], max_window: float, max_gap: float = 2.0) -> list[tuple[float, float]]:
    """Consecutive speech regions -> windows of at most `max_window` seconds. Regions further
    apart than `max_gap` stay in separate windows: long pauses inside a window invite Whisper
    to fill them with invented text."""
    windows: list[tuple[float, float]] = []
    for s, e in spans:
        if windows and e - windows[-1][0] <= max_window and s - windows[-1][1] <= max_gap:
            windows[-1] = (windows[-1][0], e)
        else:
            windows.append((s, e))
    return windows


class WhisperEngine(Engine):
    name = "whisper"
    # Whisper hears the level-normalised audio the VAD hears (speech.level): dev CER equal on clean speech,
    # +0.3 on quiet copies, within noise (results/level-whisper.md). A 30 dB quieter 16-bit copy then
    # changes a character or a full stop in some clips, as much as white noise 60 dB under the speech
    # does (results/whisper-stability.md): Whisper's beam search flips on inaudible changes.
    level_input = True

    def __init__(self, model: Optional[str] = None, device: str = "cpu", compute_type: str = "int8",
                 beam_size: int = 5, max_window: float = MAX_WINDOW, vad: bool = False, guard: bool = True,
                 word_timestamps: bool = False, cpu_threads: int = 0, token: Optional[str] = None,
                 condition_on_previous_text: bool = True, temperature=TEMPERATURES, vad_filter: bool = True):
        if compute_type not in COMPUTE_TYPES:
            raise ValueError(f"Unknown compute_type {compute_type!r}; compute types = {list(COMPUTE_TYPES)}")
        if beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        if not 1.0 <= max_window <= MAX_WINDOW:
            raise ValueError(f"max_window must be within [1, {MAX_WINDOW:g}] seconds "
                             f"(Whisper sees {MAX_WINDOW:g} s at a time)")
        from faster_whisper import WhisperModel

        if model in (None, "", "default"):
            self.folder, self.origin, default_name = default_whisper(token)   # origin: where it came from
        else:
            self.folder, self.origin = resolve_whisper(model, token), "model"
        self.model = WhisperModel(str(self.folder), device=device, compute_type=compute_type,
                                  cpu_threads=cpu_threads)
        if not self.model.model.is_multilingual:
            raise ValueError(f"{model} is an English-only Whisper model; Korean needs a multilingual one")
        self.model_name = (default_name if self.origin != "model" else
                           str(model) if not Path(str(model)).exists() else self.folder.name)
        self.beam_size = beam_size
        self.decoder_name = "greedy" if beam_size == 1 else f"beam{beam_size}"
        self.max_window = max_window
        self.vad = vad
        self.guard = guard
        self.word_timestamps = word_timestamps
        # Decoding defaults chosen by training/whisper_grid.py (results/whisper-grid.md): beam 5,
        # faster-whisper's own VAD filter over the whole input, conditioning on the previous text and
        # temperature fallback had the lowest pooled CER, at the same CPU time as speech.vad windows
        # (vad=True: Silero windows of at most max_window seconds, no conditioning across them).
        self.condition_on_previous_text = condition_on_previous_text
        self.vad_filter = vad_filter and not vad   # faster-whisper's own VAD, instead of speech.vad
        self.temperature = tuple(temperature) if isinstance(temperature, (list, tuple)) else float(temperature)
        self.last_dropped: list = []   # (RawSegment, reason) of the last call, for inspection
        self.last_spans: list = []     # VAD speech regions of the last call

    def _decode(self, audio: np.ndarray, offset: float) -> list[RawSegment]:
        segments, _ = self.model.transcribe(
            audio, language=LANGUAGE, task="transcribe", beam_size=self.beam_size,
            vad_filter=self.vad_filter,           # off when speech.vad has already chosen the audio
            # off by default: a hallucination must not prime the next window
            condition_on_previous_text=self.condition_on_previous_text,
            temperature=self.temperature, word_timestamps=self.word_timestamps)
        out, length = [], len(audio) / SAMPLE_RATE
        for s in segments:
            if s.start >= length:   # a timestamp past the end of the audio: text from nothing
                continue
            words = [Word(offset + w.start, offset + min(w.end, length), w.word.strip()) for w in (s.words or [])
                     if w.start < length]
            out.append(RawSegment(offset + s.start, offset + min(s.end, length), s.text.strip(),
                                  s.avg_logprob, s.no_speech_prob, words))
        return out

    def wants_speech(self, duration: float) -> bool:
        return self.vad

    def recognise(self, audio: np.ndarray, duration: float, speech: Optional[list], progress: Progress) -> list:
        windows = group_spans(speech, self.max_window) if self.vad else [(0.0, duration)]
        raw: list[RawSegment] = []
        for n, (s, e) in enumerate(windows):
            chunk = audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)]
            segs = self._decode(chunk, s)
            # Whisper sometimes ends a window early and skips its last utterance: decode the
            # speech it left out once more, on its own.
            covered = max((x.end for x in segs), default=s)
            rest = [sp for sp in (speech or []) if sp[0] >= covered - 0.1 and s <= sp[0] < e and sp[1] - sp[0] >= 0.5]
            if rest:
                r0 = rest[0][0]
                segs += self._decode(audio[int(r0 * SAMPLE_RATE):int(e * SAMPLE_RATE)], r0)
            raw += segs
            if progress:
                progress((n + 1) / len(windows), "transcribing")
        kept, self.last_dropped = filter_segments(raw, speech) if self.guard else (raw, [])
        for seg, reason in self.last_dropped:
            log.info("whisper: dropped %.2f-%.2f %r (%s)", seg.start, seg.end, seg.text, reason)
        return [Segment(r.start, r.end, r.text, r.words) for r in kept]
