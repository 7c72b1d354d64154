"""Command line: `python -m speech COMMAND ...` (transcribe, gender, analyze)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .audio import AudioError

log = logging.getLogger("speech")


def _progress_iter(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", file=sys.stderr)


class _PercentBar:
    """A tqdm bar driven by the engines' `progress(fraction, message)` callbacks; created on the
    first call, so short inputs (which never report) show nothing."""

    def __init__(self, enabled: bool, desc: str):
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=self.desc, unit="%", file=sys.stderr, leave=False,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self.bar.set_description(f"{self.desc}: {message}")
        self.bar.n = round(100 * fraction, 1)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fail(path, err) -> None:
    print(f"error: {path}: {err}", file=sys.stderr)


# -- transcribe --------------------------------------------------------------------------------

def add_transcribe(sub):
    p = sub.add_parser("transcribe", help="speech to text", description="Transcribe Korean speech.")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg, m4a, webm, pcm, ...)")
    p.add_argument("--engine", default=None, choices=["ds2", "whisper"],
                   help="recognition engine (default: the best available, Whisper base; see SPEECH_WHISPER_MODEL)")
    p.add_argument("--model", default=None, help="local folder, Hub repo id (owner/name[@revision]) or 'default'")
    p.add_argument("--decoder", default="greedy", choices=["greedy", "beam"], help="CTC decoder (ds2)")
    p.add_argument("--lm", default=None, help="KenLM model for --decoder beam (default: the model's shipped LM)")
    p.add_argument("--beam-size", type=int, default=32)
    p.add_argument("--format", default="text", choices=["text", "jsonl", "srt", "vtt"])
    p.add_argument("--words", action="store_true", help="include word timestamps in jsonl")
    p.add_argument("--compare", action="store_true",
                   help="run Whisper and DeepSpeech2 on each file and print both transcripts with processing times")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_transcribe)


def cmd_transcribe(args) -> int:
    from .formats import to_srt, to_vtt
    from .stt import load_engine

    if args.compare:
        return cmd_compare(args)
    kwargs = {}
    if args.engine is None and args.model not in (None, "default"):
        print("error: --model needs --engine (ds2 or whisper); with no --engine, SPEECH_WHISPER_MODEL chooses "
              "the model", file=sys.stderr)
        return 2
    if args.engine == "ds2":
        kwargs = dict(decoder=args.decoder, lm=args.lm, beam_size=args.beam_size)
    elif args.decoder != "greedy" or args.lm:
        print("error: --decoder/--lm apply to the ds2 engine only (--engine ds2)", file=sys.stderr)
        return 2
    try:
        engine = load_engine(args.engine, model=args.model, **kwargs)
    except (ValueError, OSError) as e:
        print(f"error: could not load the {args.engine or 'default'} model: {e}", file=sys.stderr)
        return 2
    show = not args.no_progress and (len(args.files) > 1) and sys.stderr.isatty()
    failed = 0
    bar = _PercentBar(not args.no_progress and sys.stderr.isatty(), "transcribing")  # long files
    for path in _progress_iter(args.files, "transcribing", show):
        try:
            result = engine.transcribe(path, progress=bar)
        except (AudioError, OSError) as e:
            _fail(path, e)
            failed += 1
            continue
        finally:
            bar.close()
        items = [(s.start, s.end, s.text) for s in result.segments]
        if args.format == "text":
            print(result.text if len(args.files) == 1 else f"{path}\t{result.text}", flush=True)
        elif args.format == "jsonl":
            print(json.dumps({"path": str(path), **result.to_dict(words=args.words)}, ensure_ascii=False), flush=True)
        elif args.format == "srt":
            print(to_srt(items), flush=True)
        else:
            print(to_vtt(items), flush=True)
    return 1 if failed else 0


def cmd_compare(args) -> int:
    """Both engines on the same files: the study's comparison, on your own recordings."""
    from .default_engine import compare
    from .stt import load_engine

    if args.engine or args.model:
        print("error: --compare runs the default Whisper and DeepSpeech2; drop --engine/--model "
              "(SPEECH_WHISPER_MODEL chooses the Whisper model)", file=sys.stderr)
        return 2
    try:
        engines = [load_engine("whisper"),
                   load_engine("ds2", decoder=args.decoder, lm=args.lm, beam_size=args.beam_size)]
    except (ValueError, OSError, ImportError) as e:
        print(f"error: --compare needs both engines: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            rows = compare(engines, path)
        except (AudioError, OSError) as e:
            _fail(path, e)
            failed += 1
            continue
        if args.format == "jsonl":
            for r in rows:
                print(json.dumps({"path": str(path), "label": r.label, "seconds": round(r.seconds, 3),
                                  **r.transcript.to_dict(words=args.words)}, ensure_ascii=False), flush=True)
        elif args.format == "text":
            for r in rows:
                print(f"{path}\t{r.label}\t{r.seconds:.2f} s\t{r.text}", flush=True)
        else:
            print("error: --compare writes text or jsonl", file=sys.stderr)
            return 2
    return 1 if failed else 0


# -- gender ------------------------------------------------------------------------------------

def add_gender(sub):
    p = sub.add_parser("gender", help="speaker gender of each file",
                       description="Classify the speaker of each file as female or male (calibrated probabilities).")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    p.add_argument("--model", default=None, help="local folder, Hub repo id (owner/name[@revision]) or 'default'")
    p.add_argument("--format", default="text", choices=["text", "jsonl"])
    p.add_argument("--no-vad", action="store_true", help="classify the whole input, not only the speech regions")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_gender)


def cmd_gender(args) -> int:
    from .gender import GenderClassifier

    try:
        clf = GenderClassifier.load(args.model)
    except (ValueError, OSError) as e:
        print(f"error: could not load the gender model: {e}", file=sys.stderr)
        return 2
    show = not args.no_progress and len(args.files) > 1 and sys.stderr.isatty()
    failed = 0
    for path in _progress_iter(args.files, "classifying", show):
        try:
            r = clf.predict(path, vad=not args.no_vad)
        except (AudioError, OSError) as e:
            _fail(path, e)
            failed += 1
            continue
        if args.format == "jsonl":
            print(json.dumps({"path": str(path), **r.to_dict()}, ensure_ascii=False), flush=True)
        else:
            probs = " ".join(f"{k}={v:.3f}" for k, v in r.probabilities.items())
            print(f"{path}\t{r.label}\t{probs}", flush=True)
    return 1 if failed else 0


# -- analyze -----------------------------------------------------------------------------------

def add_analyze(sub):
    p = sub.add_parser("analyze", help="who talked how much (female/male speaking time)",
                       description="Split a recording into speech turns, label each turn's gender and "
                                   "report each gender's speaking time and share.")
    p.add_argument("file", metavar="FILE", help="audio file (a household recording, up to hours long)")
    p.add_argument("--model", default=None, help="gender model: local folder, Hub repo id or 'default'")
    p.add_argument("--transcribe", action="store_true", help="also transcribe each turn (slower)")
    p.add_argument("--stt-engine", default=None, choices=["ds2", "whisper"],
                   help="speech-to-text engine for --transcribe (default: the best available, Whisper base)")
    p.add_argument("--stt-model", default=None, help="speech-to-text model for --transcribe (with --stt-engine)")
    p.add_argument("--format", default="json", choices=["json", "csv", "srt", "vtt", "rttm"])
    p.add_argument("--output", "-o", default=None, help="write here instead of standard output")
    p.add_argument("--plot", default=None, metavar="PNG", help="also save the timeline figure")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    from .analysis import analyze
    from .gender import GenderClassifier

    try:
        clf = GenderClassifier.load(args.model)
        stt = None
        if args.transcribe:
            from .stt import load_engine

            if args.stt_model and not args.stt_engine:
                raise ValueError("--stt-model needs --stt-engine (ds2 or whisper)")
            stt = load_engine(args.stt_engine, model=args.stt_model)
    except (ValueError, OSError) as e:
        print(f"error: could not load a model: {e}", file=sys.stderr)
        return 2
    bar = _PercentBar(not args.no_progress and sys.stderr.isatty(), "analysing")
    try:
        report = analyze(args.file, clf, stt=stt, progress=bar)
    except (AudioError, OSError) as e:
        _fail(args.file, e)
        return 1
    finally:
        bar.close()
    text = {"json": report.to_json, "csv": report.to_csv, "srt": report.to_srt, "vtt": report.to_vtt,
            "rttm": report.to_rttm}[args.format]()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if args.plot:
        from .plots import timeline_figure

        timeline_figure(report).savefig(args.plot, dpi=120)
    if report.speech_seconds == 0:
        print(f"warning: {args.file}: no speech was found", file=sys.stderr)
    return 0


COMMANDS = [add_transcribe, add_gender, add_analyze]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speech", description="Korean speech: transcription, speaker gender, conversation analysis.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    return args.func(args)
