#!/usr/bin/env bash
# The DeepSpeech2 learning curve: the ds2-ko model (jamo CTC, GRU 256 x 4) trained from scratch on
# nested subsets of the train split (10 ⊂ 20 ⊂ 40 ⊂ 68 minutes, whole speakers), dev CER against
# hours, fitted and plotted beside the study's points (results/ds2-learning-curve.md).
#
#   recipes/ds2-curve/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                            [--points 10min,20min,40min,all] [--nproc N] [--threads N] [--force]
#
# Stages:
#   0 prepare    speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 subsets    nested speaker subsets (training.learning_curve subsets)
#   2 train      one run per subset, the same flags and the same step cap for all; each stops at the
#                cap or after PATIENCE dev evaluations without a better dev CER, evaluated about
#                every EVAL_STEPS steps (full dev set, greedy)
#   3 evaluate   each run's best release with the shipped jamo 6-gram LM (weights 2.0 / 0):
#                dev CER beam + LM, clean
#   4 fit        CER = a * hours^-b for greedy and beam + LM over the points given (run every time);
#                OUT/results/ds2-learning-curve.{md,json,png}
#
# Every point of stages 2 and 3 leaves OUT/.done/STAGE-POINT, so the grid can be run a few points
# per session (--points) and continued; a point interrupted in training resumes from its last.pt. Environment: CAP (step cap, default 1200), BATCH_SECONDS
# (per process, default 20), EVAL_STEPS (100), PATIENCE (5), LM (default checkpoints/ds2-ko/lm.bin).
# --budget small: the same stages on 8 short utterances, 2 steps a point (tests/test_recipes.py).
set -euo pipefail

recipe=ds2-curve
stop_stage=4
install_stage=4
nproc=2
threads=1
points=""
recipe_option() {
    case "$1" in
        --nproc) nproc="$2" ;;
        --points) points="$2" ;;
        *) return 1 ;;
    esac
}
source "$(dirname "$0")/../common.sh"
LM="${LM:-checkpoints/ds2-ko/lm.bin}"
PATIENCE="${PATIENCE:-5}"
exp="$out/exp"; subsets="$data/curve"
model_flags=(--unit jamo --rnn-hidden 256 --rnn-layers 4 --dropout 0.2)
if [[ "$budget" == full ]]; then
    targets=10,20,40; CAP="${CAP:-1200}"; BATCH_SECONDS="${BATCH_SECONDS:-20}"; EVAL_STEPS="${EVAL_STEPS:-100}"
    points="${points:-10min,20min,40min,all}"
    train_flags=(--lr 2e-3 --warmup-steps 100 --noise-dir "$NOISE" --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1)
    eval_flags=(--conditions clean)
else
    targets=0.1; CAP=2; BATCH_SECONDS=8; EVAL_STEPS=1; nproc=1
    points="${points:-0.1min,all}"
    train_flags=(--max-duration 8 --lr 2e-3 --warmup-steps 1 --workers 0 --device cpu --noise-dir "$NOISE"
                 --noise-prob 0.3 --snr 0,20 --reverb-prob 0.1)
    eval_flags=(--limit 2 --conditions clean)
fi
IFS=, read -r -a point_list <<< "$points"

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 subsets; then
    "$PY" -m training.learning_curve subsets --manifest "$train" --minutes "$targets" --out-dir "$subsets"
    done_stage 1 subsets
fi

if (( stage <= 2 && 2 <= stop_stage )); then
    for p in "${point_list[@]}"; do
        run_stage 2 "train-$p" || continue
        manifest="$subsets/train-$p.jsonl"
        every=$("$PY" -m training.learning_curve eval-every --manifest "$manifest" --batch-seconds "$BATCH_SECONDS" \
                --nproc "$nproc" --steps "$EVAL_STEPS")
        run_flags=(--train "$manifest" --dev "$dev" "${model_flags[@]}" "${train_flags[@]}" --batch-seconds "$BATCH_SECONDS"
                   --threads 1 --epochs 100000 --max-steps "$CAP" --patience "$PATIENCE" --eval-every "$every"
                   --out "$exp/$p")
        # A point stopped part-way (its last.pt is there, it is not done) continues where it was.
        if [[ -f "$exp/$p/last.pt" && "$force" == no ]]; then run_flags+=(--resume); else rm -rf "${exp:?}/$p"; fi
        if (( nproc > 1 )); then
            OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc" -m training.train_ds2 "${run_flags[@]}"
        else
            OMP_NUM_THREADS="$threads" "$PY" -m training.train_ds2 "${run_flags[@]}"
        fi
        done_stage 2 "train-$p"
    done
fi

if (( stage <= 3 && 3 <= stop_stage )); then
    for p in "${point_list[@]}"; do
        run_stage 3 "evaluate-$p" || continue
        "$PY" -m training.package_ds2 --release "$exp/$p/release" --out "$exp/$p/ds2" --lm "$LM" --lm-weight 2.0 --word-score 0
        "$PY" -m training.evaluate_stt --manifest "$dev" "${eval_flags[@]}" --system "ds2:$exp/$p/ds2:beam" \
            --threads "$threads" --out "$exp/$p/dev-beam"
        done_stage 3 "evaluate-$p"
    done
fi

if (( stage <= 4 && 4 <= stop_stage )); then     # always rerun: points arrive over several sessions
    log "stage 4 fit: start"
    runs=()
    for p in "${point_list[@]}"; do runs+=(--run "$p=$exp/$p"); done
    "$PY" -m training.learning_curve fit --subsets "$subsets/subsets.json" "${runs[@]}" --out "$out/results/ds2-learning-curve" \
        --command "recipes/ds2-curve/run.sh --budget $budget (CAP=$CAP BATCH_SECONDS=$BATCH_SECONDS EVAL_STEPS=$EVAL_STEPS PATIENCE=$PATIENCE nproc=$nproc)"
    log "stage 4 fit: done"
fi
log "finished stages $stage..$stop_stage; results: $out/results"
