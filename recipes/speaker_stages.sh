# Sourced by recipes/speaker-*/run.sh after common.sh: the stages both speaker encoders share. The
# recipe sets conv, exp, out, speakers, turns, n_train, n_dev, thresholds, splits and merges first.

# Synthetic conversations of 2-4 train speakers (scored while tuning), the same ones with the train
# part of each noise clip (the whitening is fitted on them) and conversations of the dev speakers.
stage_speaker_conversations() {
    rm -rf "$conv"
    local common=(--noise "$NOISE" --speakers "$speakers" --turns "$turns")
    "$PY" -m training.make_conversations --manifest "$train" --out "$conv/train" --n "$n_train" --seed 1 "${common[@]}"
    "$PY" -m training.make_conversations --manifest "$train" --out "$conv/train-fitnoise" --n "$n_train" --seed 1 \
        --noise-part train "${common[@]}"
    local dev_speakers="$dev"
    if [[ "$budget" == small ]]; then   # the TV of a conversation talks with the voices of other speakers
        dev_speakers="$data/dev-small-4.jsonl"
        "$PY" recipes/subset_manifest.py "$data/dev.jsonl" "$dev_speakers" --speakers-per-gender 2 --per-speaker 2
    fi
    "$PY" -m training.make_conversations --manifest "$dev_speakers" --out "$conv/dev" --n "$n_dev" --seed 2 "${common[@]}"
}

# stage_speaker_tune ENCODER: the clustering (average linkage over $thresholds, spectral over
# $splits and $merges), each train conversation scored through a whitening fitted without its
# speakers and noise.
stage_speaker_tune() {
    rm -rf "$exp/cache"
    "$PY" -m training.tune_diarization --encoder "$1" --conversations "$conv/train" --cache "$exp/cache/train" \
        --variants clean,noise,tv --fit wccn --fit-conversations "$conv/train-fitnoise" --fit-cache "$exp/cache/fit" \
        --fit-variants clean,noise,tv,household --thresholds "$thresholds" --switch-penalties 0.3 --blocks 3 \
        --methods ahc,spectral --splits "$splits" --merges "$merges" --out "$out/results/diarization_tuning"
}

# stage_speaker_project SOURCE RELEASE: SOURCE's weights with the whitening fitted on all train
# conversations and the tuned clustering -> RELEASE.
stage_speaker_project() {
    rm -rf "$2"
    mkdir -p "$2"
    cp "$1"/config.json "$1"/model.safetensors "$2/"
    "$PY" -m training.fit_speaker_lda --release "$2" --conversations "$conv/train-fitnoise" --cache "$exp/cache/fit" \
        --variants clean,noise,tv,household --kind wccn --shrink 3 --tuning "$out/results/diarization_tuning.json"
}

# stage_speaker_evaluate RELEASE: DER, shares and wrong-gender time on the dev conversations.
stage_speaker_evaluate() {
    "$PY" -m training.evaluate_speakers --encoder "$1" --conversations "$conv/dev" --manifest "$dev" \
        --out "$out/results/diarization_eval"
}
