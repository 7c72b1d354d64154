"""Score who-spoke analysis on synthetic conversations of 2-4 HELD-OUT speakers, against today's
gender-only analysis and a pitch baseline.

    python -m training.make_conversations --manifest data/ko-speech/dev.jsonl --speakers 2-4 \
        --out data/13/conv-dev --n 10 --seed 2
    python -m training.evaluate_speakers --conversations data/13/conv-dev --out results/diarization_eval

Systems, all on the same speech regions (one VAD pass per file):
* `speakers`: speech.analysis.analyze (diarization, each speaker's gender over all its speech);
* `speakers-tv`: the same with `detect_tv=True` (`analyze --detect-tv`: a speaker found to be a TV
  is left out of the family's speech and shares);
* `gender-only`: analyze(diarize=False), the analysis before speakers (a label per 40 ms frame);
* `pitch`: each speech region's median F0 (speech.pitch.pitch_track, YIN), female above 165 Hz.

With `--manifest data/ko-speech/dev.jsonl`, also one-speaker recordings: each adult dev
speaker's utterances (up to `--monologue-seconds`) with 0.6 s pauses, scored by wrong-gender time
and the number of speakers found (the issue's "invented speakers").

Per file: DER (pyannote.metrics, collar 0.25 s, overlap excluded; a baseline's 'speakers' are
its gender labels), the error of the adult female share in percentage points, the wrong-gender
time (share of found speech where one true speaker talks that gets the other gender), the number
of speakers found, and the real-time factor of analyze (its own VAD pass included).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from speech.analysis import analyze, find_speech
from speech.audio import SAMPLE_RATE, load_audio
from speech.diarize import release_settings
from speech.gender import GenderClassifier
from speech.pitch import pitch_track
from speech.speaker import SpeakerEncoder
from speech.tv import TV_COUNTED
from training.diarization import score

PITCH_THRESHOLD = 165.0
SYSTEMS = ("speakers", "speakers-tv", "gender-only", "pitch")
DEFAULT_SYSTEMS = "speakers,gender-only,pitch"


def pitch_segments(audio, spans):
    out = []
    for s, e in spans:
        _, f0 = pitch_track(audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)], SAMPLE_RATE)
        f = np.nanmedian(f0) if np.isfinite(f0).any() else 0.0
        out.append((s, e, "female" if f > PITCH_THRESHOLD else "male"))
    return out


def run_systems(audio, spans, systems, clf, enc) -> dict:
    """The chosen systems on one recording's speech regions -> {system: (gender segments, speaker
    segments, adult female share, seconds it took or None, extra row fields)}. A speaker reported
    as `tv` is not family speech: its segments are left out."""
    out = {}
    for name, detect_tv in (("speakers", False), ("speakers-tv", True)):
        if name not in systems:
            continue
        rep = analyze(audio, clf, encoder=enc, spans=spans, detect_tv=detect_tv)
        tv = {sp.id for sp in rep.speakers if sp.cls == "tv"}
        fam = [x for x in rep.segments if x.speaker not in tv]
        # without TV detection: does the report warn that speakers sound like a TV (speech.tv.TV_COUNTED)?
        warned = any(w.startswith(TV_COUNTED) for w in rep.warnings)
        out[name] = ([(x.start, x.end, x.gender) for x in fam], [(x.start, x.end, x.speaker) for x in fam],
                     (rep.parents_ratio or (0.0, 0.0))[0], rep.rtf * rep.duration,
                     {"tv_speakers_found": len(tv), "tv_warning": warned})
    if "gender-only" in systems:
        g = analyze(audio, clf, diarize=False, spans=spans)
        segs = [(x.start, x.end, x.gender) for x in g.segments]
        out["gender-only"] = (segs, segs, g.parents_ratio[0] if g.parents_ratio else 0.0, g.rtf * g.duration, {})
    if "pitch" in systems:
        segs = pitch_segments(audio, [(s, e) for s, e in spans if e - s >= 0.15])
        fs = sum(e - s for s, e, x in segs if x == "female")
        ms = sum(e - s for s, e, x in segs if x == "male")
        out["pitch"] = (segs, segs, fs / (fs + ms) if fs + ms else 0.0, None, {})
    return out


def clustering(st) -> str:
    merge = f", clusters within {st.merge} of a larger one merged" if st.merge else ""
    if st.method == "spectral":
        return (f"spectral clustering, clusters split at {st.split}{merge}, average linkage at threshold "
                f"{st.threshold} under {st.spectral_min_blocks} blocks")
    return f"threshold {st.threshold}{merge}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conversations", default="data/13/conv-dev")
    p.add_argument("--variants", default="clean,noise,tv")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--manifest", default=None, help="also score one-speaker recordings of this manifest's adults")
    p.add_argument("--monologue-seconds", type=float, default=120.0)
    p.add_argument("--out", default="results/diarization_eval")
    p.add_argument("--encoder", default=None, help="speaker release (default: the embedded one)")
    p.add_argument("--model", default=None, help="gender release (default: the embedded one, gender-child-ko)")
    p.add_argument("--systems", default=DEFAULT_SYSTEMS,
                   help="which to score (gender-only and pitch do not depend on the speaker release)")
    args = p.parse_args(argv)
    systems = args.systems.split(",")
    if not set(systems) <= set(SYSTEMS):
        p.error(f"--systems: some of {', '.join(SYSTEMS)}, not {args.systems!r}")
    clf, enc = GenderClassifier.load(args.model), SpeakerEncoder.load(args.encoder)
    folder = Path(args.conversations)
    truths = [json.loads(x) for x in open(folder / "truth.jsonl", encoding="utf-8")][:args.limit]
    rows = []
    mono = []
    if args.manifest:
        from training.manifest import normalize_gender, read_manifest

        by = {}
        for r in read_manifest(args.manifest):
            if (r.get("note") or "") != "teen":
                by.setdefault(r["speaker"], (normalize_gender(r["gender"]), []))[1].append(r["audio"])
        for spk, (gender, paths) in sorted(by.items()):
            parts, segs, t = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], 0.5
            for path in paths:
                a = load_audio(path)
                parts += [a, np.zeros(int(0.6 * SAMPLE_RATE), np.float32)]
                segs.append([t, t + len(a) / SAMPLE_RATE, gender, spk])
                t += len(a) / SAMPLE_RATE + 0.6
                if t > args.monologue_seconds:
                    break
            audio = np.concatenate(parts)
            truth = {"name": f"mono-{spk}", "speakers": {spk: gender}, "duration": len(audio) / SAMPLE_RATE,
                     "segments": segs, "female_share": 1.0 if gender == "female" else 0.0}
            spans = find_speech(audio)
            for name, (gs, ss, share, _, _) in run_systems(audio, spans, systems, clf, enc).items():
                sc = score(truth, gs, ss, share)
                mono.append({"speaker": spk, "gender": gender, "system": name, "seconds": round(truth["duration"], 1),
                             "wrong_gender": sc["wrong_gender"], "adult_as_child": sc["adult_as_child"],
                             "speakers_found": sc["speakers_found"]})
                print(json.dumps(mono[-1]), flush=True)
    for t in truths:
        for v in args.variants.split(","):
            path = folder / f"{t['name']}.{v}.flac"
            audio = load_audio(path)
            t0 = time.perf_counter()
            spans = find_speech(audio)
            vad_s = time.perf_counter() - t0
            base = {"conversation": t["name"], "variant": v, "true_speakers": len(t["speakers"]),
                    "duration": round(t["duration"], 1)}
            seconds = len(audio) / SAMPLE_RATE
            for name, (gs, ss, share, took, extra) in run_systems(audio, spans, systems, clf, enc).items():
                rows.append({**base, "system": name, **extra, **score(t, gs, ss, share),
                             "rtf": None if took is None else round((took + vad_s) / seconds, 4)})
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for sysname in SYSTEMS:
        for v in args.variants.split(","):
            rs = [r for r in rows if r["system"] == sysname and r["variant"] == v]
            if not rs:
                continue
            summary[f"{sysname}/{v}"] = {
                "files": len(rs),
                "der": round(float(np.mean([r["der"] for r in rs])), 2),
                "confusion": round(float(np.mean([r["confusion"] for r in rs])), 2),
                "miss": round(float(np.mean([r["miss"] for r in rs])), 2),
                "false_alarm": round(float(np.mean([r["false_alarm"] for r in rs])), 2),
                "share_error_pp": round(float(np.mean([r["share_error_pp"] for r in rs])), 2),
                "share_error_max_pp": round(float(np.max([r["share_error_pp"] for r in rs])), 2),
                "wrong_gender": round(float(np.mean([r["wrong_gender"] for r in rs])), 2),
                "count_right": round(float(np.mean([r["speakers_found"] == r["true_speakers"] for r in rs])), 2),
            }
            summary[f"{sysname}/{v}"]["adult_as_child"] = round(float(np.mean([r["adult_as_child"] for r in rs])), 2)
            if "tv_speakers_found" in rs[0]:
                summary[f"{sysname}/{v}"]["tv_found_files"] = sum(r["tv_speakers_found"] > 0 for r in rs)
                summary[f"{sysname}/{v}"]["tv_warning_files"] = sum(r["tv_warning"] for r in rs)
            kid = [r["child_as_parent"] for r in rs if "child_as_parent" in r]
            if kid:
                summary[f"{sysname}/{v}"]["child_as_parent"] = round(float(np.mean(kid)), 2)
    kids = any("child_as_parent" in r for r in rows)
    load = os.getloadavg()
    mono_summary = {name: {"recordings": len(rs), "wrong_gender": round(float(np.mean([r["wrong_gender"] for r in rs])), 2),
                           "wrong_gender_max": round(float(np.max([r["wrong_gender"] for r in rs])), 2),
                           "adult_as_child": round(float(np.mean([r["adult_as_child"] for r in rs])), 2),
                           "one_speaker_found": round(float(np.mean([r["speakers_found"] == 1 for r in rs])), 2)}
                    for name in SYSTEMS
                    for rs in [[r for r in mono if r["system"] == name]] if rs}
    res = {"conversations": str(folder), "speaker_model": enc.model_name, "gender_model": clf.model_name, "cpu_count": os.cpu_count(), "cpu": platform.machine(),
           "load_average": [round(x, 1) for x in load], "summary": summary, "one_speaker": mono_summary,
           "rows": rows, "one_speaker_rows": mono}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    lines = ["# Who spoke: speakers vs gender-only analysis vs pitch baseline", "",
             f"`python -m training.evaluate_speakers --conversations {folder}"
             + (f" --encoder {args.encoder}" if args.encoder else "")
             + (f" --model {args.model}" if args.model else "")
             + (f" --manifest {args.manifest}" if args.manifest else "")
             + (f" --variants {args.variants}" if args.variants != "clean,noise,tv" else "")
             + (f" --systems {args.systems}" if args.systems != DEFAULT_SYSTEMS else "") + f"` (gender model {clf.model_name}; speaker model {enc.model_name}, "
             f"{clustering(release_settings(enc))}): {len(truths)} synthetic "
             "conversations of 2-4 held-out dev speakers (training/make_conversations.py --speakers 2-4), "
             "variants clean, `noise` (household noise 10 dB SNR) and `tv` (other dev speakers through "
             "training/tv_mix.py's TV chain, 10 dB under the conversation, plus noise at 10 dB; TV speech is not "
             "in the reference, so TV speech found counts as false alarm or confusion). DER by "
             "pyannote.metrics DiarizationErrorRate(collar=0.25, skip_overlap=True) (pyannote's collar is "
             "the total width: +-0.125 s), mean over files. Share error: adult female share, percentage "
             "points. Wrong gender: share of found single-speaker speech given the other gender; adult speech "
             "called child: share of found speech of one adult alone labelled child.", "",
             "| system | variant | files | DER % | confusion % | miss % | false alarm % | share error pp (mean / max) | wrong gender % | adult speech called child % | speaker count right |"
             + (" child speech counted as a parent % |" if kids else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if kids else "")]
    for k, s in summary.items():
        sysname, v = k.split("/")
        lines.append(f"| {sysname} | {v} | {s['files']} | {s['der']:.2f} | {s['confusion']:.2f} | {s['miss']:.2f} | "
                     f"{s['false_alarm']:.2f} | {s['share_error_pp']:.2f} / {s['share_error_max_pp']:.2f} | "
                     f"{s['wrong_gender']:.2f} | {s['adult_as_child']:.2f} | {100 * s['count_right']:.0f}% |"
                     + (f" {s.get('child_as_parent', 0.0):.2f} |" if kids else ""))
    tv_files = [(k, s) for k, s in summary.items() if "tv_found_files" in s]
    if tv_files:
        lines += ["", "Files with speakers the TV rule takes (speech.tv.tv_speakers): with `--detect-tv` (speakers-tv) "
                      "they are reported as `tv`; without it (speakers) they stay family and the report warns: "
                  + "; ".join(f"{k} {s['tv_found_files' if k.startswith('speakers-tv') else 'tv_warning_files']} of "
                              f"{s['files']}" for k, s in tv_files) + "."]
    if mono_summary:
        lines += ["", f"One-speaker recordings (`--manifest {args.manifest}`: each adult dev speaker alone, "
                      f"up to {args.monologue_seconds:g} s):", "",
                  "| system | recordings | wrong-gender time % (mean / max) | called child % | one speaker found |",
                  "|---|---|---|---|---|"]
        for name, m in mono_summary.items():
            lines.append(f"| {name} | {m['recordings']} | {m['wrong_gender']:.2f} / {m['wrong_gender_max']:.2f} | "
                         f"{m['adult_as_child']:.2f} | {100 * m['one_speaker_found']:.0f}% |")
    lines += ["", f"Load average while measuring: {res['load_average']} on {res['cpu_count']} CPUs "
                  "(a busy shared machine: RTFs in the JSON are not speed claims).", "",
              "| conversation | variant | speakers | system | DER % | share error pp | wrong gender % | found |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['conversation']} | {r['variant']} | {r['true_speakers']} | {r['system']} | {r['der']:.2f} | "
                     f"{r['share_error_pp']:.2f} | {r['wrong_gender']:.2f} | {r['speakers_found']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
