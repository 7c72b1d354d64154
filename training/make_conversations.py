"""Synthetic two-parent conversations with known speaking shares, from held-out speakers.

    python -m training.make_conversations --manifest data/ko-speech/dev.jsonl --noise ../shared/data/noise \
        --out data/conversations --n 6

Each conversation pairs one adult female and one adult male speaker of the manifest (teenagers are
not parents here). Turns alternate; a turn is 1-3 of the speaker's utterances (silence trimmed)
with short pauses; between turns a pause of 0.3-1.5 s or, with probability `overlap_prob`, the next
speaker starts 0.2-0.5 s before the previous one ends. Turn lengths are random, so the true
female share differs per conversation. Four variants per conversation:

* `clean`: the conversation alone;
* `noise`: plus household noise at 10 dB SNR (held-out part of the noise clips), no TV;
* `household`: household noise at 10 dB SNR and a TV: speech of *other* held-out speakers (the
  teenager and the adults not in this conversation) running continuously at `--tv-level` dB
  (default -15) relative to the conversation, through the TV chain of training/tv_mix.py
  (music bed, compression, loudspeaker band limit, room reverberation);
* `household5`: the same at 5 dB SNR.

Writes `NAME.VARIANT.flac` and `truth.jsonl` (one line per conversation: true segments, seconds
and female share; overlapping speech counts for both speakers; `tv_segments`: the TV
programme's speech spans, and `tv_chain`: its parameters).

With `--speakers 2-4` a conversation has 2 to 4 adult speakers (at least one of each gender; the
next speaker is any other one), for the diarization scores; `segments` then carry the speaker id
as a fourth field. Two more variants serve them:

* `noise`: household noise only, at 10 dB SNR;
* `tv`: the TV of `household` (training/tv_mix.py's chain), louder: 10 dB below the conversation,
  with household noise at 10 dB SNR.

`--quiet-prob P` makes a pause between turns last 10-40 s with probability P: the family is quiet
and, in the `household` and `tv` variants, the TV talks alone (its speech is not in the reference).
`--far-db D` puts one adult of each conversation across the room: the direct sound D dB down,
through a synthetic room like the TV's (truth `far`: who, how much, the room); the reverberant tail
gives some level back (with D = 8 such a parent measured 2.5-6.9 dB under the loudest speaker). A TV
detector that judged by level or reverberation alone would drop that parent.

With `--children MANIFEST` (rows of gender `child`, e.g. `training/child_voice.py --one-voice`)
one child joins every conversation, made from a speaker who is not one of its adults; its
segments carry gender `child`, and the female share stays the adults' (`child_seconds` apart);
`--child-of mother` makes the child from the conversation's mother instead (a child who sounds
like its parent, the harder case):

    python -m training.child_voice --manifest data/ko-speech/dev.jsonl --out data/child-dev --copies 1 --one-voice --seed 1
    python -m training.make_conversations --manifest data/ko-speech/dev.jsonl --speakers 2-3 \
        --children data/child-dev/manifest.jsonl --out data/conv-family --n 10 --seed 5

    python -m training.make_conversations --manifest data/ko-speech/train.jsonl --speakers 2-4 \
        --out data/13/conv-train --n 12 --seed 1        # tuning (train speakers)
    python -m training.make_conversations --manifest data/ko-speech/dev.jsonl --speakers 2-4 \
        --out data/13/conv-dev --n 12 --seed 2          # scoring (held-out dev speakers)
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speech.audio import SAMPLE_RATE
from training.manifest import CHILD, label_name, normalize_gender, read_manifest
from training.data import load_utterances
from training.noise import HOUSEHOLD, NoiseBank, limit_peak, mix_at_snr, noise_part
from training.tv_mix import add_tv, room, tv_sound

TV_LEVEL_DB = -15.0
TV_ROOM_LEVEL_DB = -10.0


def build_conversation(f_utts, m_utts, rng: random.Random, turns: int, overlap_prob: float):
    """-> (waveform, segments [(start, end, gender)])."""
    pieces = []   # (start_sample, audio, gender)
    t = 0
    gender = rng.choice(["female", "male"])
    prev_end = 0
    for _ in range(turns):
        pool = f_utts if gender == "female" else m_utts
        n_utts = rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0]
        if pieces:
            if rng.random() < overlap_prob:
                t = prev_end - int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
            else:
                t = prev_end + int(rng.uniform(0.3, 1.5) * SAMPLE_RATE)
        for j in range(n_utts):
            a = rng.choice(pool)
            pieces.append((t, a, gender))
            t += len(a)
            if j < n_utts - 1:
                t += int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)
        prev_end = t
        gender = "male" if gender == "female" else "female"
    total = prev_end + int(1.0 * SAMPLE_RATE)
    lead = int(1.0 * SAMPLE_RATE)
    wav = np.zeros(total + lead, dtype=np.float32)
    segments = []
    for start, a, g in pieces:
        wav[lead + start:lead + start + len(a)] += a
        segments.append(((lead + start) / SAMPLE_RATE, (lead + start + len(a)) / SAMPLE_RATE, g))
    return wav, segments


def build_multi(pools: dict, rng: random.Random, turns: int, overlap_prob: float, quiet_prob: float = 0.0,
                quiet_seconds: tuple = (10.0, 40.0)):
    """pools {speaker: utterances} -> (waveform, segments [(start, end, speaker)]); turns go to a
    random other speaker each time. `quiet_prob`: the chance that a pause between turns lasts
    `quiet_seconds` instead (the family quiet; in the TV variants the TV talks alone)."""
    pieces = []
    t = prev_end = 0
    names = sorted(pools)
    who = rng.choice(names)
    for _ in range(turns):
        n_utts = rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0]
        if pieces:
            if rng.random() < overlap_prob:
                t = prev_end - int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
            else:
                t = prev_end + int(rng.uniform(0.3, 1.5) * SAMPLE_RATE)
            if quiet_prob and rng.random() < quiet_prob:
                t = prev_end + int(rng.uniform(*quiet_seconds) * SAMPLE_RATE)
        for j in range(n_utts):
            a = rng.choice(pools[who])
            pieces.append((t, a, who))
            t += len(a)
            if j < n_utts - 1:
                t += int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)
        prev_end = t
        who = rng.choice([x for x in names if x != who])
    lead = int(1.0 * SAMPLE_RATE)
    wav = np.zeros(prev_end + 2 * lead, dtype=np.float32)
    segments = []
    for start, a, spk in pieces:
        wav[lead + start:lead + start + len(a)] += a
        segments.append(((lead + start) / SAMPLE_RATE, (lead + start + len(a)) / SAMPLE_RATE, spk))
    return wav, segments


def speech_seconds(segments, gender: str) -> float:
    return float(sum(e - s for s, e, g in segments if g == gender))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default="data/ko-speech/dev.jsonl")
    p.add_argument("--noise", default="../shared/data/noise")
    p.add_argument("--out", default="data/conversations")
    p.add_argument("--n", type=int, default=6, help="number of conversations")
    p.add_argument("--turns", type=int, default=16)
    p.add_argument("--overlap-prob", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-part", choices=["test", "train"], default="test",
                   help="part of each noise clip (training/train_gender.noise_part): 'train' for conversations "
                        "that fit something (the speaker projection), so the scored ones keep unseen noise")
    p.add_argument("--tv-level", type=float, default=TV_LEVEL_DB, help="TV level relative to the conversation (dB)")
    p.add_argument("--speakers", default=None, metavar="N or A-B",
                   help="adult speakers per conversation (e.g. 2-4); default: one mother, one father")
    p.add_argument("--children", default=None, metavar="MANIFEST",
                   help="with --speakers: one child of this manifest (gender 'child', e.g. training/child_voice.py "
                        "--one-voice) joins every conversation, made from a speaker not among its adults")
    p.add_argument("--child-of", choices=["other", "mother"], default="other",
                   help="--children: the child's voice made from another speaker, or from the conversation's "
                        "mother (the hard case: a child sounds like its parent)")
    p.add_argument("--quiet-prob", type=float, default=0.0,
                   help="with --speakers: the chance that a pause between turns lasts 10-40 s (the family quiet "
                        "while the TV of the household and tv variants talks alone, as at home)")
    p.add_argument("--far-db", type=float, default=0.0, metavar="DB",
                   help="with --speakers: one adult of each conversation talks from across the room, the direct "
                        "sound DB dB down, through a synthetic room like the TV's (RT60 0.3-0.8 s, DRR -3..6 dB): "
                        "a far parent, which TV detection must leave in the family")
    args = p.parse_args(argv)
    if args.far_db and not args.speakers:
        p.error("--far-db needs --speakers")

    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rows = read_manifest(args.manifest)
    audio = load_utterances(rows, trim_db=30)
    by = {}
    for r, a in zip(rows, audio):
        by.setdefault(r["speaker"], {"gender": normalize_gender(r["gender"]), "note": r.get("note") or "", "utts": []})
        by[r["speaker"]]["utts"].append(a)
    females = sorted(s for s, v in by.items() if v["gender"] == "female" and v["note"] != "teen")
    males = sorted(s for s, v in by.items() if v["gender"] == "male" and v["note"] != "teen")
    if not females or not males:
        raise ValueError(f"{args.manifest} needs adult speakers of both genders; has {sorted(by)}")
    bank = noise_part(NoiseBank(args.noise, categories=HOUSEHOLD), args.noise_part)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kids = {}
    if args.children:
        if not args.speakers:
            raise ValueError("--children needs --speakers")
        kid_rows = read_manifest(args.children)
        for r, a in zip(kid_rows, load_utterances(kid_rows, trim_db=30)):
            if label_name(r) == CHILD:
                kids.setdefault(r["speaker"], {"source": r.get("source_speaker"), "utts": []})["utts"].append(a)
        if not kids:
            raise ValueError(f"{args.children} has no rows with gender 'child'")
    if args.speakers:
        lo, _, hi = args.speakers.partition("-")
        return make_multi(by, females, males, int(lo), int(hi or lo), bank, rng, gen, args, out, kids)
    with open(out / "truth.jsonl", "w", encoding="utf-8") as truth:
        for i in range(args.n):
            f, m = females[i % len(females)], males[(i // len(females) + i) % len(males)]
            wav, segs = build_conversation(by[f]["utts"], by[m]["utts"], rng, args.turns, args.overlap_prob)
            tv_speakers = sorted(s for s in by if s not in (f, m))
            tv, tv_spans, chain = tv_sound(len(wav), [a for s in tv_speakers for a in by[s]["utts"]], rng)
            name = f"conv{i:02d}"
            speech = torch.from_numpy(wav)
            with_tv = torch.from_numpy(add_tv(wav, tv, args.tv_level))
            noise = bank.sample(len(wav), gen)
            variants = {"clean": speech, "noise": mix_at_snr(speech, noise, 10.0)}
            for tag, snr in (("household", 10.0), ("household5", 5.0)):
                variants[tag] = mix_at_snr(with_tv, noise, snr)
            for tag, x in variants.items():
                x = limit_peak(x.numpy())
                sf.write(str(out / f"{name}.{tag}.flac"), x, SAMPLE_RATE, subtype="PCM_16")
            fs, ms = speech_seconds(segs, "female"), speech_seconds(segs, "male")
            truth.write(json.dumps({
                "name": name, "female_speaker": f, "male_speaker": m, "tv_speakers": tv_speakers,
                "duration": len(wav) / SAMPLE_RATE, "female_seconds": fs, "male_seconds": ms,
                "female_share": fs / (fs + ms), "variants": sorted(variants),
                "segments": [[round(s, 3), round(e, 3), g] for s, e, g in segs],
                "tv_level_db": args.tv_level, "tv_chain": chain.to_dict(),
                "tv_segments": [[round(s, 3), round(e, 3)] for s, e in tv_spans]}) + "\n")
            print(f"{name}: {f}+{m}, {len(wav) / SAMPLE_RATE:.0f} s, female share {fs / (fs + ms):.3f}", flush=True)


def make_multi(by, females, males, lo, hi, bank, rng, gen, args, out, kids=None):
    if not 2 <= lo <= hi:
        raise ValueError(f"--speakers needs 2 <= A <= B, got {lo}-{hi}")
    if hi > len(females) + len(males):
        raise ValueError(f"--speakers {hi} but the manifest has {len(females) + len(males)} adult speakers")
    with open(out / "truth.jsonl", "w", encoding="utf-8") as truth:
        for i in range(args.n):
            k = rng.randint(lo, hi)
            chosen = [rng.choice(females), rng.choice(males)]
            chosen += rng.sample([s for s in females + males if s not in chosen], k - 2)
            pools = {s: by[s]["utts"] for s in chosen}
            gender = {s: by[s]["gender"] for s in chosen}
            if kids:
                if args.child_of == "mother":        # chosen[0] is the conversation's first woman
                    fits = [c for c, v in kids.items() if v["source"] == chosen[0]]
                else:
                    fits = [c for c, v in kids.items() if v["source"] not in chosen]
                kid = rng.choice(sorted(fits) or sorted(kids))
                pools[kid], gender[kid] = kids[kid]["utts"], CHILD
            far = None
            if args.far_db:      # one adult across the room: quieter, through the TV's kind of room
                far = {"speaker": rng.choice(chosen), "db": args.far_db, "rt60": rng.uniform(0.3, 0.8),
                       "drr_db": rng.uniform(-3, 6)}
                gain = np.float32(10 ** (-args.far_db / 20))
                pools[far["speaker"]] = [room(u, far["rt60"], far["drr_db"], rng) * gain for u in pools[far["speaker"]]]
            wav, segs = build_multi(pools, rng, args.turns, args.overlap_prob, args.quiet_prob)
            others = sorted(s for s in by if s not in chosen)
            tv, tv_spans, chain = tv_sound(len(wav), [a for s in others for a in by[s]["utts"]], rng)
            speech = torch.from_numpy(wav)
            noise = bank.sample(len(wav), gen)
            variants = {"clean": speech, "noise": mix_at_snr(speech, noise, 10.0),
                        "household": mix_at_snr(torch.from_numpy(add_tv(wav, tv, args.tv_level)), noise, 10.0),
                        "tv": mix_at_snr(torch.from_numpy(add_tv(wav, tv, TV_ROOM_LEVEL_DB)), noise, 10.0)}
            name = f"conv{i:02d}"
            for tag, x in variants.items():
                x = limit_peak(x.numpy())
                sf.write(str(out / f"{name}.{tag}.flac"), x, SAMPLE_RATE, subtype="PCM_16")
            segs = [(s, e, gender[spk], spk) for s, e, spk in segs]
            fs, ms = speech_seconds([x[:3] for x in segs], "female"), speech_seconds([x[:3] for x in segs], "male")
            truth.write(json.dumps({
                "name": name, "speakers": gender, "tv_speakers": others, "tv_chain": chain.to_dict(), "far": far,
                "tv_level_db": {"household": args.tv_level, "tv": TV_ROOM_LEVEL_DB},
                "tv_segments": [[round(s, 3), round(e, 3)] for s, e in tv_spans],
                "duration": len(wav) / SAMPLE_RATE, "female_seconds": fs, "male_seconds": ms,
                "child_seconds": speech_seconds([x[:3] for x in segs], "child"),
                "female_share": fs / (fs + ms), "variants": sorted(variants),
                "segments": [[round(s, 3), round(e, 3), g, spk] for s, e, g, spk in segs]}) + "\n")
            print(f"{name}: {'+'.join(gender)}, {len(wav) / SAMPLE_RATE:.0f} s, female share {fs / (fs + ms):.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
