#!/usr/bin/env bash
# DeepSpeech2 distilled from Whisper base: the ds2-ko model (jamo CTC, GRU 256 x 4) from random
# initialisation with the CTC loss plus a teacher loss: towards the frame posteriors of a small CTC
# head on frozen Whisper-base encoder states (KD_TARGET=posteriors), or of its projected top-layer
# states towards those encoder states (KD_TARGET=states); evaluated against the shipped from-scratch model.
#
#   recipes/ds2-distill/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                              [--nproc N] [--device auto|cpu|cuda] [--threads N] [--force]
#
# Stages:
#   0 prepare     speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 states      Whisper-base encoder states of train and dev (CTranslate2, the model setup.sh assembles)
#   2 head        the teacher: a 121k-parameter CTC head on the states, trained on train speakers only
#                 (its step chosen on two held-out train speakers); dev CER reported, never used
#   3 posteriors  the head's top-8 posteriors per frame over train (a few MB)
#   4 train-T     the student: train_ds2 --teacher (T = KD_TARGET's folder), the ds2-ko stage-3 recipe
#                 (MAX_MINUTES, default 100, NPROC DDP processes on the CPU; --device cuda for a GPU)
#   5 package-T   release + the shipped jamo 6-gram LM (weights 2.0 / 0)
#   6 evaluate-T  dev CER greedy and beam + LM, clean / noise / far-field, distilled against the shipped
#                 from-scratch checkpoints/ds2-ko (ship only if better in every condition)
#
# Environment: KD_TARGET (posteriors: the head's top-8 posteriors; states: the encoder states through a
# projection of the student's top layer), KD_WEIGHT (1.0), KD_TEMPERATURE (1.0), MAX_MINUTES (100),
# MAX_STEPS (0: none; 2901 matches the from-scratch stage 1 step for step, results/ds2-training.md),
# LM (checkpoints/ds2-ko/lm.bin). A second KD_TARGET on the same --out reuses stages 0-3.
# --budget small: the same stages on 8 short utterances, a few steps each (tests/test_recipes.py).
set -euo pipefail

recipe=ds2-distill
stop_stage=6
install_stage=6
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
LM="${LM:-checkpoints/ds2-ko/lm.bin}"
KD_WEIGHT="${KD_WEIGHT:-1.0}"; KD_TEMPERATURE="${KD_TEMPERATURE:-1.0}"; MAX_MINUTES="${MAX_MINUTES:-100}"; MAX_STEPS="${MAX_STEPS:-0}"
KD_TARGET="${KD_TARGET:-posteriors}"
teacher="$out/teacher"; exp="$out/exp/$KD_TARGET"; release="$out/ds2-distilled-$KD_TARGET"
model_flags=(--unit jamo --rnn-hidden 256 --rnn-layers 4 --dropout 0.2)
case "$KD_TARGET" in
    posteriors) kd_flags=(--teacher "$teacher/train-top8") ;;
    states) kd_flags=(--teacher "$teacher/states") ;;
    *) echo "KD_TARGET must be posteriors or states, not $KD_TARGET" >&2; exit 2 ;;
esac
kd_flags+=(--kd-weight "$KD_WEIGHT" --kd-temperature "$KD_TEMPERATURE")
if [[ "$budget" == full ]]; then
    head_flags=(--steps 3000)
    eval_flags=(--every 3 --conditions clean,noise10,noise5,noise0,farfield --noise-dir "$NOISE")
else
    head_flags=(--steps 50 --batch 4)
    eval_flags=(--limit 2 --conditions clean)
fi

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 states; then
    "$PY" -m training.whisper_teacher states --manifest "$train" "$dev" --threads "$threads" --out "$teacher/states"
    done_stage 1 states
fi

if run_stage 2 head; then
    holdout=()     # full: two train speakers (training.whisper_teacher.default_holdout); small: the first one
    [[ "$budget" == small ]] && holdout=(--holdout-speakers "$("$PY" -c "import json, sys; print(json.loads(open(sys.argv[1]).readline())['speaker'])" "$train")")
    "$PY" -m training.whisper_teacher head --states "$teacher/states" --train "$train" --eval "$dev" \
        "${holdout[@]}" "${head_flags[@]}" --out "$teacher/head"
    done_stage 2 head
fi

if run_stage 3 posteriors; then
    "$PY" -m training.whisper_teacher posteriors --states "$teacher/states" --head "$teacher/head" \
        --manifest "$train" --k 8 --out "$teacher/train-top8"
    done_stage 3 posteriors
fi

if run_stage 4 "train-$KD_TARGET"; then
    rm -rf "$exp/student"
    if [[ "$budget" == full && "$nproc" -gt 1 ]]; then
        OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc" \
            -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" "${kd_flags[@]}" \
            --batch-seconds 40 --lr 2e-3 --warmup-steps 200 --threads 1 \
            --noise-dir "$NOISE" --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1 --epochs 1000 \
            --max-minutes "$MAX_MINUTES" --max-steps "$MAX_STEPS" --eval-every 5 --device "$device" --out "$exp/student"
    elif [[ "$budget" == full ]]; then
        "$PY" -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" "${kd_flags[@]}" \
            --batch-seconds 40 --lr 2e-3 --warmup-steps 200 --threads "$threads" \
            --noise-dir "$NOISE" --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1 --epochs 1000 \
            --max-minutes "$MAX_MINUTES" --max-steps "$MAX_STEPS" --eval-every 5 --device "$device" --out "$exp/student"
    else
        "$PY" -m training.train_ds2 --train "$train" --dev "$dev" "${model_flags[@]}" "${kd_flags[@]}" \
            --batch-seconds 8 --max-duration 8 --lr 2e-3 --warmup-steps 1 --threads "$threads" --workers 0 \
            --noise-dir "$NOISE" --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1 --epochs 1 \
            --max-steps 2 --eval-every 1 --device cpu --out "$exp/student"
    fi
    done_stage 4 "train-$KD_TARGET"
fi

if run_stage 5 "package-$KD_TARGET"; then
    rm -rf "$release"
    "$PY" -m training.package_ds2 --release "$exp/student/release" --out "$release" --lm "$LM" --lm-weight 2.0 --word-score 0
    done_stage 5 "package-$KD_TARGET"
fi

if run_stage 6 "evaluate-$KD_TARGET"; then
    "$PY" -m training.evaluate_stt --manifest "$dev" "${eval_flags[@]}" \
        --system "ds2:$release" --system "ds2:$release:beam" \
        --system "ds2:checkpoints/ds2-ko" --system "ds2:checkpoints/ds2-ko:beam" \
        --threads "$threads" --out "$out/results/dev-ds2-distilled-$KD_TARGET"
    done_stage 6 "evaluate-$KD_TARGET"
fi
log "finished stages $stage..$stop_stage; release: $release"
