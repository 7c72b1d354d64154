#!/bin/bash
# Whisper base LoRA fine-tune for a lent H200 (its image: torch 2.11, transformers 5.17, peft; no
# ctranslate2, no soundfile). Weights travel in CTranslate2 form and training.ct2_whisper reads them
# with numpy alone. A call carries at most 64 MiB and model.bin is 139 MiB, so it travels in three
# calls made back to back (the machine goes back after 30 s idle); files written outside the
# repository stay on the machine while it is held.
#
# Here, once (see results/whisper-finetune.md, "On a lent GPU"):
#   python -m training.pack_for_device --manifest data/ko-speech/train.jsonl data/ko-speech/dev.jsonl \
#       --noise-dir ../shared/data/noise --out .gpu/data                          # 26.5 MiB of Opus
#   bash training/gpu_whisper_finetune.sh split ~/.cache/korean-speech/whisper-base/model   # .gpu/wb1 .gpu/wb2 .gpu/wb3
#   soundfile, cffi, pycparser as wheels in .whl (the device README's pip download line)
# On the machine (three run calls):
#   run(carry=[".gpu/wb1"], command="bash training/gpu_whisper_finetune.sh receive .gpu/wb1")
#   run(carry=[".gpu/wb2"], command="bash training/gpu_whisper_finetune.sh receive .gpu/wb2")
#   run(carry=[".gpu/wb3", ".gpu/data", ".whl"], timeout_s=560,
#       command="bash training/gpu_whisper_finetune.sh train .gpu/wb3")
# $OUT then holds best/ (the LoRA adapter, ~6 MB), train.log, metrics.json and stdout. Back here:
#   python -m training.whisper_lora --base ~/.cache/korean-speech/whisper-base/model --adapter OUT/best --out runs/gpu-whisper/ct2
#
# In miniature on a CPU (what tests/test_finetune_whisper.py and the session that wrote this ran):
#   MINI=1 DEVICE=cpu D=data NOISE=../shared/data/noise WB=~/.cache/korean-speech/whisper-base/model \
#       bash training/gpu_whisper_finetune.sh train
set -u
MODE=${1:?usage: gpu_whisper_finetune.sh split|receive|train [DIR]}
STAGE=${STAGE:-/tmp/whisper-base}

case $MODE in
split)
  SRC=${2:?split needs the CTranslate2 model folder}
  mkdir -p .gpu/wb1 .gpu/wb2 .gpu/wb3
  split -b 50M -d "$SRC/model.bin" .gpu/model.bin.part-
  mv .gpu/model.bin.part-00 .gpu/wb1/ && mv .gpu/model.bin.part-01 .gpu/wb2/ && mv .gpu/model.bin.part-02 .gpu/wb3/
  cp "$SRC/config.json" "$SRC/tokenizer.json" .gpu/wb3/
  sha1sum "$SRC/model.bin" | cut -d' ' -f1 > .gpu/wb3/model.bin.sha1
  du -sh .gpu/wb1 .gpu/wb2 .gpu/wb3
  exit 0 ;;
receive)
  mkdir -p "$STAGE" && cp "${2:?receive needs the carried folder}"/* "$STAGE"/ && ls -la "$STAGE"
  exit 0 ;;
train) ;;
*) echo "unknown mode $MODE: split, receive or train" >&2; exit 2 ;;
esac

if [ -z "${WB:-}" ]; then      # on the machine: reassemble model.bin from the three carried parts
  [ -n "${2:-}" ] && mkdir -p "$STAGE" && cp "$2"/* "$STAGE"/
  cat "$STAGE"/model.bin.part-0? > "$STAGE/model.bin" || exit 1
  [ "$(sha1sum "$STAGE/model.bin" | cut -d' ' -f1)" = "$(cat "$STAGE/model.bin.sha1")" ] || { echo "model.bin: bad sha1" >&2; exit 1; }
  WB=$STAGE
fi
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu-whisper}
D=${D:-.gpu/data}
NOISE=${NOISE:-$D/noise}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
$PY -c "import torch, transformers, peft, soundfile; print(torch.__version__, transformers.__version__, peft.__version__, torch.cuda.is_available())" || exit 1
if [ -n "${MINI:-}" ]; then   # the same path, sized for a CPU check
  SIZE="--steps 2 --batch-size 1 --warmup-steps 1 --eval-every 1 --eval-stride 71 --eval-conditions clean,noise5 --eval-batch 2 --threads 2"
else                          # ~2.4 h of noisy audio seen in 6 minutes; all of dev every 100 steps
  SIZE="--steps 1500 --batch-size 16 --warmup-steps 50 --eval-every 100 --eval-stride 1 --eval-batch 48 --patience 3 --time-budget 6"
fi
$PY -m training.finetune_whisper --base "$WB" --device "$DEVICE" --no-ct2 \
  --lora-rank 16 --encoder-train-layers 2 --lr 5e-4 --noise-dir "$NOISE" --noise-prob 0.5 --reverb-prob 0.3 \
  --train "$D/ko-speech/train.jsonl" --eval-dev "$D/ko-speech/dev.jsonl" $SIZE --out "$OUT/run" 2>&1 | tee "$OUT/stdout.txt"
rc=${PIPESTATUS[0]}
cp -r "$OUT/run/best" "$OUT/best" && cp "$OUT/run/train.log" "$OUT/run/metrics.json" "$OUT/" 2>/dev/null
[ -n "${MINI:-}" ] || rm -rf "$OUT/run"    # only what comes back: best/ (adapter), logs
exit $rc
