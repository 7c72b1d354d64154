#!/bin/bash
# One lent-GPU session: three DS2 runs time-sharing the GPU, 7 minutes each.
[ -n "$SKIP_PIP" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, torchaudio, soundfile; print(torch.__version__, torchaudio.__version__, soundfile.__version__, torch.cuda.is_available())" || exit 1
D=.gpu/data
COMMON="--train $D/ko-speech/train.jsonl --dev $D/ko-speech/dev.jsonl --unit jamo --noise-dir $D/noise --snr 0,20 --epochs 1000 --max-minutes ${MIN:-7} --eval-every 2 --threads 4"
python3 -m training.train_ds2 $COMMON --init-from results/ds2-cpu-main/release --rnn-hidden 256 --rnn-layers 4 \
  --dropout 0.2 --batch-seconds 40 --lr 1e-3 --warmup-steps 100 --noise-prob 0.3 --reverb-prob 0.1 --out runs/gA > $OUT/gA.out 2>&1 &
python3 -m training.train_ds2 $COMMON --init-from results/ds2-cpu-main/release --rnn-hidden 256 --rnn-layers 4 \
  --dropout 0.3 --batch-seconds 40 --lr 1e-3 --warmup-steps 100 --noise-prob 0.6 --reverb-prob 0.2 --out runs/gB > $OUT/gB.out 2>&1 &
python3 -m training.train_ds2 $COMMON --rnn-hidden 320 --rnn-layers 5 \
  --dropout 0.25 --batch-seconds 80 --lr 2e-3 --warmup-steps 300 --noise-prob 0.5 --reverb-prob 0.2 --out runs/gC > $OUT/gC.out 2>&1 &
sleep 45; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; tail -n 3 $OUT/g?.out
wait
for r in gA gB gC; do tail -n 4 $OUT/$r.out; tar -cf $OUT/$r.tar -C runs/$r release train.log; done
ls -la $OUT
