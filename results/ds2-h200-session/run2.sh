#!/bin/bash
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
D=.gpu/data
python3 -m training.train_ds2 --train $D/ko-speech/train.jsonl --dev $D/ko-speech/dev.jsonl --unit jamo --noise-dir $D/noise --snr 0,20 --epochs 1000 --max-minutes 3.8 --eval-every 2 --threads 8 --init-from .gpu/gC/release --rnn-hidden 320 --rnn-layers 5 --dropout 0.25 --batch-seconds 80 --lr 1.5e-3 --warmup-steps 50 --noise-prob 0.5 --reverb-prob 0.2 --out runs/gC2 > $OUT/gC2.out 2>&1
tail -n 8 $OUT/gC2.out; tar -cf $OUT/gC2.tar -C runs/gC2 release train.log
