#!/usr/bin/env bash
# Regenerate checkpoints/tv-ko: is a speaker cluster a TV or radio? (seven acoustic cues and a
# logistic regression; the whole model is its config.json).
#
#   recipes/tv-ko/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                        [--threads N] [--force] [--install]
#
# Stages (each one a script of training/; see recipes/README.md for what each one took):
#   0 prepare   speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 fit       family and TV clusters of the train speakers (first 70 % of each household noise
#               clip), the detector fitted on them, its threshold at 1 % of the train family clusters
#               called TV; measured on clusters of the dev speakers (last 30 % of the noise)
#   2 package   the release -> OUT/tv-ko
#   3 install   copy OUT/tv-ko/config.json into checkpoints/tv-ko, keeping its card (only with --install)
#
# The level rules that judge a recording's speakers together (speech.tv.judge) are chosen by
# training/tune_tv.py on train conversations (results/tv_speakers.md), not here. --budget small:
# 2 clusters per condition of the small manifests (tests/test_recipes.py). Finished stages leave
# OUT/.done/STAGE and are skipped when run again (--force reruns them). Nothing outside OUT is
# written unless --install is given.
set -euo pipefail

recipe=tv-ko
stop_stage=2
install_stage=3
threads=0
source "$(dirname "$0")/../common.sh"

exp="$out/exp/tv"; release="$out/tv-ko"
if [[ "$budget" == full ]]; then n=40; else n=2; fi

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 fit; then
    rm -rf "$exp"
    "$PY" -m training.train_tv --train "$train" --dev "$dev" --noise "$NOISE" --n "$n" --out "$exp/release" \
        --results "$out/results/tv_eval" --dump "$exp/features.jsonl"
    done_stage 1 fit
fi

if run_stage 2 package; then
    rm -rf "$release"
    mkdir -p "$release"
    cp "$exp/release/config.json" "$release/"
    done_stage 2 package
fi

stage_install tv-ko "$release" config.json
log "finished stages $stage..$stop_stage; release: $release"
