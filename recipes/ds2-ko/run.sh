#!/usr/bin/env bash
# Regenerate checkpoints/ds2-ko: DeepSpeech2 (jamo CTC, GRU 256 x 4) with its jamo 6-gram KenLM.
#
#   recipes/ds2-ko/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                         [--nproc N] [--device auto|cpu|cuda] [--threads N] [--force] [--install]
#
# Stages (each one a small script of training/; see recipes/README.md for what each one took):
#   0 prepare    speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 lm-text    LM text: konlpy, Debian's Korean docs, train transcripts, NSMC reviews; dev excluded
#   2 lm         KenLM binaries (training/build_kenlm.sh), then the jamo 6-gram lm.bin
#   3 train      from scratch: 100 minutes, two DDP processes on a 2-core CPU
#   4 continue   the stage-3 release continued for 7 minutes (the shipped run: an H200)
#   5 package    release + LM + decoder settings -> OUT/ds2-ko
#   6 evaluate   dev CER/WER greedy and beam + LM, clean / noise / far-field; recorded in config.json
#   7 benchmark  load time, RTF, training throughput, memory
#   8 install    copy OUT/ds2-ko into checkpoints/ds2-ko, keeping its card (only with --install)
#
# --budget small: the same stages and model shape on 8 short utterances, a few steps, a 3-gram LM
# of the train transcripts and one evaluation condition; it runs in a couple of minutes on 2 cores
# and is what tests/test_recipes.py runs. Finished stages leave OUT/.done/STAGE and are skipped
# when run again (--force reruns them). Nothing outside OUT is written unless --install is given.
set -euo pipefail

recipe=ds2-ko
stop_stage=7
install_stage=8
nproc=2
device=auto
threads=1
recipe_option() {
    case "$1" in
        --nproc) nproc="$2" ;;
        --device) device="$2" ;;
        *) return 1 ;;
    esac
}
source "$(dirname "$0")/../common.sh"
NSMC="${NSMC:-../shared/data/text/nsmc-reviews.txt.xz}"
LM_WEIGHT="${LM_WEIGHT:-2.0}"                               # tuned by training.tune_lm (results/ds2-lm-nsmc.md)
WORD_SCORE="${WORD_SCORE:-0}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}"

exp="$out/exp"; lm="$out/lm"; release="$out/ds2-ko"
# The model's shape is the same in both budgets: dims, features and tokenizer of checkpoints/ds2-ko.
model_flags=(--unit jamo --rnn-hidden 256 --rnn-layers 4 --dropout 0.2)

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 lm-text; then
    mkdir -p "$lm"
    if [[ "$budget" == full ]]; then
        "$PY" -m training.lm_corpus --out "$lm/corpus.txt" --konlpy auto --deb auto \
            --manifest "$train" --exclude-manifest "$dev"
        "$PY" -m training.lm_corpus --out "$lm/nsmc.txt" --text "$NSMC" --exclude-manifest "$dev"
    else
        "$PY" -m training.lm_corpus --out "$lm/corpus.txt" --manifest "$train" --exclude-manifest "$dev"
    fi
    done_stage 1 lm-text
fi

if run_stage 2 lm; then
    PYTHON="$PY" bash training/build_kenlm.sh
    if [[ "$budget" == full ]]; then
        "$PY" -m training.build_lm --text "$lm/corpus.txt" "$lm/nsmc.txt" --unit jamo --order 6 \
            --prune 0 0 0 1 1 2 --quantize 8 --memory 2G --out "$lm/jamo/lm.bin"
    else
        "$PY" -m training.build_lm --text "$lm/corpus.txt" --unit jamo --order 3 --memory 100M \
            --out "$lm/jamo/lm.bin"
    fi
    done_stage 2 lm
fi

if run_stage 3 train; then
    rm -rf "$exp/main1"
    if [[ "$budget" == full ]]; then
        OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc" \
            -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" \
            --batch-seconds 40 --lr 2e-3 --warmup-steps 200 --threads 1 \
            --noise-dir "$NOISE" --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1 --epochs 1000 \
            --max-minutes 100 --eval-every 5 --out "$exp/main1"
    else
        "$PY" -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" \
            --batch-seconds 8 --max-duration 8 --lr 2e-3 --warmup-steps 1 --threads "$threads" --workers 0 \
            --noise-dir "$NOISE" --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1 --epochs 1 \
            --max-steps 2 --eval-every 1 --device cpu --out "$exp/main1"
    fi
    done_stage 3 train
fi

if run_stage 4 continue; then
    rm -rf "$exp/gA"
    if [[ "$budget" == full ]]; then
        "$PY" -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" \
            --noise-dir "$NOISE" --snr 0,20 --epochs 1000 --max-minutes 7 --eval-every 2 \
            --threads 4 --init-from "$exp/main1/release" --batch-seconds 40 --lr 1e-3 \
            --warmup-steps 100 --noise-prob 0.3 --reverb-prob 0.1 --device "$device" --out "$exp/gA"
    else
        "$PY" -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" \
            --noise-dir "$NOISE" --snr 0,20 --epochs 1 --max-steps 1 --eval-every 1 \
            --threads "$threads" --workers 0 --init-from "$exp/main1/release" --batch-seconds 8 --max-duration 8 \
            --lr 1e-3 --warmup-steps 1 --noise-prob 0.3 --reverb-prob 0.1 --device cpu --out "$exp/gA"
    fi
    done_stage 4 continue
fi

if run_stage 5 package; then
    rm -rf "$release"
    "$PY" -m training.package_ds2 --release "$exp/gA/release" --out "$release" \
        --lm "$lm/jamo/lm.bin" --lm-weight "$LM_WEIGHT" --word-score "$WORD_SCORE"
    done_stage 5 package
fi

if run_stage 6 evaluate; then
    if [[ "$budget" == full ]]; then
        eval_flags=(--every 3 --conditions clean,noise10,noise5,noise0,farfield)
    else
        eval_flags=(--limit 2 --conditions clean)
    fi
    "$PY" -m training.evaluate_stt --manifest "$dev" "${eval_flags[@]}" --system "ds2:$release" \
        --system "ds2:$release:beam" --noise-dir "$NOISE" --threads "$threads" --out "$out/results/dev-ds2"
    # The evaluation goes into the release's config.json, as in the shipped one.
    "$PY" -m training.package_ds2 --release "$release" --out "$release" --lm "$lm/jamo/lm.bin" \
        --lm-weight "$LM_WEIGHT" --word-score "$WORD_SCORE" --metrics "$out/results/dev-ds2.json"
    done_stage 6 evaluate
fi

if run_stage 7 benchmark; then
    if [[ "$budget" == full ]]; then
        bench_flags=(--train-steps 3)
    else
        bench_flags=(--lengths 10 --repeats 1 --train-steps 0)
    fi
    "$PY" -m training.benchmark --model "$release" --manifest "$dev" --train-manifest "$train" \
        --threads "$threads" "${bench_flags[@]}" --out "$out/results/benchmark"
    done_stage 7 benchmark
fi

stage_install ds2-ko "$release" config.json model.safetensors lm.bin lm.json
log "finished stages $stage..$stop_stage; release: $release"
