"""Command line: `python -m speech COMMAND ...` (transcribe, gender, analyze, batch)."""
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


def _warn(path, warnings) -> None:
    """A result's warnings (speech.band: narrowband audio) on stderr, one line each."""
    for w in warnings:
        print(f"warning: {path}: {w}", file=sys.stderr)


def _fail(path, err) -> None:
    print(f"error: {path}: {err}", file=sys.stderr)


class _Files:
    """The command's work on each file: a file that cannot be read or has no usable speech is
    reported on stderr and counted in `failed`, and the rest go on."""

    def __init__(self):
        self.failed = 0

    def each(self, files, work, desc: str = "", show: bool = False, bar=None):
        for path in _progress_iter(files, desc, show):
            try:
                result = work(path)
            except (AudioError, OSError) as e:
                _fail(path, e)
                self.failed += 1
                continue
            finally:
                if bar is not None:
                    bar.close()
            yield path, result


# -- transcribe --------------------------------------------------------------------------------

def add_transcribe(sub):
    p = sub.add_parser("transcribe", help="speech to text", description="Transcribe Korean speech.")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg, m4a, webm, pcm, ...)")
    p.add_argument("--engine", default=None, choices=["ds2", "whisper"],
                   help="recognition engine (default: the best available, Whisper base; see SPEECH_WHISPER_MODEL)")
    p.add_argument("--model", default=None, help="local folder, Hub repo id (owner/name[@revision]) or 'default'")
    p.add_argument("--decoder", default="greedy", choices=["greedy", "beam"], help="CTC decoder (ds2)")
    p.add_argument("--lm", default=None, help="KenLM model for --decoder beam (default: the model's shipped LM)")
    p.add_argument("--beam-size", type=int, default=None, help="beam width (default: the model's shipped setting)")
    p.add_argument("--format", default="text", choices=["text", "jsonl", "srt", "vtt"])
    p.add_argument("--words", action="store_true", help="include word timestamps in jsonl")
    p.add_argument("--compare", action="store_true",
                   help="run Whisper and DeepSpeech2 on each file and print both transcripts with processing times")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_transcribe)


def cmd_transcribe(args) -> int:
    from .formats import subtitle_cues, to_srt, to_vtt
    from .stt import load_engine
    from .usable import transcribe

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
    run = _Files()
    bar = _PercentBar(not args.no_progress and sys.stderr.isatty(), "transcribing")  # long files
    # no usable speech is an error (speech.usable)
    for path, result in run.each(args.files, lambda p: transcribe(engine, p, progress=bar), "transcribing", show, bar):
        items = subtitle_cues((s.start, s.end, s.text, s.words) for s in result.segments)
        if args.format == "text":
            print(result.text if len(args.files) == 1 else f"{path}\t{result.text}", flush=True)
        elif args.format == "jsonl":
            print(json.dumps({"path": str(path), **result.to_dict(words=args.words)}, ensure_ascii=False), flush=True)
        elif args.format == "srt":
            print(to_srt(items), flush=True)
        else:
            print(to_vtt(items), flush=True)
    return 1 if run.failed else 0


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
    run = _Files()
    for path, rows in run.each(args.files, lambda p: compare(engines, p)):
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
    return 1 if run.failed else 0


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
    run = _Files()
    for path, r in run.each(args.files, lambda p: clf.predict(p, vad=not args.no_vad), "classifying", show):
        _warn(path, r.warnings)
        if args.format == "jsonl":
            print(json.dumps({"path": str(path), **r.to_dict()}, ensure_ascii=False), flush=True)
        else:
            probs = " ".join(f"{k}={v:.3f}" for k, v in r.probabilities.items())
            print(f"{path}\t{r.label}\t{probs}", flush=True)
    return 1 if run.failed else 0


# -- analyze -----------------------------------------------------------------------------------

def add_analyze(sub):
    p = sub.add_parser("analyze", help="who talked how much (speakers, parents' ratio)",
                       description="Find the speakers of a recording, label each one female, male or child "
                                   "and report talk time, shares and the parents' ratio (adult female : adult male).")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (household recordings, up to hours long)")
    p.add_argument("--model", default=None, help="gender model: local folder, Hub repo id or 'default'")
    p.add_argument("--speaker-model", default=None,
                   help="speaker encoder: local folder, Hub repo id or 'default' (checkpoints/speaker-campplus)")
    p.add_argument("--transcribe", action="store_true", help="also transcribe each turn (slower)")
    p.add_argument("--stt-engine", default=None, choices=["ds2", "whisper"],
                   help="speech-to-text engine for --transcribe (default: the best available, Whisper base)")
    p.add_argument("--stt-model", default=None, help="speech-to-text model for --transcribe (with --stt-engine)")
    p.add_argument("--format", default="json", choices=["json", "csv", "speakers-csv", "srt", "vtt", "rttm"],
                   help="csv: one row per turn; speakers-csv: one row per speaker")
    p.add_argument("--speakers", type=_positive_int, default=None, metavar="N",
                   help="number of speakers, if known (default: found automatically)")
    p.add_argument("--detect-tv", action="store_true",
                   help="a TV or radio was on: report speakers that sound like one, or sit far under the family "
                        "and a little like one, as 'tv', outside the family's shares, when there are two such voices "
                        "or more (one alone is a family member away from the recorder); a parent as far away as the "
                        "TV can still go with it")
    p.add_argument("--output", "-o", default=None, help="write here instead of standard output (one FILE)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also save the timeline figure (one FILE)")
    p.add_argument("--output-dir", default=None, metavar="DIR",
                   help="write NAME_analysis.FORMAT and the timeline NAME_timeline.png for each FILE here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_analyze)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of speakers, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"the number of speakers must be at least 1, got {n}")
    return n


def cmd_analyze(args) -> int:
    """Several files as transcribe and gender take them: a file without usable speech or that
    cannot be read gets one line on stderr, the others are still analysed, and the exit code is 1.
    On standard output several reports are JSON Lines (json), one table with a path column (csv)
    or one after another (rttm: its lines name their file); srt/vtt need one file or --output-dir."""
    from .analysis import analyze
    from .gender import GenderClassifier
    from .speaker import SpeakerEncoder

    several = len(args.files) > 1
    if several and (args.output or args.plot):
        print("error: --output and --plot name one file; with several files use --output-dir", file=sys.stderr)
        return 2
    if several and not args.output_dir and args.format in ("srt", "vtt"):
        print(f"error: several {args.format} files cannot share standard output; use --output-dir", file=sys.stderr)
        return 2
    try:
        clf = GenderClassifier.load(args.model)
        encoder = SpeakerEncoder.load(args.speaker_model)
        stt = None
        if args.transcribe:
            from .stt import load_engine

            if args.stt_model and not args.stt_engine:
                raise ValueError("--stt-model needs --stt-engine (ds2 or whisper)")
            stt = load_engine(args.stt_engine, model=args.stt_model)
    except (ValueError, OSError) as e:
        print(f"error: could not load a model: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    show = not args.no_progress and several and sys.stderr.isatty()
    bar = _PercentBar(not args.no_progress and sys.stderr.isatty(), "analysing")
    run, csv_header = _Files(), True

    def work(path):   # no usable speech raises
        return analyze(path, clf, stt=stt, progress=bar, speakers=args.speakers, detect_tv=args.detect_tv,
                       encoder=encoder)

    for path, report in run.each(args.files, work, "analysing", show, bar):
        _warn(path, report.warnings)
        if out_dir is not None or not several or args.format in ("srt", "vtt"):
            text = {"json": report.to_json, "csv": report.to_csv, "speakers-csv": report.to_speakers_csv,
                    "srt": report.to_srt, "vtt": report.to_vtt, "rttm": report.to_rttm}[args.format]()
        elif args.format == "json":
            text = report.to_json(indent=None)
        elif args.format in ("csv", "speakers-csv"):
            lines = (report.to_csv() if args.format == "csv" else report.to_speakers_csv()).splitlines(keepends=True)
            text = "".join(["path," + lines[0]] * csv_header + [_csv_field(path) + "," + ln for ln in lines[1:]])
            csv_header = False
        else:
            text = report.to_rttm()
        if out_dir is not None:
            stem = Path(path).stem
            (out_dir / f"{stem}_analysis.{args.format}").write_text(text, encoding="utf-8")
            plot = out_dir / f"{stem}_timeline.png"
        elif args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            plot = args.plot
        else:
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
            sys.stdout.flush()
            plot = args.plot
        if plot:
            from .plots import timeline_figure

            timeline_figure(report).savefig(plot, dpi=120)
    return 1 if run.failed else 0


def _csv_field(value) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([str(value)])
    return buf.getvalue()


# -- batch -------------------------------------------------------------------------------------

def add_batch(sub):
    p = sub.add_parser("batch", help="a folder of recordings to one table (resumable, parallel)",
                       description="Analyse, transcribe and/or classify every recording of a folder (recursively) "
                                   "or a manifest: one result file per recording and one summary table. "
                                   "Finished recordings are skipped when it is run again.")
    p.add_argument("input", metavar="INPUT", help="a folder of audio files, or a manifest (.jsonl, .tsv, .csv, .txt)")
    p.add_argument("--out", required=True, help="output folder: results/, summary.csv, summary.png")
    p.add_argument("--tasks", default="analyze", help="comma-separated: analyze,transcribe,gender (default analyze)")
    p.add_argument("--exports", default=None,
                   help="comma-separated per-recording exports: rttm,csv,srt,vtt,txt "
                        "(default: rttm,csv with analyze, txt,srt with transcribe alone)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (each loads the models once)")
    p.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run on Ray: 'auto' (the cluster this machine belongs to, else a local instance) or "
                        "a cluster address (host:6379 or ray://host:10001), or local (a new instance here); "
                        "--jobs is then the actor pool size")
    p.add_argument("--force", action="store_true", help="redo finished recordings")
    p.add_argument("--model", default=None, help="gender model: local folder, Hub repo id or 'default'")
    p.add_argument("--engine", default=None, choices=["ds2", "whisper"],
                   help="speech-to-text engine for transcribe (default: the library's default engine)")
    p.add_argument("--stt-model", default=None, help="speech-to-text model for transcribe")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from .batch import EXPORTS, TASKS, Job, discover, parse_list, run_batch

    try:
        tasks = parse_list(args.tasks, TASKS, "tasks")
        if args.exports is None:
            exports = ("rttm", "csv") if "analyze" in tasks else ("txt", "srt") if "transcribe" in tasks else ()
        else:
            exports = parse_list(args.exports, EXPORTS, "exports")
        job = Job(tasks=tasks, gender_model=args.model, engine=args.engine, stt_model=args.stt_model,
                  exports=exports, threads=args.threads)
        if args.jobs < 1:
            raise ValueError("--jobs must be >= 1")
        items = discover(args.input)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not items:
        print(f"error: no audio files in {args.input}", file=sys.stderr)
        return 2
    try:
        r = run_batch(items, job, args.out, jobs=args.jobs, force=args.force, ray=args.ray,
                      progress=not args.no_progress and sys.stderr.isatty())
    except (ValueError, OSError, ImportError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r.total} recordings: {r.done} processed, {r.skipped} already done, {r.failed} failed; "
          f"summary: {Path(args.out) / 'summary.csv'}", file=sys.stderr)
    return 1 if any(row["error"] for row in r.rows) else 0


COMMANDS = [add_transcribe, add_gender, add_analyze, add_batch]


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
