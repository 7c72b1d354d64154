"""Korean speech in the browser: speech to text, speaker gender, conversation analysis (Gradio).

A thin page on the `speech` package. Models load once at start and are warmed up; each is a local
folder or a Hugging Face Hub repo id (owner/name[@revision]), and unset means the default:

  SPEECH_STT_MODEL             DeepSpeech2 model (default: checkpoints/ds2-ko)
  SPEECH_LM                    KenLM for beam search (default: the LM shipped with the model, if any)
  SPEECH_WHISPER_MODEL         CTranslate2 Whisper model, the engine that answers by default (default:
                               Whisper base, pinned on the Hub, or the copy setup.sh assembles)
  SPEECH_GENDER_MODEL          gender classifier (default: checkpoints/gender-child-ko: female, male, child)
  SPEECH_SPEAKER_MODEL         speaker encoder for who-spoke (default: checkpoints/speaker-campplus)
  SPEECH_MAX_SECONDS           longest input for speech to text and gender (default 300)
  SPEECH_MAX_ANALYSIS_SECONDS  longest input for conversation analysis (default 3600)
  SPEECH_CONCURRENCY           requests worked on at once (default 1); the others wait in the queue
  SPEECH_QUEUE_SIZE            requests that may wait (default 32); beyond it the page says "busy"

Run `python app.py`; GRADIO_SERVER_NAME and GRADIO_SERVER_PORT choose the address.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import gradio as gr

from speech.audio import (SAMPLE_RATE, AudioDecodeError, AudioError, AudioTooShortError, EmptyAudioError,
                          NoSpeechError, SilentAudioError, audio_duration)
from speech.formats import format_duration, subtitle_cues, to_srt
from speech.usable import load_speech, require_transcript

log = logging.getLogger("app")
ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "tests" / "fixtures" / "examples"
ATTRIBUTION = ("예시 음성 · Example clips: [emotiontts_open_db](https://github.com/emotiontts/emotiontts_open_db) "
               "(Selvas AI / KAIST), CC BY-NC-SA 4.0")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError as e:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from e


MAX_SECONDS = _env_float("SPEECH_MAX_SECONDS", 300)
MAX_ANALYSIS_SECONDS = _env_float("SPEECH_MAX_ANALYSIS_SECONDS", 3600)


# -- models --------------------------------------------------------------------------------------

@dataclass
class Models:
    """Everything loaded at start. `problems` says, per feature, why it is unavailable."""
    stt: dict = field(default_factory=dict)        # "ds2/greedy", "ds2/beam", "whisper" -> engine
    labels: dict = field(default_factory=dict)     # "ds2", "whisper" -> speech.default_engine.EngineInfo
    gender: object = None
    speaker: object = None                         # speaker encoder: conversation speakers, two voices
    problems: dict = field(default_factory=dict)
    locks: dict = field(default_factory=dict)      # one lock per model: decoders keep state

    def lock(self, key: str) -> threading.Lock:
        return self.locks.setdefault(key, threading.Lock())

    @property
    def default_key(self) -> str:
        """The best engine answers unless another is chosen: Whisper when there is one."""
        return "whisper" if "whisper" in self.stt else "ds2/greedy"


def _ref(name: str) -> Optional[str]:
    return os.environ.get(name, "").strip() or None


def load_models() -> Models:
    from speech.gender import GenderClassifier
    from speech.stt import load_engine

    m = Models()
    stt_ref = _ref("SPEECH_STT_MODEL")
    try:
        m.stt["ds2/greedy"] = load_engine("ds2", model=stt_ref, decoder="greedy")
    except (ValueError, OSError, ImportError) as e:
        log.error("could not load ds2 (%s): %s", stt_ref or "default", e)
        m.problems["ds2/greedy"] = m.problems["ds2/beam"] = str(e)
    else:
        try:  # the same weights behind a beam-search decoder (with the shipped LM or SPEECH_LM)
            m.stt["ds2/beam"] = m.stt["ds2/greedy"].with_decoder("beam", lm=_ref("SPEECH_LM"))
        except (ValueError, OSError, ImportError) as e:
            log.error("could not set up beam search: %s", e)
            m.problems["ds2/beam"] = str(e)
    try:  # SPEECH_WHISPER_MODEL, else Whisper base (pinned on the Hub, or the copy setup.sh assembled)
        m.stt["whisper"] = load_engine("whisper")
    except (ValueError, OSError, ImportError) as e:
        log.warning("no Whisper model (%s); DeepSpeech2 answers by default", e)
        m.problems["whisper"] = str(e)
    from speech.default_engine import engine_info

    for key, engine in m.stt.items():
        m.labels.setdefault(key.split("/")[0], engine_info(engine))
    try:
        m.gender = GenderClassifier.load(_ref("SPEECH_GENDER_MODEL"))
    except (ValueError, OSError) as e:
        log.error("could not load the gender model: %s", e)
        m.problems["gender"] = str(e)
    try:
        from speech.speaker import SpeakerEncoder

        m.speaker = SpeakerEncoder.load(_ref("SPEECH_SPEAKER_MODEL"))
    except (ValueError, OSError) as e:
        log.error("could not load the speaker encoder: %s", e)
        m.problems["speaker"] = str(e)
    return m


def warm_up(models: Models) -> None:
    """Run every model once at start, so that the first person does not wait for lazy set-up
    (CTranslate2 and torch allocations, the VAD, the LM, the first figure)."""
    from speech import plots

    t0 = time.perf_counter()
    clip = EXAMPLES / "ko_male_emh00003.flac"
    try:
        audio = load_speech(clip)[: 3 * SAMPLE_RATE] if clip.exists() else None
        if audio is None:
            return
        for key, engine in models.stt.items():
            with models.lock(key):
                engine.transcribe(audio)
        if models.gender is not None:
            with models.lock("gender"):
                models.gender.predict(audio)
        import matplotlib.pyplot as plt

        fig = plots.spectrogram_figure(audio, SAMPLE_RATE, title="warm-up")
        fig.savefig(io.BytesIO(), format="png")   # rendered as the page renders it: Hangul fonts load now
        plt.close(fig)
    except Exception:   # a warm-up problem must not keep the page from starting
        log.exception("warm-up failed")
    log.info("warm-up took %.1f s", time.perf_counter() - t0)


def _model_name(model) -> str:
    """Engines and the gender classifier carry `model_name` (a release's: speech.bundle.release_name)."""
    return model.model_name


# -- user input ----------------------------------------------------------------------------------

def user_error(message: str, title: str) -> gr.Error:
    """A message that stays on the page until closed: people look away while a model works.
    Gradio 6 toasts show "Error" as their header and ignore `title`, so the text starts with it."""
    return gr.Error(f"{title} — {message}", title=title, duration=None, print_exception=False)


NO_AUDIO = ("오디오가 없습니다. 마이크로 녹음하거나 파일을 올려 주세요. "
            "No audio: record with the microphone or upload a file.")
MIC, UPLOAD = "microphone", "upload"  # where the audio came from: the advice differs
_AUDIO_PROBLEMS = [  # most specific first: they all subclass AudioError. (Korean, English advice)
    (NoSpeechError, {MIC: ("말소리를 찾지 못했습니다. 마이크 가까이에서 다시 말해 주세요.",
                           "Speak close to the microphone and try again."),
                     UPLOAD: ("이 파일에서 말소리를 찾지 못했습니다. 말소리가 담긴 파일을 올려 주세요.",
                              "Upload a recording with speech in it.")}),
    (SilentAudioError, {MIC: ("소리가 녹음되지 않았습니다. 마이크가 켜져 있고 브라우저에서 허용되었는지 확인해 주세요.",
                              "Check that the microphone is on and allowed in the browser."),
                        UPLOAD: ("파일에 소리가 없습니다 (무음). 소리가 담긴 파일을 올려 주세요.",
                                 "Upload a file with sound in it.")}),
    (AudioTooShortError, {MIC: ("녹음이 너무 짧습니다. 한 문장 이상 말해 주세요.", "Record at least one sentence."),
                          UPLOAD: ("파일이 너무 짧습니다. 한 문장 이상 담긴 파일을 올려 주세요.",
                                   "Upload at least one spoken sentence.")}),
    (EmptyAudioError, ("오디오가 비어 있습니다.", "")),
    (AudioDecodeError, ("파일을 오디오로 읽을 수 없습니다 (wav, mp3, m4a, ogg, flac, webm 등을 올려 주세요).", "")),
    (AudioError, ("이 오디오는 처리할 수 없습니다.", "")),
]


def audio_problem(e: AudioError, source: Optional[str] = UPLOAD) -> gr.Error:
    """A person's audio cannot be used: why and what to do in Korean, then the library's English
    sentence and the English advice, for a recording or a file (`source`)."""
    advice = next(text for cls, text in _AUDIO_PROBLEMS if isinstance(e, cls))
    ko, en = advice[source if source in advice else UPLOAD] if isinstance(advice, dict) else advice
    return user_error(f"{ko} {e} {en}".strip(), title="오디오 문제 · Audio problem")


def too_long(seconds: float, limit: float) -> gr.Error:
    limit_text = f"{int(limit) // 60}:{int(limit) % 60:02d}"
    return user_error(f"오디오가 너무 깁니다 ({format_duration(seconds)}). 이 탭은 {limit_text}까지 처리합니다. "
                      f"잘라서 올려 주세요. The audio is {format_duration(seconds)} long; this tab accepts up to "
                      f"{limit_text} (minutes:seconds).", title="너무 긴 오디오 · Too long")


def read_audio(path: Optional[str], limit: float, source: Optional[str] = UPLOAD):
    """Gradio's file path -> 16 kHz float32 array, refusing long input before decoding it and
    input without usable speech (empty, too short, silent: speech.usable) after."""
    if not path:
        raise user_error(NO_AUDIO, title="오디오 없음 · No audio")
    try:
        seconds = audio_duration(path)  # from the header where the format has one
        if seconds > limit:
            raise too_long(seconds, limit)
        audio = load_speech(path)
    except AudioError as e:
        raise audio_problem(e, source) from e
    if len(audio) > limit * SAMPLE_RATE:
        raise too_long(len(audio) / SAMPLE_RATE, limit)
    return audio


def friendly(fn):
    """Anything unexpected becomes a short message in the page (and a traceback in the log)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except AudioError as e:  # e.g. no speech: the advice depends on where the audio came from
            raise audio_problem(e, signature.bind_partial(*args, **kwargs).arguments.get("source")) from e
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            raise user_error(f"처리 중 오류가 발생했습니다. 다시 시도해 주세요. Something went wrong: "
                             f"{type(e).__name__}: {e}", title="오류 · Error") from e
    return wrapper


def _progress_callback(progress: gr.Progress, start: float = 0.0, span: float = 1.0):
    words = {"decoding audio": "오디오 읽는 중 · reading audio", "detecting speech": "음성 구간 찾는 중 · detecting speech",
             "labelling gender": "성별 판단 중 · labelling gender", "transcribing": "받아쓰는 중 · transcribing",
             "done": "마무리 중 · finishing"}

    def report(frac: float, desc: str = "") -> None:
        progress(start + span * float(frac), desc=words.get(desc, desc))
    return report


OUTPUTS = Path(tempfile.gettempdir()) / "speech-app"


def _out_dir() -> Path:
    """A fresh folder for one request's downloads; those older than an hour are removed."""
    OUTPUTS.mkdir(exist_ok=True)
    for old in OUTPUTS.iterdir():
        if old.stat().st_mtime < time.time() - 3600:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=OUTPUTS))


def _stem(path: str) -> str:
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "audio"


# -- handlers ------------------------------------------------------------------------------------

ENGINE_LABELS = {"ds2": "DeepSpeech2", "whisper": "Whisper"}


def _label(models: Models, engine_key: str) -> str:
    info = models.labels.get(engine_key.split("/")[0])
    return info.label if info is not None else ENGINE_LABELS.get(engine_key, engine_key)


def compare_markdown(rows) -> str:
    """Both engines' transcripts of the same audio, with their processing times."""
    lines = ["| 엔진 · engine | 받아쓴 글 · transcript | 처리 시간 · processing |", "|---|---|---|"]
    for r in rows:
        text = (r.text or "(말소리를 알아듣지 못했습니다 · no speech recognised)").replace("|", "\\|")
        lines.append(f"| **{r.label}** | {text} | {r.seconds:.2f} s |")
    return "\n".join(lines)


def make_handlers(models: Models):
    from speech import plots

    def _engine(engine: str, decoder: str):
        engine = engine or models.default_key.split("/")[0]
        key = "whisper" if engine == "whisper" else f"ds2/{decoder}"
        if key not in models.stt:
            why = models.problems.get(key, "not loaded")
            raise user_error(f"이 설정은 지금 사용할 수 없습니다 ({key}). This option is unavailable: {why}",
                             title="모델 없음 · Model unavailable")
        return key, models.stt[key]

    def _classifier():
        if models.gender is None:
            raise user_error(f"성별 모델을 불러오지 못했습니다. The gender model is unavailable: "
                             f"{models.problems.get('gender')}", title="모델 없음 · Model unavailable")
        return models.gender

    @friendly
    def transcribe(audio_path, engine=None, decoder="greedy", compare=False, source=UPLOAD, progress=gr.Progress()):
        from speech.default_engine import compare as compare_engines

        key, _ = _engine(engine, decoder or "greedy")
        others = []
        if compare:  # the other engine on the same audio: Whisper and DeepSpeech2 side by side
            other = f"ds2/{decoder or 'greedy'}" if key == "whisper" else "whisper"
            _engine(other.split("/")[0], decoder or "greedy")
            others = [other]
        progress(0.0, desc="오디오 읽는 중 · reading audio")
        audio = read_audio(audio_path, MAX_SECONDS, source)
        keys = sorted([key] + others, key=lambda k: k != "whisper")   # Whisper first, as in the list
        with contextlib.ExitStack() as stack:
            for k in keys:
                stack.enter_context(models.lock(k))
            rows = compare_engines([models.stt[k] for k in keys], audio,
                                   progress=_progress_callback(progress, 0.05, 0.85))
        # nothing recognised by the chosen engine is a "no speech" error, never empty downloads
        result = require_transcript(rows[keys.index(key)].transcript)
        comparison = compare_markdown(rows) if compare else ""
        progress(0.92, desc="그림 그리는 중 · drawing")
        text = result.text
        segments = [[format_duration(s.start), format_duration(s.end), s.text] for s in result.segments]
        folder, stem = _out_dir(), _stem(audio_path)
        txt, srt = folder / f"{stem}_transcript.txt", folder / f"{stem}_transcript.srt"
        txt.write_text(result.text + "\n", encoding="utf-8")
        srt.write_text(to_srt(subtitle_cues((s.start, s.end, s.text, s.words) for s in result.segments)),
                       encoding="utf-8")
        figure = plots.spectrogram_figure(audio, SAMPLE_RATE, title="스펙트로그램 · Spectrogram")
        info = (f"**{_label(models, key)}** · 모델 model `{result.model}` · "
                f"디코더 decoder `{result.decoder}` · 길이 {format_duration(result.duration)} · "
                f"처리 시간 processing {result.rtf * result.duration:.2f} s")
        return text, segments, figure, info, [str(txt), str(srt)], comparison

    @friendly
    def classify_gender(audio_path, source=UPLOAD, progress=gr.Progress()):
        classifier = _classifier()
        progress(0.0, desc="오디오 읽는 중 · reading audio")
        audio = read_audio(audio_path, MAX_SECONDS, source)
        progress(0.2, desc="목소리 분석 중 · classifying")
        with models.lock("gender"):
            result = classifier.predict(audio)
        voices = 1
        if models.speaker is not None:
            from speech.diarize import count_voices

            with models.lock("speaker"):
                voices = count_voices(audio, models.speaker)
        progress(0.6, desc="음높이 계산 중 · pitch")
        pitch = plots.pitch_track(audio, SAMPLE_RATE)
        figure = plots.spectrogram_figure(audio, SAMPLE_RATE, pitch=pitch,
                                          title="스펙트로그램과 음높이 · Spectrogram and pitch")
        names = {"female": "여성", "male": "남성", "child": "어린이"}     # labels come from the release
        label = {f"{names.get(k, k)} · {k}": v for k, v in result.probabilities.items()}
        ko = names.get(result.label, result.label)
        info = (f"**{ko} ({result.label})** · {result.probabilities[result.label]:.0%} · "
                f"말소리 speech {format_duration(result.speech)} / 전체 {format_duration(result.duration)} · "
                f"모델 model `{result.model or _model_name(classifier)}`")
        info = _warnings_markdown(result.warnings) + info
        if voices > 1:
            info = (f"**목소리가 {voices}개 들립니다 · {voices} voices are present.** 한 사람의 성별만 알려 주는 "
                    f"탭입니다: 사람마다 나누어 보려면 **대화 분석 · Conversation** 탭을 쓰세요. This tab labels one "
                    f"speaker; the Conversation tab gives each speaker's gender and share.\n\n" + info)
        return label, figure, info

    @friendly
    def analyze_conversation(audio_path, with_text=False, n_speakers=0, detect_tv=False, source=UPLOAD,
                             progress=gr.Progress()):
        from speech.analysis import analyze

        classifier = _classifier()
        stt_key = models.default_key   # each turn is transcribed by the best engine
        stt = models.stt.get(stt_key) if with_text else None
        if with_text and stt is None:
            raise user_error(f"음성 인식 모델이 없어 받아쓸 수 없습니다. No speech-to-text model: "
                             f"{models.problems.get(stt_key)}", title="모델 없음 · Model unavailable")
        progress(0.0, desc="오디오 읽는 중 · reading audio")
        audio = read_audio(audio_path, MAX_ANALYSIS_SECONDS, source)
        if models.speaker is None:
            raise user_error(f"화자 모델을 불러오지 못했습니다. The speaker model is unavailable: "
                             f"{models.problems.get('speaker')}", title="모델 없음 · Model unavailable")
        speakers = int(n_speakers or 0)
        if speakers < 0 or speakers > 20 or speakers != (n_speakers or 0):
            raise user_error("화자 수는 0(자동) 또는 1-20 사이의 정수여야 합니다. The number of speakers must be 0 "
                             "(automatic) or a whole number from 1 to 20.", title="화자 수 · Number of speakers")
        with models.lock("gender"), models.lock(stt_key), models.lock("speaker"):  # no speech raises
            report = analyze(audio, classifier, stt=stt, path=Path(audio_path).name, encoder=models.speaker,
                             speakers=speakers or None, detect_tv=bool(detect_tv),
                             progress=_progress_callback(progress, 0.05, 0.85))
        progress(0.92, desc="그림 그리는 중 · drawing")
        folder, stem = _out_dir(), _stem(audio_path)
        files = []
        for name, text in (("analysis.json", report.to_json()), ("analysis.csv", report.to_csv()),
                           ("analysis.srt", report.to_srt()), ("speakers.csv", report.to_speakers_csv()),
                           ("speakers.rttm", report.to_rttm())):
            path = folder / f"{stem}_{name}"
            path.write_text(text, encoding="utf-8")
            files.append(str(path))
        summary = summary_markdown(report, _model_name(stt) if stt is not None else None)
        return (share_bar(report), summary, plots.timeline_figure(report), turn_table(report), files,
                speaker_table(report))

    return transcribe, classify_gender, analyze_conversation


GENDER_KO = {"female": "여성 female", "male": "남성 male", "child": "아이 child", "tv": "TV"}


def share_bar(report) -> str:
    """The parents' ratio (adult female : adult male) as one coloured bar."""
    from speech.plots import GENDER_COLORS

    parts = []
    ratio = report.parents_ratio or (0.0, 0.0)
    for g, name, r in (("female", "엄마 여성", ratio[0]), ("male", "아빠 남성", ratio[1])):
        share = 100 * r
        label = f"{name} {share:.0f}%" if share >= 12 else ""
        parts.append(f'<div class="share" style="width:{share:.2f}%;background:{GENDER_COLORS[g]}">{label}</div>')
    return f'<div class="share-bar">{"".join(parts)}</div>'


BAND_KO = "전화 음질(약 4 kHz 이하)의 녹음입니다: 성별·어린이 판정을 믿을 수 없습니다."
BAND_USED_KO = "전화 음질(약 4 kHz 이하)의 녹음입니다: 전화 음질용 모델로 판정했습니다."
TV_COUNTED_KO = ("TV나 라디오가 켜져 있었을 수 있습니다: 그 소리처럼 들리는 화자를 가족으로 셌습니다. 켜져 있었다면 "
                 "'TV·라디오가 켜져 있음'을 선택해 다시 분석하세요.")


def _warnings_markdown(warnings) -> str:
    """The report's warnings (speech.band's, speech.tv's), first and in bold, in Korean and English."""
    from speech.band import NARROWBAND, NARROWBAND_AUDIO
    from speech.tv import TV_COUNTED

    def korean(w):
        if w.startswith(TV_COUNTED):
            return TV_COUNTED_KO
        return BAND_KO if w == NARROWBAND else BAND_USED_KO if w.startswith(NARROWBAND_AUDIO) else None
    return "".join("**⚠ " + " ".join(filter(None, (korean(w), w))) + "**\n\n" for w in warnings)


def summary_markdown(report, stt_name: Optional[str] = None) -> str:
    f, m = report.genders["female"], report.genders["male"]
    ratio = report.parents_ratio
    text = _warnings_markdown(report.warnings)
    if ratio is not None:
        text += (f"### 부모 비율 · Parents' ratio — 엄마(성인 여성) {100 * ratio[0]:.0f} : 아빠(성인 남성) "
                 f"{100 * ratio[1]:.0f}\n화자 speakers **{len(report.speakers)}**")
        for c in ("child", "tv"):
            if report.genders[c]["seconds"] > 0:
                text += f" · {GENDER_KO[c]} **{format_duration(report.genders[c]['seconds'])}**"
        text += "\n\n"
    text += (f"여성 {100 * f['share']:.1f}% · 남성 {100 * m['share']:.1f}% · "
            f"여성 female **{format_duration(f['seconds'])}** · 남성 male **{format_duration(m['seconds'])}** · "
            f"발화 turns **{report.n_turns}** · 말소리 speech {format_duration(report.speech_seconds)} / "
            f"전체 total {format_duration(report.duration)}")
    longest = report.longest_turn
    if longest is not None:
        text += (f"\n\n가장 긴 발화 · longest turn: {GENDER_KO[longest.gender]}, {longest.duration:.1f} s "
                 f"({format_duration(longest.start)}–{format_duration(longest.end)})")
    text += f" · 모델 model `{report.model}`" + (f" + `{stt_name}`" if stt_name else "")
    return text


TURN_COLUMNS = ["#", "시작 start", "끝 end", "길이 length (s)", "성별 gender", "확률 prob."]  # + "문장 text"
# With transcripts, widths that add up to the table's: the text column wraps instead of running off
TEXT_TABLE_WIDTHS = ["5%", "10%", "10%", "8%", "11%", "7%", "49%"]


def turn_table(report):
    import pandas as pd

    rows = [{"#": i, "시작 start": format_duration(t.start), "끝 end": format_duration(t.end),
             "길이 length (s)": round(t.duration, 1), "성별 gender": GENDER_KO[t.gender], "화자 speaker": t.speaker,
             "확률 prob.": f"{t.probability:.0%}", **({"문장 text": t.text or ""} if report.transcribed else {})}
            for i, t in enumerate(report.turns, 1)]
    return pd.DataFrame(rows)


def speaker_table(report):
    """One row per speaker: class (with "(TV?)" when it sounds like a TV but TV detection was off),
    talk time, share of the family's speech, turns, confidence."""
    import pandas as pd

    rows = [{"화자 speaker": sp.id,
             "구분 class": GENDER_KO.get(sp.cls, sp.cls) + (" (TV?)" if sp.tv_like and sp.cls != "tv" else ""),
             "말한 시간 talk time": format_duration(sp.seconds),
             "비율 share": "—" if sp.cls == "tv" else f"{100 * sp.share:.1f}%", "발화 turns": sp.turns,
             "확률 prob.": f"{sp.probabilities.get(sp.label, 0):.0%}"} for sp in report.speakers]
    return pd.DataFrame(rows, columns=["화자 speaker", "구분 class", "말한 시간 talk time", "비율 share",
                                       "발화 turns", "확률 prob."])


# -- page ----------------------------------------------------------------------------------------

CSS = """
.gradio-container { max-width: min(1180px, 100vw) !important; margin: auto; }  /* 100vw: a phone's tables stay on screen */
#title h1 { margin-bottom: 0.2em; }
.note { font-size: 0.9em; opacity: 0.8; }
@media (max-width: 640px) {  /* a phone: tables keep readable columns and scroll sideways inside their box */
  #conv_turns .virtual-table-viewport { min-width: 640px; }
  #stt_segments .virtual-table-viewport { min-width: 440px; }
  #conv_turns .upload-container, #stt_segments .upload-container { overflow-x: auto; }
  /* all three tabs on screen, not two behind a "..." menu (the hidden copy is what Gradio measures) */
  .tab-container { height: auto !important; }
  .tab-container > button { white-space: normal !important; padding: 4px 6px !important; font-size: 0.85em;
                            line-height: 1.25; min-width: 0; max-width: 8.5em; height: auto !important; }
}
.share-bar { display: flex; height: 2.4em; border-radius: 0.6em; overflow: hidden; margin: 0.2em 0 0.6em; }
.share-bar .share { color: white; font-weight: 600; display: flex; align-items: center; justify-content: center;
                    white-space: nowrap; overflow: hidden; }
"""

# Local fonts only: an offline machine (or a visitor without Google Fonts) still gets Hangul at once.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="rose", neutral_hue="slate",
                       font=["Noto Sans KR", "Noto Sans CJK KR", "Apple SD Gothic Neo", "Malgun Gothic", "sans-serif"],
                       font_mono=["Noto Sans Mono CJK KR", "ui-monospace", "monospace"])


def _audio_input(elem_id: str) -> gr.Audio:
    return gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id=elem_id,
                    label="음성 · Audio")


def _source_of(audio: gr.Audio) -> gr.State:
    """Where the audio came from, the microphone or a file: advice about silence differs."""
    source = gr.State(UPLOAD)
    audio.start_recording(lambda: MIC, None, source, queue=False, api_visibility="private")
    for event in (audio.upload, audio.clear):
        event(lambda: UPLOAD, None, source, queue=False, api_visibility="private")
    return source


def _clear_on_error(event, outputs: list) -> None:
    """An error clears the previous result, so no old answer sits under the new error."""
    event.failure(lambda: [None] * len(outputs), None, outputs, queue=False, api_visibility="private")


def _examples(audio: gr.Audio, names: list[tuple[str, str]]) -> None:
    found = [(EXAMPLES / f, label) for f, label in names if (EXAMPLES / f).exists()]
    if found:
        gr.Examples([[str(p)] for p, _ in found], inputs=[audio], example_labels=[lab for _, lab in found],
                    label="예시 · Examples")
        gr.Markdown(ATTRIBUTION, elem_classes="note")


SHORT_EXAMPLES = [("ko_female_ava00013.flac", "여성 화자 · female, 6 s"),
                  ("ko_male_emh00003.flac", "남성 화자 · male, 5 s")]
FAMILY_EXAMPLE = [("family_conversation.ogg", "가족 대화 · family conversation, 2 min")]


def build_demo(models: Models) -> gr.Blocks:
    transcribe, classify_gender, analyze_conversation = make_handlers(models)
    ds2 = models.stt.get("ds2/greedy") or models.stt.get("ds2/beam")
    # the best engine first and preselected; DeepSpeech2, trained here, one choice away
    engines = [(_label(models, "whisper"), "whisper")] if "whisper" in models.stt else []
    if ds2 is not None:
        engines.append((_label(models, "ds2"), "ds2"))
    cer_note = "CER (문자 오류율 · character error rate): " + "; ".join(
        f"{ENGINE_LABELS[k]} {100 * v.cer:.1f}% from {v.source}" for k, v in models.labels.items() if v.cer is not None)
    beam = models.stt.get("ds2/beam")
    beam_label = ("빔 탐색 + 언어 모델 · beam + LM" if beam is not None and beam.decoder_name == "beam+lm"
                  else "빔 탐색 · beam (언어 모델 없음 · no LM)")
    decoders = [(label, d) for d, label in (("greedy", "빠른 디코딩 · greedy"), ("beam", beam_label))
                if f"ds2/{d}" in models.stt]
    whisper_note = ("Whisper 모델을 찾지 못해 DeepSpeech2가 답합니다: `bash setup.sh`로 받거나 `SPEECH_WHISPER_MODEL`을 "
                    f"지정하세요. No Whisper model ({models.problems.get('whisper')}): run setup.sh or set "
                    "SPEECH_WHISPER_MODEL." if "whisper" not in models.stt else "")

    # delete_cache: uploads and results older than an hour leave Gradio's cache every hour
    with gr.Blocks(title="한국어 음성 분석 · Korean Speech", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# 한국어 음성 분석 · Korean Speech\n"
                    "녹음하거나 파일을 올리면 받아쓰기, 화자 성별, 대화 속 여성·남성 발화 비율을 알려 드립니다. "
                    "Record or upload Korean speech: transcript, speaker gender, and who talks how much.",
                    elem_id="title")
        with gr.Tabs():
            with gr.Tab("음성 인식 · Speech to text", id="stt"):
                with gr.Row():
                    with gr.Column(scale=2):
                        stt_audio = _audio_input("stt_audio")
                        with gr.Group():
                            stt_engine = gr.Dropdown(engines, value=engines[0][1] if engines else None,
                                                     label="엔진 · Engine", elem_id="stt_engine")
                            stt_decoder = gr.Radio(decoders, value=decoders[0][1] if decoders else None,
                                                   label="디코딩 · Decoding (DeepSpeech2)",
                                                   info="빔 탐색은 느리지만 대개 더 정확합니다 · beam search is "
                                                        "slower, usually more accurate",
                                                   interactive=bool(engines) and engines[0][1] == "ds2",
                                                   elem_id="stt_decoder")
                            stt_compare_box = gr.Checkbox(
                                label="두 엔진 나란히 · Both engines side by side (Whisper + DeepSpeech2)",
                                visible="whisper" in models.stt and ds2 is not None, elem_id="stt_compare_box")
                        if whisper_note:
                            gr.Markdown(whisper_note, elem_classes="note")
                        if models.labels:
                            gr.Markdown(cer_note, elem_classes="note", elem_id="stt_cer_note")
                        stt_btn = gr.Button("받아쓰기 · Transcribe", variant="primary", elem_id="stt_btn")
                        _examples(stt_audio, SHORT_EXAMPLES)
                    with gr.Column(scale=3):
                        stt_text = gr.Textbox(label="받아쓴 글 · Transcript", lines=3, buttons=["copy"],
                                              elem_id="stt_text")
                        stt_info = gr.Markdown(elem_id="stt_info")
                        stt_compare = gr.Markdown(elem_id="stt_compare")
                        stt_segments = gr.Dataframe(headers=["시작 start", "끝 end", "문장 text"],
                                                    label="구간 · Segments", interactive=False, wrap=True,
                                                    column_widths=["15%", "15%", "70%"], elem_id="stt_segments")
                        stt_files = gr.File(label="내려받기 · Download (TXT, SRT)", file_count="multiple",
                                            interactive=False, elem_id="stt_files")
                stt_plot = gr.Plot(label="스펙트로그램 · Spectrogram", show_label=False, elem_id="stt_plot")
                stt_outputs = [stt_text, stt_segments, stt_plot, stt_info, stt_files, stt_compare]
                _clear_on_error(stt_btn.click(transcribe, [stt_audio, stt_engine, stt_decoder, stt_compare_box,
                                                           _source_of(stt_audio)],
                                              stt_outputs, api_name="transcribe", concurrency_id="models"),
                                stt_outputs)
                if "whisper" in models.stt:  # Whisper decodes its own way: the DS2 decoder choice does not apply
                    stt_engine.change(lambda e: gr.Radio(interactive=e == "ds2"), stt_engine, stt_decoder,
                                      queue=False, api_visibility="private")

            with gr.Tab("성별 분류 · Gender", id="gender"):
                with gr.Row():
                    with gr.Column(scale=2):
                        g_audio = _audio_input("gender_audio")
                        g_btn = gr.Button("성별 분류 · Classify", variant="primary", elem_id="gender_btn")
                        _examples(g_audio, SHORT_EXAMPLES)
                    with gr.Column(scale=3):
                        g_label = gr.Label(label="성별 · Gender", num_top_classes=3, elem_id="gender_label")
                        g_info = gr.Markdown(elem_id="gender_info")
                g_plot = gr.Plot(label="스펙트로그램과 음높이 · Spectrogram and pitch", show_label=False,
                                 elem_id="gender_plot")
                _clear_on_error(g_btn.click(classify_gender, [g_audio, _source_of(g_audio)], [g_label, g_plot, g_info],
                                            api_name="gender", concurrency_id="models"), [g_label, g_plot, g_info])

            with gr.Tab("대화 분석 · Conversation", id="conversation"):
                with gr.Row():
                    with gr.Column(scale=2):
                        c_audio = _audio_input("conv_audio")
                        c_text = gr.Checkbox(label="발화마다 받아쓰기 · Transcribe each turn (slower)",
                                             elem_id="conv_text")
                        c_nspk = gr.Number(value=0, precision=0, minimum=0, maximum=20, step=1,
                                           label="화자 수 · Number of speakers (0 = 자동 automatic)",
                                           elem_id="conv_speakers")
                        c_tv = gr.Checkbox(label="TV·라디오가 켜져 있음 · A TV or radio was on (report it apart)",
                                           elem_id="conv_tv")
                        c_btn = gr.Button("대화 분석 · Analyze", variant="primary", elem_id="conv_btn")
                        _examples(c_audio, FAMILY_EXAMPLE + SHORT_EXAMPLES[:1])
                    with gr.Column(scale=3):
                        c_bar = gr.HTML(elem_id="conv_bar")
                        c_summary = gr.Markdown(elem_id="conv_summary")
                        c_files = gr.File(label="내려받기 · Download (JSON, CSV, SRT, RTTM)", file_count="multiple",
                                          interactive=False, elem_id="conv_files")
                c_speakers = gr.Dataframe(label="화자 · Speakers", interactive=False, wrap=True,
                                          elem_id="conv_speaker_table")
                c_plot = gr.Plot(label="타임라인 · Timeline", show_label=False, elem_id="conv_plot")
                c_turns = gr.Dataframe(headers=TURN_COLUMNS, label="발화 · Turns", interactive=False, wrap=True,
                                       elem_id="conv_turns")
                c_outputs = [c_bar, c_summary, c_plot, c_turns, c_files, c_speakers]
                c_run = c_btn.click(analyze_conversation, [c_audio, c_text, c_nspk, c_tv, _source_of(c_audio)], c_outputs,
                                    api_name="analyze", concurrency_id="models")
                c_run.success(lambda text: gr.Dataframe(column_widths=TEXT_TABLE_WIDTHS if text else []), c_text, c_turns,
                              queue=False, api_visibility="private")  # in the page only: the API returns the table
                _clear_on_error(c_run, c_outputs)

        gr.Markdown(models_markdown(models), elem_classes="note", elem_id="models")
    return demo


def models_markdown(models: Models) -> str:
    lines = []
    for key, engine in models.stt.items():
        lines.append(f"`{key}`: {_model_name(engine)}")
    if models.gender is not None:
        lines.append(f"`gender`: {_model_name(models.gender)}")
    if models.speaker is not None:
        lines.append(f"`speaker`: {models.speaker.config.get('name', 'speaker')}")
    missing = [f"`{k}`: {v}" for k, v in models.problems.items() if k != "whisper"]
    text = "**모델 · Models** — " + " · ".join(lines)
    if missing:
        text += "\n\n**사용할 수 없음 · Unavailable** — " + " · ".join(missing)
    return text + (f"\n\n최대 길이 · Length limits: 음성 인식·성별 {_minutes(MAX_SECONDS)}, "
                   f"대화 분석 {_minutes(MAX_ANALYSIS_SECONDS)}")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}분 ({seconds / 60:g} min)" if seconds >= 60 else f"{seconds:g}초 ({seconds:g} s)"


models = load_models()
warm_up(models)
demo = build_demo(models)
demo.queue(default_concurrency_limit=int(_env_float("SPEECH_CONCURRENCY", 1)),
           max_size=int(_env_float("SPEECH_QUEUE_SIZE", 32)))

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo.launch(theme=THEME, css=CSS, allowed_paths=[str(EXAMPLES)], max_file_size="200mb")
