#!/usr/bin/env bash
# Regenerate checkpoints/speaker-ko: resemblyzer's voice encoder taught to hear a voice through a
# home's noise and TV, with its own within-speaker whitening and clustering threshold.
#
#   recipes/speaker-ko/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                             [--threads N] [--force] [--install]
#
# Stages (each one a small script of training/; see recipes/README.md for what each one took):
#   0 prepare        speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 teacher        resemblyzer's pretrained encoder as a release, from its PyPI wheel
#                    (the small budget copies checkpoints/speaker-resemblyzer instead: no download)
#   2 conversations  synthetic conversations of 2-4 train speakers (scored while tuning), the same
#                    ones with the train part of each noise clip (the projection is fitted on
#                    them), and conversations of the dev speakers (results)
#   3 train          the student: noisy 1.6 s crops towards the teacher's clean embeddings
#   4 tune           the clustering (average linkage over thresholds, or spectral): each train
#                    conversation scored through a whitening fitted without its speakers and its noise
#   5 project        the whitening fitted on all train conversations and the tuned clustering
#                    written into the release -> OUT/speaker-ko
#   6 evaluate       DER, parents' shares and wrong-gender time on the dev conversations
#   7 install        copy OUT/speaker-ko into checkpoints/speaker-ko, keeping its card (only with --install)
#
# --budget small: the same stages on 8 short train and 4 dev utterances, two-speaker conversations
# and a few steps (what tests/test_recipes.py runs). Finished stages leave OUT/.done/STAGE and are
# skipped when run again (--force reruns them). Nothing outside OUT is written unless --install.
set -euo pipefail

recipe=speaker-ko
stop_stage=6
install_stage=7
threads=1
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/../speaker_stages.sh"

exp="$out/exp/speaker"; teacher="$out/speaker-resemblyzer"; release="$out/speaker-ko"
conv="$data/conversations"
if [[ "$budget" == full ]]; then
    n_train=16; n_dev=10; speakers=2-4; turns=16; steps=(--steps 1200 --lr 1e-4)
    thresholds=0.55,0.6,0.65,0.7,0.75,0.8,0.85; splits=0.65,0.7,0.75,0.8,2.0; merges=0
else
    n_train=3; n_dev=1; speakers=2-2; turns=4; steps=(--steps 3 --batch 4 --val-speakers "" --tv-tracks 1)
    thresholds=0.65,0.75; splits=0.7; merges=0
fi

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 teacher; then
    rm -rf "$teacher"
    if [[ "$budget" == full ]]; then
        "$PY" -m pip download resemblyzer==0.1.4 --no-deps -d "$out/wheel"
        "$PY" -m training.convert_resemblyzer --wheel "$out"/wheel/Resemblyzer-0.1.4-py3-none-any.whl \
            --out "$teacher" --dtype float16
    else
        mkdir -p "$teacher"
        cp checkpoints/speaker-resemblyzer/config.json checkpoints/speaker-resemblyzer/model.safetensors "$teacher/"
    fi
    done_stage 1 teacher
fi

if run_stage 2 conversations; then
    stage_speaker_conversations
    done_stage 2 conversations
fi

if run_stage 3 train; then
    rm -rf "$exp"
    "$PY" -m training.train_speaker --manifest "$train" --noise "$NOISE" --init "$teacher" --out "$exp" \
        --threads "$threads" "${steps[@]}"
    done_stage 3 train
fi

if run_stage 4 tune; then
    stage_speaker_tune "$exp/release"
    done_stage 4 tune
fi

if run_stage 5 project; then
    stage_speaker_project "$exp/release" "$release"
    done_stage 5 project
fi

if run_stage 6 evaluate; then
    stage_speaker_evaluate "$release"
    done_stage 6 evaluate
fi

stage_install speaker-ko "$release" config.json model.safetensors
log "finished stages $stage..$stop_stage; release: $release"
