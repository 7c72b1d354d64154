#!/usr/bin/env bash
# Regenerate checkpoints/gender-ko: the speaker-gender CNN (female / male), temperature-calibrated.
#
#   recipes/gender-ko/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                            [--threads N] [--force] [--install]
#
# Stages (each one a small script of training/; see recipes/README.md for what each one took):
#   0 prepare    speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 train      10 minutes of 1-3 s crops with household noise and reverberation (2-core CPU)
#   2 calibrate  refit the temperature on the adult dev speakers, clean and in noise
#   3 package    the release -> OUT/gender-ko
#   4 evaluate   accuracy against the pitch baseline, clean / noise / 1 s crops, and ECE
#   5 install    copy OUT/gender-ko into checkpoints/gender-ko, keeping its card (only with --install)
#
# --budget small: the same stages and model shape on 8 short train and 4 dev utterances and a few
# steps; it runs in about a minute on 2 cores and is what tests/test_recipes.py runs. Finished
# stages leave OUT/.done/STAGE and are skipped when run again (--force reruns them). Nothing
# outside OUT is written unless --install is given.
set -euo pipefail

recipe=gender-ko
stop_stage=4
install_stage=5
threads=0
source "$(dirname "$0")/../common.sh"

exp="$out/exp/gender-cpu"; release="$out/gender-ko"

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 train; then
    rm -rf "$exp"
    if [[ "$budget" == full ]]; then
        budget_flags=(--minutes 10 --eval-every 200)
    else
        budget_flags=(--minutes 0 --steps 4 --batch-size 8 --eval-every 2)
    fi
    "$PY" -m training.train_gender --train "$train" --dev "$dev" --noise "$NOISE" --out "$exp" \
        --crop-max 3.0 --threads "$threads" "${budget_flags[@]}"
    done_stage 1 train
fi

if run_stage 2 calibrate; then
    "$PY" -m training.train_gender --recalibrate "$exp/release" --dev "$dev" --noise "$NOISE"
    done_stage 2 calibrate
fi

if run_stage 3 package; then
    rm -rf "$release"
    mkdir -p "$release"
    cp "$exp/release"/config.json "$exp/release"/model.safetensors "$release/"
    done_stage 3 package
fi

if run_stage 4 evaluate; then
    "$PY" -m training.evaluate_gender --manifest "$dev" --noise "$NOISE" --model "$release" \
        --out "$out/results/gender_eval"
    done_stage 4 evaluate
fi

stage_install gender-ko "$release" config.json model.safetensors
log "finished stages $stage..$stop_stage; release: $release"
