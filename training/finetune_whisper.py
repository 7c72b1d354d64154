"""Fine-tune Whisper on our manifests with household-noise augmentation, then convert for serving.

    python -m training.finetune_whisper --base openai/whisper-small \
        --train data/ko-speech/train.jsonl --dev data/ko-speech/dev.jsonl \
        --noise-dir ../shared/data/noise --out runs/whisper-small-ko --steps 2000

    # Whisper base from its CTranslate2 folder (training.ct2_whisper converts it), LoRA, evaluated
    # clean / 5 dB noise / far-field on a fixed dev subset every 25 steps, early stop on noisy dev:
    python -m training.finetune_whisper --base ~/.cache/korean-speech/whisper-base/model --lora-rank 16 \
        --train data/ko-speech/train.jsonl --eval-dev data/ko-speech/dev.jsonl --eval-every 25 --patience 3 \
        --noise-dir ../shared/data/noise --reverb-prob 0.3 --out runs/whisper-base-lora

The study fine-tuned Whisper-tiny on clean speech: clean CER went from 29.7% to 19.5%, but with
household noise it collapsed to over 100%. Here every training utterance is mixed with a random
household noise clip at a random SNR with probability --noise-prob (training.noise, the same
bank and mixing as DeepSpeech2), and the dev set is scored clean and at a fixed SNR, so the
collapse is visible in the numbers this script writes.

Writes to --out: `hf/` (transformers model, tokenizer, feature extractor), `ct2/` (CTranslate2,
int8 by default: what `python -m speech transcribe --engine whisper --model OUT/ct2` loads),
`train.log` (JSON lines), `metrics.json`, and with `--eval-dev` `best/` (the kept weights: a peft
adapter with `--lora-rank`, else a full safetensors state).

`--eval-dev` scores the model during training (greedy, transformers) on every `--eval-stride`-th
dev utterance in each of `--eval-conditions`, built exactly as `training.evaluate_stt` builds
them (same seeds, so the same audio as the results files). The step-0 evaluation is the
zero-shot baseline. The kept checkpoint (`best/`) is the one with the lowest mean CER over all
conditions, not over clean alone; training stops when the noisy conditions' mean CER has not
improved for `--patience` evaluations. The final model (`hf/`, `ct2/`) is built from `best/`.

`--lora-rank R` trains LoRA adapters (peft) on the attention and feed-forward projections of the
encoder and the decoder, the base weights frozen; `best/` then holds only the adapter
(`adapter_model.safetensors`, a few MB), which `training.whisper_lora` merges into the base.

`--tiny-random` builds a tiny randomly initialised Whisper from a WhisperConfig (no download;
the tokenizer comes from --tokenizer, a folder with Whisper's tokenizer.json such as the one
`python -m training.fetch_whisper_base` writes) to test the whole path on a CPU in seconds.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from speech.audio import SAMPLE_RATE, load_audio
from speech.hub import tilde
from speech.metrics import error_counts, rates
from training.ct2_whisper import convert_to_ct2, load_transformers_whisper
from training.data import load_utterances
from training.manifest import read_manifest
from training.noise import NoiseBank, limit_peak, mix_at_snr, synthetic_rir

CHUNK_SECONDS = 30  # Whisper's input window


@dataclass(frozen=True)
class FinetuneConfig:
    train: str
    dev: Optional[str] = None
    out: str = "runs/whisper-ko"
    base: Optional[str] = None              # HF model id or folder (transformers format), or a CTranslate2 folder
    tiny_random: bool = False
    tokenizer: Optional[str] = None         # folder with tokenizer.json (for --tiny-random)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-5
    warmup_steps: int = 200
    weight_decay: float = 0.0
    max_duration: float = 30.0
    noise_dir: Optional[str] = None
    noise_prob: float = 0.5
    snr_min: float = 0.0
    snr_max: float = 20.0
    dev_snr: float = 5.0                    # fixed SNR of the noisy dev score
    dev_limit: int = 0                      # score only the first N dev utterances (0 = all)
    quantization: str = "int8"
    reverb_prob: float = 0.0                # share of training utterances given a synthetic room (as train_ds2)
    lora_rank: int = 0                      # 0: full fine-tune; >0: LoRA adapters of this rank
    lora_alpha: float = 0.0                 # 0: 2 * rank
    lora_dropout: float = 0.05
    lora_targets: str = "q_proj,k_proj,v_proj,out_proj,fc1,fc2"
    encoder_train_layers: int = -1          # train only the top N encoder layers (-1: all, 0: frozen encoder)
    ct2: bool = True                        # convert the result to CTranslate2 (off where ctranslate2 is absent)
    eval_dev: Optional[str] = None          # dev manifest scored during training
    eval_stride: int = 9                    # fixed subset: every Nth dev utterance (keeps every speaker)
    eval_every: int = 0                     # steps between evaluations (0: none during training)
    eval_conditions: str = "clean,noise5,farfield"
    eval_batch: int = 8
    eval_max_tokens: int = 224              # cap per utterance (dev utterances are < 30 s; loops stop here)
    eval_seed: int = 2024                   # training.evaluate_stt's default: same audio as results/
    patience: int = 0                       # evaluations without a better noisy CER before stopping (0: never)
    time_budget: float = 0.0                # minutes of training before stopping (0: no limit)
    threads: int = 0                        # torch threads (0: torch's default)
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    seed: int = 0

    def __post_init__(self):
        if self.tiny_random == bool(self.base):
            raise ValueError("give exactly one of --base MODEL and --tiny-random")
        if self.tiny_random and not self.tokenizer:
            raise ValueError("--tiny-random needs --tokenizer DIR (a folder with Whisper's tokenizer.json)")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError("--noise-prob must be within [0, 1]")
        if self.noise_dir and not (Path(self.noise_dir) / "manifest.tsv").exists():
            raise ValueError(f"--noise-dir {self.noise_dir} has no manifest.tsv")
        if self.snr_min > self.snr_max:
            raise ValueError("--snr must be 'min,max' with min <= max")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1")
        if not 0 < self.max_duration <= CHUNK_SECONDS:
            raise ValueError(f"--max-duration must be within (0, {CHUNK_SECONDS}] seconds")
        if not 0 <= self.reverb_prob <= 1:
            raise ValueError("--reverb-prob must be within [0, 1]")
        if self.lora_rank < 0:
            raise ValueError("--lora-rank must be >= 0 (0 = full fine-tune)")
        if self.eval_every and not self.eval_dev:
            raise ValueError("--eval-every needs --eval-dev MANIFEST")
        if self.patience and not self.eval_every:
            raise ValueError("--patience needs --eval-every N")
        from training.conditions import parse_condition

        for c in self.eval_conditions.split(","):
            if parse_condition(c)[0] != "clean" and self.eval_dev and not self.noise_dir:
                raise ValueError(f"--eval-conditions {c} needs --noise-dir")


def parse_args(argv=None) -> FinetuneConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="training manifest (JSONL)")
    p.add_argument("--dev", default=None, help="dev manifest (JSONL), scored clean and noisy after training")
    p.add_argument("--out", default="runs/whisper-ko")
    p.add_argument("--base", default=None, help="transformers Whisper: Hub id (openai/whisper-small) or folder")
    p.add_argument("--tiny-random", action="store_true", help="tiny random Whisper from a config (tests)")
    p.add_argument("--tokenizer", default=None, help="folder with Whisper's tokenizer.json (for --tiny-random)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--max-duration", type=float, default=30.0, help="skip longer utterances (seconds)")
    p.add_argument("--noise-dir", default=None, help="noise folder with manifest.tsv (e.g. ../shared/data/noise)")
    p.add_argument("--noise-prob", type=float, default=0.5)
    p.add_argument("--snr", default="0,20", help="SNR range in dB for training noise, 'min,max'")
    p.add_argument("--dev-snr", type=float, default=5.0)
    p.add_argument("--dev-limit", type=int, default=0)
    p.add_argument("--quantization", default="int8", help="CTranslate2 weight type (int8, float16, float32, ...)")
    p.add_argument("--reverb-prob", type=float, default=0.0, help="share of training utterances given a synthetic room")
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (peft); 0 = full fine-tune")
    p.add_argument("--lora-alpha", type=float, default=0.0, help="LoRA alpha (0: 2 * rank)")
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,out_proj,fc1,fc2")
    p.add_argument("--encoder-train-layers", type=int, default=-1,
                   help="train only the top N encoder layers (-1: all; 0: encoder frozen). Frozen lower layers "
                        "keep no activations for backward, which is most of a CPU step's cost")
    p.add_argument("--no-ct2", dest="ct2", action="store_false", help="skip the CTranslate2 conversion")
    p.add_argument("--eval-dev", default=None, help="dev manifest scored during training (fixed subset)")
    p.add_argument("--eval-stride", type=int, default=9, help="every Nth dev utterance is in the subset")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: none)")
    p.add_argument("--eval-conditions", default="clean,noise5,farfield")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--eval-max-tokens", type=int, default=224, help="most tokens generated per dev utterance")
    p.add_argument("--eval-seed", type=int, default=2024)
    p.add_argument("--patience", type=int, default=0, help="stop after N evaluations without a better noisy CER")
    p.add_argument("--time-budget", type=float, default=0.0, help="minutes of training (0: no limit)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    snr = [float(x) for x in a.snr.split(",")]
    if len(snr) != 2:
        p.error("--snr must be 'min,max'")
    kw = {k: v for k, v in vars(a).items() if k not in ("snr", "device")}
    if a.device:
        kw["device"] = a.device
    return FinetuneConfig(**kw, snr_min=snr[0], snr_max=snr[1])


# -- model -------------------------------------------------------------------------------------

def tiny_random_model(tokenizer):
    """A 2+2-layer, 64-wide Whisper with the real vocabulary, randomly initialised."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    sot, eot, notimestamps = ids("<|startoftranscript|>"), ids("<|endoftext|>"), ids("<|notimestamps|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot)
    model = WhisperForConditionalGeneration(config)
    languages = {t: i for t, i in tokenizer.get_added_vocab().items() if re.fullmatch(r"<\|[a-z]{2,3}(_[a-z]+)?\|>", t)}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        no_timestamps_token_id=notimestamps, is_multilingual=True, lang_to_id=languages,
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        suppress_tokens=[], begin_suppress_tokens=[ids(" "), eot], max_length=448)
    return model


def load_model_and_processor(cfg: FinetuneConfig):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    if cfg.tiny_random:
        tok_file = Path(cfg.tokenizer) / "tokenizer.json"
        if not tok_file.exists():
            raise FileNotFoundError(f"{tok_file} not found (python -m training.fetch_whisper_base writes one)")
        tokenizer = WhisperTokenizerFast(tokenizer_file=str(tok_file), language="korean", task="transcribe",
                                         predict_timestamps=False)
        return tiny_random_model(tokenizer), tokenizer, WhisperFeatureExtractor(feature_size=80)
    if (Path(cfg.base) / "model.bin").exists():  # a CTranslate2 folder: real Whisper weights we can read
        return load_transformers_whisper(cfg.base)
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(cfg.base, language="korean", task="transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(cfg.base)
    return model, processor.tokenizer, processor.feature_extractor


# -- data --------------------------------------------------------------------------------------

class Batcher:
    """Decoded training audio in memory; batches of log-mel inputs and label ids, noise mixed in."""

    def __init__(self, rows, tokenizer, feature_extractor, cfg: FinetuneConfig, noise: Optional[NoiseBank]):
        self.audio = load_utterances(rows, trim_db=0)
        self.labels = [self._label_ids(tokenizer, r.get("raw_text") or r["text"]) for r in rows]
        self.fe, self.cfg, self.noise = feature_extractor, cfg, noise
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        self.pad = -100

    @staticmethod
    def _label_ids(tokenizer, text: str) -> list[int]:
        # tokenizer(text) = <|startoftranscript|><|ko|><|transcribe|><|notimestamps|> text <|endoftext|>;
        # the model prepends decoder_start_token_id (<|startoftranscript|>) itself.
        return tokenizer(text).input_ids[1:]

    def augment(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(wav)
        if self.cfg.reverb_prob and self.rng.random() < self.cfg.reverb_prob:
            import torchaudio.functional as AF

            rir = synthetic_rir(0.2 + 0.6 * self.rng.random(), SAMPLE_RATE, self.gen, "cpu")  # as train_ds2
            x = AF.fftconvolve(x, rir)[: len(x)]
        if self.noise is None or self.rng.random() >= self.cfg.noise_prob:
            return limit_peak(x).numpy()
        snr = self.rng.uniform(self.cfg.snr_min, self.cfg.snr_max)
        return mix_at_snr(x, self.noise.sample(len(x), self.gen), snr).numpy()

    def batch(self, idx: list[int]):
        wavs = [self.augment(self.audio[i]) for i in idx]
        feats = self.fe(wavs, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        n = max(len(self.labels[i]) for i in idx)
        labels = torch.full((len(idx), n), self.pad, dtype=torch.long)
        for row, i in enumerate(idx):
            labels[row, :len(self.labels[i])] = torch.tensor(self.labels[i])
        return feats, labels

    def epochs(self):
        order = list(range(len(self.audio)))
        while True:
            self.rng.shuffle(order)
            for b in range(0, len(order), self.cfg.batch_size):
                yield order[b:b + self.cfg.batch_size]


def lr_at(step: int, cfg: FinetuneConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * max(0.0, 1.0 - progress)


# -- scoring --------------------------------------------------------------------------------------

def score(engine, rows, noise: Optional[NoiseBank], snr: float, seed: int) -> dict:
    """CER/WER of `engine` on rows, clean (noise None) or mixed at a fixed SNR (same noise every run)."""
    gen = torch.Generator().manual_seed(seed)
    refs, hyps = [], []
    for r in rows:
        wav = load_audio(r["audio"])
        if noise is not None:
            wav = mix_at_snr(torch.from_numpy(wav), noise.sample(len(wav), gen), snr).numpy()
        refs.append(r.get("raw_text") or r["text"])
        hyps.append(engine.transcribe(wav).text)
    return {**{k: round(v, 4) for k, v in rates(error_counts(refs, hyps)).items()}, "utterances": len(rows)}


# -- evaluation during training ----------------------------------------------------------------

class DevSubset:
    """A fixed dev subset in each condition (training.evaluate_stt's audio), scored greedily."""

    def __init__(self, cfg: FinetuneConfig):
        from training.conditions import ConditionSet

        rows = read_manifest(cfg.eval_dev)[::cfg.eval_stride]
        self.conditions = cfg.eval_conditions.split(",")
        self.refs = [r.get("raw_text") or r["text"] for r in rows]
        sets = ConditionSet(rows, cfg.noise_dir, cfg.eval_seed)
        self.audio = {c: sets.audio(c) for c in self.conditions}
        self.seconds = sum(len(a) for a in sets.clean) / SAMPLE_RATE
        self.batch, self.max_tokens = cfg.eval_batch, cfg.eval_max_tokens

    def transcribe(self, model, tokenizer, fe, audios, device) -> list[str]:
        hyps = []
        for b in range(0, len(audios), self.batch):
            feats = fe(audios[b:b + self.batch], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            ids = model.generate(feats.to(device), language="ko", task="transcribe", num_beams=1, do_sample=False,
                                 return_timestamps=False, max_new_tokens=self.max_tokens)
            hyps += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return hyps

    @torch.no_grad()
    def score(self, model, tokenizer, fe, device) -> dict:
        """CER in % per condition, plus `mean` (all conditions) and `noisy` (all but clean)."""
        was_training = model.training
        model.eval()
        cer = {}
        for c in self.conditions:
            counts = error_counts(self.refs, self.transcribe(model, tokenizer, fe, self.audio[c], device))
            cer[c] = round(100 * rates(counts)["cer"], 2)
        model.train(was_training)
        noisy = [cer[c] for c in self.conditions if c != "clean"] or list(cer.values())
        return {**cer, "mean": round(float(np.mean(list(cer.values()))), 2), "noisy": round(float(np.mean(noisy)), 2)}


# -- LoRA ---------------------------------------------------------------------------------------

def trained_encoder_layers(model, cfg: FinetuneConfig) -> list[int]:
    n = model.config.encoder_layers
    k = n if cfg.encoder_train_layers < 0 else min(cfg.encoder_train_layers, n)
    return list(range(n - k, n))


def add_lora(model, cfg: FinetuneConfig):
    """Wrap the projections in LoRA adapters (in place); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    names = "|".join(re.escape(t) for t in cfg.lora_targets.split(","))
    enc = "|".join(str(i) for i in trained_encoder_layers(model, cfg))
    # peft full-matches a string target against module names
    target = rf".*decoder\.layers\.\d+\..*({names})" + (rf"|.*encoder\.layers\.({enc})\..*({names})" if enc else "")
    lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank, lora_dropout=cfg.lora_dropout,
                      target_modules=target, bias="none")
    return get_peft_model(model, lcfg)


def freeze_lower_encoder(model, cfg: FinetuneConfig) -> None:
    """Full fine-tune: the conv front end and the encoder layers below the trained ones stay fixed."""
    keep = set(trained_encoder_layers(model, cfg))
    enc = model.model.encoder
    frozen = [enc.conv1, enc.conv2, enc.embed_positions] + [l for i, l in enumerate(enc.layers) if i not in keep]
    if cfg.encoder_train_layers >= 0:
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)
    if cfg.encoder_train_layers == 0:
        enc.layer_norm.requires_grad_(False)


def save_best(model, out: Path, cfg: FinetuneConfig, record: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if cfg.lora_rank:
        model.save_pretrained(out)          # peft: adapter_model.safetensors + adapter_config.json
    else:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                   if k != "proj_out.weight"}, str(out / "model.safetensors"))
    (out / "best.json").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")


def load_best(model, out: Path, cfg: FinetuneConfig):
    """The model with best/'s weights; LoRA adapters merged, so it is a plain Whisper again."""
    from safetensors.torch import load_file

    if cfg.lora_rank:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(out / "adapter_model.safetensors")))
        return model.merge_and_unload()
    state = load_file(str(out / "model.safetensors"))
    model.load_state_dict(state, strict=False)  # proj_out is tied to embed_tokens
    return model


# -- main --------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    cfg = parse_args(argv)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer, fe = load_model_and_processor(cfg)
    model.to(cfg.device).train()
    if cfg.lora_rank:
        model = add_lora(model, cfg)
    else:
        freeze_lower_encoder(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    n_train, n_all = sum(p.numel() for p in params), sum(p.numel() for p in model.parameters())
    rows = [r for r in read_manifest(cfg.train) if r.get("duration", 0) <= cfg.max_duration]
    if not rows:
        raise ValueError(f"no training utterances of at most {cfg.max_duration} s in {cfg.train}")
    noise = NoiseBank(cfg.noise_dir) if cfg.noise_dir and (cfg.noise_prob > 0 or cfg.eval_dev) else None
    data = Batcher(rows, tokenizer, fe, cfg, noise if cfg.noise_prob > 0 else None)
    dev = DevSubset(cfg) if cfg.eval_every else None
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = data.epochs()
    evals, best, since_noisy_best, best_noisy, stop = [], None, 0, float("inf"), ""
    command = "python -m training.finetune_whisper " + " ".join(argv if argv is not None else sys.argv[1:])
    command = tilde(command)

    def log(rec):
        logf.write(json.dumps(rec, ensure_ascii=False) + "\n")
        logf.flush()
        print(json.dumps(rec, ensure_ascii=False), file=sys.stderr)

    def evaluate(step):
        nonlocal best, since_noisy_best, best_noisy
        t = time.time()
        cer = dev.score(model, tokenizer, fe, cfg.device)
        rec = {"eval_step": step, "cer": cer, "eval_s": round(time.time() - t, 1), "train_s": round(train_s, 1)}
        evals.append(rec)
        if best is None or cer["mean"] < best["cer"]["mean"]:
            best = rec
            save_best(model, out / "best", cfg, rec)
        if cer["noisy"] < best_noisy:
            best_noisy, since_noisy_best = cer["noisy"], 0
        else:
            since_noisy_best += 1
        log({**rec, "best_step": best["eval_step"]})

    t0, train_s, loss, step = time.time(), 0.0, float("nan"), 0
    print(json.dumps({"params_trained": n_train, "params_total": n_all, "train_utterances": len(rows),
                      "eval_utterances": len(dev.refs) if dev else 0, "eval_seconds": round(dev.seconds, 1) if dev else 0,
                      "command": command}, ensure_ascii=False), file=sys.stderr)
    with open(out / "train.log", "a", encoding="utf-8") as logf:
        if dev:
            evaluate(0)
        for step in range(1, cfg.steps + 1):
            ts = time.time()
            feats, labels = data.batch(next(batches))
            for g in opt.param_groups:
                g["lr"] = lr_at(step - 1, cfg)
            loss_t = model(input_features=feats.to(cfg.device), labels=labels.to(cfg.device)).loss
            opt.zero_grad(set_to_none=True)
            loss_t.backward()
            loss = loss_t.item()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            train_s += time.time() - ts
            if (step - 1) % 10 == 0 or step == cfg.steps:
                log({"step": step - 1, "loss": round(loss, 4), "lr": opt.param_groups[0]["lr"],
                     "elapsed_s": round(time.time() - t0, 1), "s_per_step": round(train_s / step, 2)})
            if dev and step % cfg.eval_every == 0:
                evaluate(step)
                if cfg.patience and since_noisy_best >= cfg.patience:
                    stop = f"noisy dev CER did not improve for {cfg.patience} evaluations"
                    break
            if cfg.time_budget and train_s > 60 * cfg.time_budget:
                stop = f"time budget of {cfg.time_budget:g} min of training reached"
                break
        if dev and evals[-1]["eval_step"] != step:
            evaluate(step)
        if stop:
            log({"stopped": stop, "step": step})
    model.eval()
    if dev:
        model = load_best(model, out / "best", cfg)
    elif cfg.lora_rank:
        model = model.merge_and_unload()
    hf_dir = out / "hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    fe.save_pretrained(hf_dir)
    ct2_dir = convert_to_ct2(hf_dir, out / "ct2", cfg.quantization) if cfg.ct2 else None
    metrics = {"config": asdict(cfg), "steps": step, "final_loss": round(loss, 4), "stopped": stop or "steps done",
               "train_utterances": len(rows), "params_trained": n_train, "train_s": round(train_s, 1),
               "command": command}
    if dev:
        metrics.update(evals=evals, best=best)
    if cfg.dev and ct2_dir:
        from speech.whisper_engine import WhisperEngine

        dev_rows = read_manifest(cfg.dev)[:cfg.dev_limit or None]
        engine = WhisperEngine(str(ct2_dir))
        metrics["dev_clean"] = score(engine, dev_rows, None, 0.0, cfg.seed)
        if noise is not None:
            metrics[f"dev_noise_snr{cfg.dev_snr:g}"] = score(engine, dev_rows, noise, cfg.dev_snr, cfg.seed)
    (out / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return metrics


if __name__ == "__main__":
    main()
