"""A folder of recordings to one table: `python -m speech batch INPUT --out DIR`.

    run_batch(discover("recordings/"), Job(tasks=("analyze",)), "out/", jobs=2)

INPUT is a folder (searched recursively for audio) or a manifest (JSONL with `audio` or `path`,
a TSV/CSV with a `path` or `audio` column, or a text file with one path a line). Every recording
gets its files under OUT/results/ and one row in OUT/summary.csv (and summary.parquet when pyarrow
is installed); OUT/summary.png shows each recording's parents' ratio and their distribution.

    OUT/results/<id>.json          the recording's results: analysis, transcript, gender, versions,
                                   error, timing; written last, so it marks the recording done
    OUT/results/<id>.<export>      the chosen exports (rttm, turns.csv, srt, vtt, txt)

Resuming: a recording whose JSON exists, for the same tasks and models and the same source file
(size and modification time), is skipped unless `force`. Every file is written to a temporary name
and renamed into place, so a crash or `kill -9` loses at most the recordings in progress and never
leaves a half-written file; the summary is rebuilt from the JSON files. A file that cannot be
used is a row with its error; the batch goes on.

Workers (`jobs` processes, or a Ray actor pool with `ray=`) each load the models once and return
one record per recording; only the driver writes, in one place (`_Writer`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from .memory import peak_rss_mb, release

log = logging.getLogger("speech")

TASKS = ("analyze", "transcribe", "gender")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".m4a", ".mp4", ".aac", ".webm",
                    ".wma", ".pcm")
# export name -> (file suffix, task it needs: one of them must be chosen)
EXPORTS = {
    "rttm": (".rttm", ("analyze",)),
    "csv": (".turns.csv", ("analyze",)),
    "srt": (".srt", ("analyze", "transcribe")),
    "vtt": (".vtt", ("analyze", "transcribe")),
    "txt": (".txt", ("transcribe",)),
}
RESULTS = "results"
SUMMARY_CSV, SUMMARY_PARQUET, SUMMARY_PNG = "summary.csv", "summary.parquet", "summary.png"
# Row fields that change from run to run; everything else is the same for the same input and models.
TIMING_FIELDS = ("elapsed", "rtf", "worker_peak_mb", "worker")
SUMMARY_EVERY = 300.0   # seconds between rewrites of the summary table during a run


@dataclass(frozen=True)
class Job:
    """What to compute for every recording. Everything here except `threads` is part of a
    result's identity: a result made for another Job is recomputed, not reused."""
    tasks: tuple = ("analyze",)
    gender_model: Optional[str] = None        # None: the embedded default
    engine: Optional[str] = None              # None: speech.stt.load_engine()'s default engine
    stt_model: Optional[str] = None
    exports: tuple = ("rttm", "csv")
    threads: int = 1                          # torch / CTranslate2 threads per worker

    def __post_init__(self):
        tasks = tuple(self.tasks)
        bad = [t for t in tasks if t not in TASKS]
        if not tasks or bad:
            raise ValueError(f"Unknown tasks {bad or '(none)'}; tasks = {list(TASKS)}")
        unknown = [e for e in self.exports if e not in EXPORTS]
        if unknown:
            raise ValueError(f"Unknown exports {unknown}; exports = {list(EXPORTS)}")
        for e in self.exports:
            if not set(EXPORTS[e][1]) & set(tasks):
                raise ValueError(f"The {e} export needs the task {' or '.join(EXPORTS[e][1])}")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        # Canonical order, so that "gender,analyze" and "analyze,gender" are the same job.
        object.__setattr__(self, "tasks", tuple(t for t in TASKS if t in tasks))
        object.__setattr__(self, "exports", tuple(e for e in EXPORTS if e in self.exports))

    def identity(self) -> dict:
        d = asdict(self)
        d.pop("threads")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class Item:
    id: str       # relative path below the input folder (or the manifest's folder); names the result files
    path: str


# -- input ----------------------------------------------------------------------------------------

def discover(source) -> list[Item]:
    """The recordings of a folder (recursively, sorted) or a manifest, with unique ids."""
    source = Path(source).expanduser()
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))
        return [Item(p.relative_to(source).as_posix(), str(p)) for p in paths]
    if source.is_file():
        return _unique(_manifest_items(source))
    raise FileNotFoundError(f"{source} is neither a folder nor a manifest file")


def _manifest_items(manifest: Path) -> list[Item]:
    folder = manifest.resolve().parent
    text = manifest.read_text(encoding="utf-8")
    suffix = manifest.suffix.lower()
    if suffix == ".jsonl":
        paths = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            key = "audio" if "audio" in row else "path" if "path" in row else None
            if key is None:
                raise ValueError(f"{manifest}:{n}: a manifest line needs an 'audio' or 'path' key")
            paths.append(row[key])
    elif suffix in (".tsv", ".csv"):
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
        key = next((k for k in ("audio", "path") if rows and k in rows[0]), None)
        if key is None:
            raise ValueError(f"{manifest} needs an 'audio' or 'path' column")
        paths = [r[key] for r in rows]
    else:
        paths = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    items = []
    for p in paths:
        full = Path(folder, os.path.expanduser(p)).resolve() if not os.path.isabs(p) else Path(p)
        try:
            rid = full.relative_to(folder).as_posix()
        except ValueError:
            rid = full.as_posix().lstrip("/")
        items.append(Item(rid, str(full)))
    return items


def _unique(items: list[Item]) -> list[Item]:
    seen, out = set(), []
    for it in items:
        if it.id not in seen:
            seen.add(it.id)
            out.append(it)
    return out


def source_stamp(path: str) -> Optional[dict]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# -- the worker: models loaded once, one record per recording -------------------------------------

def _weights_version(folder, name: str) -> str:
    """`name@` the first 12 hex digits of the weights' SHA-256: which weights made a result."""
    folder = Path(folder)
    for w in ("model.safetensors", "model.bin"):
        if (folder / w).is_file():
            h = hashlib.sha256()
            with open(folder / w, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            return f"{name}@{h.hexdigest()[:12]}"
    return name


class Worker:
    def __init__(self, job: Job):
        # Before torch and CTranslate2 start their thread pools (faster-whisper reads it when its
        # cpu_threads is 0, the default); torch.set_num_threads covers a torch already running.
        os.environ["OMP_NUM_THREADS"] = str(job.threads)
        import torch

        from . import __version__
        from .gender import GenderClassifier

        torch.set_num_threads(job.threads)
        self.job = job
        self.classifier = self.stt = None
        self.versions = {"speech": __version__}
        if "analyze" in job.tasks or "gender" in job.tasks:
            self.classifier = GenderClassifier.load(job.gender_model)
            self.versions["gender_model"] = _weights_version(self.classifier.folder, self.classifier.model_name)
        if "transcribe" in job.tasks:
            from .stt import load_engine

            kwargs = {"model": job.stt_model}
            if job.engine:
                kwargs["engine"] = job.engine
            self.stt = load_engine(**kwargs)
            if self.stt.name == "whisper":
                import faster_whisper

                self.versions["stt_engine"] = f"whisper (faster-whisper {faster_whisper.__version__})"
            else:
                self.versions["stt_engine"] = f"{self.stt.name} (speech {__version__})"
            self.versions["stt_model"] = _weights_version(self.stt.folder, self.stt.model_name)
            self.versions["stt_decoder"] = self.stt.decoder_name

    def __call__(self, item: dict) -> dict:
        from .audio import AudioError

        t0 = time.perf_counter()
        rec = {"id": item["id"], "path": item["path"], "duration": None, "analysis": None,
               "transcript": None, "gender": None, "error": None, "versions": self.versions, "exports": {}}
        try:
            self._run(item, rec)
        except (AudioError, OSError) as e:
            rec["error"] = str(e)
        except Exception as e:  # a bug or a model failure: recorded, and the batch goes on
            log.exception("%s failed", item["path"])
            rec["error"] = f"{type(e).__name__}: {e}"
        elapsed = time.perf_counter() - t0
        rec["timing"] = {"elapsed": round(elapsed, 3),
                         "rtf": round(elapsed / rec["duration"], 5) if rec["duration"] else None,
                         "worker_peak_mb": round(peak_rss_mb(), 1), "worker": _worker_name()}
        release()
        return rec

    @staticmethod
    def _load(item: dict, rec: dict):
        from .audio import SAMPLE_RATE, load_audio

        audio = load_audio(item["path"])
        rec["duration"] = round(len(audio) / SAMPLE_RATE, 3)
        return audio

    def _run(self, item: dict, rec: dict) -> None:
        from .analysis import analyze
        from .audio import AudioError
        from .formats import to_srt, to_vtt
        from .gender import NoSpeechError

        tasks, exports = self.job.tasks, self.job.exports
        # analyze decodes the file itself when nothing else needs the samples: it then holds one
        # copy of them (the level gain applied in place), not a copy beside ours.
        audio = None if "analyze" in tasks and "gender" not in tasks else self._load(item, rec)
        if "analyze" in tasks:
            # With transcription, each turn is transcribed: one VAD pass, captions with the gender.
            try:
                report = analyze(item["path"] if audio is None else audio, self.classifier, stt=self.stt,
                                 path=item["path"])
            except AudioError:
                if audio is None:          # the duration, or the decoding error, as a decode alone gives them
                    self._load(item, rec)
                raise
            rec["duration"] = round(report.duration, 3)
            rec["analysis"] = report.to_dict()
            if self.stt is not None:
                turns = [t for t in report.turns if t.text]
                rec["transcript"] = {"text": " ".join(t.text for t in turns), "per_turn": True,
                                     "segments": [{"start": round(t.start, 3), "end": round(t.end, 3),
                                                   "gender": t.gender, "text": t.text} for t in turns]}
            made = {"rttm": lambda: report.to_rttm(Path(item["id"]).stem), "csv": report.to_csv,
                    "srt": report.to_srt, "vtt": report.to_vtt}
        elif "transcribe" in tasks:
            tr = self.stt.transcribe(audio)
            rec["transcript"] = {"text": tr.text, "per_turn": False,
                                 "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                                              for s in tr.segments]}
            items = [(s.start, s.end, s.text) for s in tr.segments]
            made = {"srt": lambda: to_srt(items), "vtt": lambda: to_vtt(items)}
        else:
            made = {}
        if rec["transcript"] is not None:
            made["txt"] = lambda: rec["transcript"]["text"] + "\n"
        for e in exports:
            if e in made:
                rec["exports"][e] = made[e]()
        if "gender" in tasks:
            try:
                rec["gender"] = self.classifier.predict(audio).to_dict()
            except NoSpeechError as e:
                rec["gender"] = {"label": None, "probabilities": None, "error": str(e)}


def _worker_name() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


# -- the summary row: one function per source ------------------------------------------------------

def analysis_columns(a: Optional[dict]) -> dict:
    """Summary columns from one analysis (ConversationReport.to_dict()); None -> the same columns,
    empty. A new analysis field (speakers, child seconds, ...) becomes a column by one line here."""
    a = a or {}
    f, m = a.get("female") or {}, a.get("male") or {}
    c, tv = a.get("child") or {}, a.get("tv") or {}
    ratio = f["seconds"] / m["seconds"] if f.get("seconds") is not None and m.get("seconds") else None
    return {
        "speech_seconds": a.get("speech_seconds"),
        "speakers": a.get("n_speakers"),
        "female_seconds": f.get("seconds"),
        "male_seconds": m.get("seconds"),
        "child_seconds": c.get("seconds"),
        "tv_seconds": tv.get("seconds"),
        "female_share": f.get("share"),
        "male_share": m.get("share"),
        "child_share": c.get("share"),
        "parents_ratio": None if ratio is None else round(ratio, 4),  # adult female : adult male speaking time
        "turns": a.get("n_turns"),
    }


def gender_columns(g: Optional[dict]) -> dict:
    g = g or {}
    return {"gender": g.get("label"), "female_probability": (g.get("probabilities") or {}).get("female")}


def transcript_columns(t: Optional[dict]) -> dict:
    return {"transcript_chars": None if t is None else len(t["text"].replace(" ", ""))}


def row(record: dict) -> dict:
    """One summary row from one recording's record (what OUT/results/<id>.json holds)."""
    v = record.get("versions") or {}
    timing = record.get("timing") or {}
    return {
        "id": record["id"], "path": record["path"], "duration": record.get("duration"),
        **analysis_columns(record.get("analysis")),
        **gender_columns(record.get("gender")),
        **transcript_columns(record.get("transcript")),
        "stt_engine": v.get("stt_engine"), "stt_model": v.get("stt_model"), "gender_model": v.get("gender_model"),
        "speech_version": v.get("speech"),
        "error": record.get("error"),
        **{k: timing.get(k) for k in TIMING_FIELDS},
    }


# -- writing: atomic, in one place ---------------------------------------------------------------

def atomic_write(path: Path, data, mode: str = "w") -> None:
    """Write to a hidden temporary file beside `path`, flush it to disk, rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_temporaries(out: Path) -> None:
    for p in out.rglob(".*.tmp*"):
        if p.is_file():
            p.unlink()


class _Writer:
    def __init__(self, out: Path, job: Job):
        self.out, self.job = out, job
        self.results = out / RESULTS

    def json_path(self, item: Item) -> Path:
        return self.results / f"{item.id}.json"

    def done(self, item: Item) -> bool:
        p = self.json_path(item)
        if not p.is_file():
            return False
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        return rec.get("job") == self.job.identity() and rec.get("source") == source_stamp(item.path)

    def write(self, item: Item, rec: dict) -> None:
        exports = rec.pop("exports", {}) or {}
        rec["job"] = self.job.identity()
        rec["source"] = source_stamp(item.path)
        for name, text in exports.items():
            atomic_write(self.results / f"{item.id}{EXPORTS[name][0]}", text)
        atomic_write(self.json_path(item), json.dumps(rec, ensure_ascii=False, indent=1) + "\n")

    def read(self, item: Item) -> Optional[dict]:
        p = self.json_path(item)
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def write_summary(out, items: list[Item], job: Job, figure: bool = True) -> list[dict]:
    """Rebuild OUT/summary.csv (and .parquet, .png) from the result files of `items`, in input order."""
    out = Path(out)
    w = _Writer(out, job)
    rows = [row(rec) for rec in (w.read(it) for it in items) if rec is not None]
    header = list(row({"id": "", "path": ""}))
    buf = io.StringIO()
    cw = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    cw.writeheader()
    cw.writerows([{k: "" if v is None else v for k, v in r.items()} for r in rows])
    atomic_write(out / SUMMARY_CSV, buf.getvalue())
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({k: [] for k in header}), sink)
        atomic_write(out / SUMMARY_PARQUET, sink.getvalue().to_pybytes(), "wb")
    if figure and "analyze" in job.tasks:
        png = io.BytesIO()
        summary_figure(rows).savefig(png, format="png", dpi=110)
        atomic_write(out / SUMMARY_PNG, png.getvalue(), "wb")
    return rows


def read_summary(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def summary_figure(rows: list[dict]):
    """Each recording's parents' ratio (female : male speaking time, log scale) and their distribution."""
    import numpy as np

    from .plots import GENDER_COLORS, _figure, _style

    named = [(r["id"], r["parents_ratio"]) for r in rows if r.get("parents_ratio")]
    with _style():
        fig = _figure(11, max(3.0, 1.2 + 0.22 * len(named)))
        ax, hx = fig.subplots(1, 2, width_ratios=[3, 2])
        if named:
            ids, ratios = zip(*named)
            y = np.arange(len(ids))
            lr = np.log2(ratios)
            ax.barh(y, lr, color=[GENDER_COLORS["female"] if v >= 0 else GENDER_COLORS["male"] for v in lr])
            ax.set_yticks(y, ids, fontsize=7)
            ax.invert_yaxis()
            hx.hist(np.clip(lr, -2.4, 2.4), bins=np.linspace(-2.5, 2.5, 21), color="#868e96")
            hx.axvline(float(np.median(lr)), color="black", lw=1, label=f"median {2 ** np.median(lr):.2f}")
            hx.legend(fontsize=8)
        for a in (ax, hx):
            a.axvline(0, color="black", lw=0.8, ls=":")
            ticks = [-2, -1, 0, 1, 2]
            a.set_xticks(ticks, [f"{2.0 ** t:g}" for t in ticks])
            a.set_xlim(-2.5, 2.5)
        ax.set_xlabel("부모 발화 비율 parents' ratio (female : male, log scale)")
        hx.set_xlabel("parents' ratio")
        hx.set_ylabel("recordings")
        ax.set_title(f"{len(named)} recordings with speech of both parents")
        hx.set_title("분포 distribution")
    return fig


# -- running ----------------------------------------------------------------------------------------

_WORKER: Optional[Worker] = None


def _init_process(job: Job, parent: int) -> None:
    global _WORKER
    # A worker whose driver died (kill -9) stops instead of waiting forever for work.
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _WORKER = Worker(job)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_item(item: dict) -> dict:
    return _WORKER(item)


def _local_records(todo: list[Item], job: Job, jobs: int) -> Iterator[tuple[Item, dict]]:
    if jobs <= 1:
        worker = Worker(job)
        for it in todo:
            yield it, worker(asdict(it))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked copy of a process that has started torch's threads can hang.
    pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_process,
                               initargs=(job, os.getpid()))
    try:
        futures = {pool.submit(_run_item, asdict(it)): it for it in todo}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:  # Ctrl-C or an error: do not work through the rest of the list first
        pool.shutdown(wait=False, cancel_futures=True)


def _ray_records(todo: list[Item], job: Job, jobs: int, address: str) -> Iterator[tuple[Item, dict]]:
    from .batch_ray import ray_records

    yield from ray_records(todo, job, jobs, address)


@dataclass
class BatchResult:
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0           # wall time of the run
    audio_seconds: float = 0.0     # audio processed in this run
    rows: list = field(default_factory=list)


def run_batch(items: list[Item], job: Job, out, jobs: int = 1, force: bool = False, ray: Optional[str] = None,
              progress: bool = False, on_record: Optional[Callable[[Item, dict], None]] = None) -> BatchResult:
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(out)
    writer = _Writer(out, job)
    todo = items if force else [it for it in items if not writer.done(it)]
    result = BatchResult(total=len(items), skipped=len(items) - len(todo))
    t0 = time.perf_counter()
    if todo:
        records = _ray_records(todo, job, jobs, ray) if ray else _local_records(todo, job, max(1, jobs))
        bar = _bar(len(todo), progress)
        last_summary = time.monotonic()
        for it, rec in records:
            writer.write(it, rec)
            if time.monotonic() - last_summary > SUMMARY_EVERY:   # a long batch has a table on the way
                write_summary(out, items, job, figure=False)
                last_summary = time.monotonic()
            result.done += 1
            result.failed += rec.get("error") is not None
            result.audio_seconds += rec.get("duration") or 0.0
            if on_record:
                on_record(it, rec)
            if bar is not None:
                bar.set_postfix_str(f"{result.audio_seconds / 3600:.2f} h audio, {result.failed} failed", refresh=False)
                bar.update(1)
        if bar is not None:
            bar.close()
    result.seconds = time.perf_counter() - t0
    result.rows = write_summary(out, items, job)
    return result


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="recordings", unit="file", file=sys.stderr, smoothing=0.1)


def parse_list(text: str, valid: Iterable[str], what: str) -> tuple:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in valid]
    if bad:
        raise ValueError(f"Unknown {what} {bad}; {what} = {list(valid)}")
    return parts
