#!/usr/bin/env bash
# Regenerate checkpoints/gender-child-ko (female / male / child, the default gender model) and
# checkpoints/gender-child-ko-narrowband (the same for telephone-band audio, which gender-child-ko
# names in its config and hands such recordings to).
#
#   recipes/gender-child-ko/run.sh [--stage N] [--stop-stage M] [--budget full|small] [--out DIR]
#                                  [--threads N] [--force] [--install]
#
# Stages (each one a script of training/; the cards say what each shipped run took):
#   0 prepare     speaker-disjoint train/dev manifests of ../shared/data/ko-speech
#   1 children    synthetic children (training/child_voice.py): one child and one pitch-raised adult
#                 copy of every adult train utterance, made twice (child_voice's phase vocoder; the
#                 WORLD vocoder); of the dev speakers: the same through child_voice, children through
#                 WORLD, resampled "children" (a transform never trained on), one child voice per
#                 speaker; teens listed
#   2 train       gender-ko's weights with a third label, `child`: 55 minutes of 1-3 s crops (noise,
#                 rooms), adult crops distilled to gender-ko's female : male odds, the temperature
#                 fitted on 10 % of the train speakers' utterances held out
#   3 narrowband  stage 2's release fine-tuned 20 minutes with half of the crops band-limited, each
#                 taught to answer as stage 2's release does on the full band
#   4 package     -> OUT/gender-child-ko (naming gender-child-ko-narrowband) and OUT/gender-child-ko-narrowband;
#                 gender-child-ko's mixed-voice rule (speech.analysis.mixed_rule: when a small speaker
#                 is two voices at once) chosen on conversations of train speakers (training/tune_mixed.py)
#   5 evaluate    both releases on held-out adults, teens and children, in noise, 1 s crops and through
#                 band limits, against the pitch baseline
#   6 install     copy both into checkpoints/ (model cards kept; only with --install)
#
# GENDER_KO (default checkpoints/gender-ko) is the female / male release stage 2 starts from and
# distils; recipes/gender-ko/run.sh regenerates it. --budget small: the same stages on 8 short
# train and 4 dev utterances and a few steps (tests/test_recipes.py). Finished stages leave
# OUT/.done/STAGE and are skipped when run again (--force reruns them). Nothing outside OUT is
# written unless --install is given.
set -euo pipefail

recipe=gender-child-ko
stop_stage=5
install_stage=6
threads=0
source "$(dirname "$0")/../common.sh"

GENDER_KO="${GENDER_KO:-checkpoints/gender-ko}"
child="$data/child"
exp_main="$out/exp/gc"; exp_band="$out/exp/gcb"
release="$out/gender-child-ko"; narrow="$out/gender-child-ko-narrowband"
bands=(phone lowpass3400 lowpass4000 lowpass5500 highpass200 highpass300)
if [[ "$budget" == full ]]; then
    main_flags=(--minutes 55 --eval-every 500); band_flags=(--minutes 20 --eval-every 250)
    conversations=(--speakers 2-4 --turns 16); n_conv=(16 40)   # 56 conversations of 2-4 train speakers
    mixed_grid=0/0,0.92/0.15,0.94/0.15,0.95/0.15,0.96/0.15,0.97/0.15,0.98/0.15
else
    main_flags=(--minutes 0 --steps 4 --batch-size 6 --eval-every 2)
    band_flags=(--minutes 0 --steps 3 --batch-size 6 --eval-every 2)
    conversations=(--speakers 2-2 --turns 4); n_conv=(1 1)
    mixed_grid=0/0,0.96/0.15
    bands=(phone highpass300)
fi

if run_stage 0 prepare; then
    stage_prepare
    done_stage 0 prepare
fi

if run_stage 1 children; then
    rm -rf "$child"
    "$PY" -m training.child_voice --manifest "$train" --out "$child/train" --copies 1 --adult-pitch-copies 1 --seed 0
    "$PY" -m training.child_voice --manifest "$train" --out "$child/train-world" --copies 1 --adult-pitch-copies 1 --world --seed 0
    "$PY" -m training.child_voice --manifest "$dev" --out "$child/dev" --copies 1 --adult-pitch-copies 1 --seed 1
    "$PY" -m training.child_voice --manifest "$dev" --out "$child/dev-speed" --copies 1 --speed 1.25 1.5 --seed 2
    "$PY" -m training.child_voice --manifest "$dev" --out "$child/dev-one-voice" --copies 1 --one-voice --seed 1
    "$PY" -m training.child_voice --manifest "$dev" --out "$child/dev-world" --copies 1 --world --seed 1
    grep '"teen"' "$data/train.jsonl" > "$data/teens_train.jsonl" || true   # beside train.jsonl: its audio paths are relative to it
    done_stage 1 children
fi

common=(--train "$train" --dev "$dev" --extra-train "$child/train/manifest.jsonl" "$child/train-world/manifest.jsonl" --exclude-note teen
        --distill "$GENDER_KO" --distill-weight 1.0 --calib-holdout 0.1 --noise "$NOISE"
        --crop-min 1.0 --crop-max 3.0 --threads "$threads")

if run_stage 2 train; then
    rm -rf "$exp_main"
    "$PY" -m training.train_gender "${common[@]}" --extra-dev "$child/dev/manifest.jsonl" \
        --init "$GENDER_KO" --lr 1e-3 --out "$exp_main" \
        --name gender-child-ko --narrowband gender-child-ko-narrowband "${main_flags[@]}"
    done_stage 2 train
fi

if run_stage 3 narrowband; then
    rm -rf "$exp_band"
    "$PY" -m training.train_gender "${common[@]}" --extra-dev "$child/dev-one-voice/manifest.jsonl" \
        --init "$exp_main/release" --band-prob 0.5 --band-teacher "$exp_main/release" --band-teacher-weight 1.0 \
        --lr 3e-4 --out "$exp_band" --name gender-child-ko-narrowband "${band_flags[@]}"
    done_stage 3 narrowband
fi

if run_stage 4 package; then
    rm -rf "$release" "$narrow"
    mkdir -p "$release" "$narrow"
    cp "$exp_main/release"/config.json "$exp_main/release"/model.safetensors "$release/"
    cp "$exp_band/release"/config.json "$exp_band/release"/model.safetensors "$narrow/"
    rm -rf "$data/conversations"
    "$PY" -m training.make_conversations --manifest "$train" --noise "$NOISE" --out "$data/conversations/train" \
        --n "${n_conv[0]}" --seed 1 "${conversations[@]}"
    "$PY" -m training.make_conversations --manifest "$train" --noise "$NOISE" --out "$data/conversations/train2" \
        --n "${n_conv[1]}" --seed 3 "${conversations[@]}"
    "$PY" -m training.tune_mixed --conversations "$data/conversations/train,$data/conversations/train2" \
        --gender "$release" --grid "$mixed_grid" --write --out "$out/results/mixed_voices"
    done_stage 4 package
fi

if run_stage 5 evaluate; then
    manifests=("$dev" "$child/dev/manifest.jsonl" "$child/dev-speed/manifest.jsonl" "$child/dev-one-voice/manifest.jsonl"
               "$child/dev-world/manifest.jsonl")
    [[ -s "$data/teens_train.jsonl" ]] && manifests+=("$data/teens_train.jsonl")
    for r in "$release" "$narrow"; do
        "$PY" -m training.evaluate_gender --manifest "${manifests[@]}" --noise "$NOISE" --model "$r" \
            --bands "${bands[@]}" --out "$out/results/$(basename "$r")_eval"
    done
    done_stage 5 evaluate
fi

stage_install gender-child-ko "$release" config.json model.safetensors
stage_install gender-child-ko-narrowband "$narrow" config.json model.safetensors
log "finished stages $stage..$stop_stage; releases: $release, $narrow"
