#!/bin/bash
# Training throughput on a lent GPU (issue: 1,000 hours, a fed GPU). Prepare here, carry, run there:
#   python -m training.pack_for_device --manifest data/ko-speech/train.jsonl data/ko-speech/dev.jsonl \
#       --noise-dir ../shared/data/noise --out .gpu/data                       # Opus copies, ~27 MiB
#   pip download --no-deps -d .whl soundfile cffi pycparser                     # the GPU image lacks soundfile
#   device run: bash training/gpu_throughput.sh      (carry: .gpu/data .whl; writes $OUT/benchmark-train.*)
#   here, in miniature: SKIP_PIP=1 DEVICE=cpu D=data STEPS=2 WORKERS=1 BATCH=40 HOURS=0.2 OUT=/tmp/gt bash training/gpu_throughput.sh
# Measures, with bfloat16 autocast and 12 DataLoader workers: the input pipeline per worker on that
# machine's CPUs, then train_ds2's own loop for the 3.8M model and the study-size 5 x BiLSTM-1024,
# with the share of step time spent waiting for data and the hours a 1,000-hour epoch would take.
set -u
OUT=${OUT:-results}
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
D=${D:-.gpu/data}
NOISE=${NOISE:-$D/noise}
mkdir -p $OUT
$PY -c "import torch, soundfile; print(torch.__version__, soundfile.__version__, torch.cuda.is_available())" || exit 1
$PY -m training.synth_manifest --source $D/ko-speech/train.jsonl --hours ${HOURS:-20} --out $OUT/synth/train.jsonl || exit 1
SMI=
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    # GPU utilisation beside the run (one process uses the GPU, so it is not shared)
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 5 > $OUT/nvidia-smi.csv &
    SMI=$!
fi
timeout ${LIMIT:-480} $PY -m training.benchmark_train --manifest $OUT/synth/train.jsonl --noise-dir $NOISE \
    --device $DEVICE --presets small,study --steps ${STEPS:-150} --workers ${WORKERS:-12} --pipeline-workers 0,1,4 \
    --pipeline-batches ${PIPE_BATCHES:-60} --batch-seconds ${BATCH:-320} --train-args "--threads 4" \
    --out $OUT/benchmark-train
rc=$?
[ -z "$SMI" ] || kill $SMI
exit $rc
