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

stage=0
stop_stage=4
budget=full
out=""                                      # default: runs/recipes/gender-ko in the repository
threads=0
force=no
install=no
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stage) stage="$2"; shift 2 ;;
        --stop-stage) stop_stage="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --force) force=yes; shift ;;
        --install) install=yes; stop_stage=5; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$budget" == full || "$budget" == small ]] || { echo "error: --budget full|small, not '$budget'" >&2; exit 2; }
[[ "$install" == no || "$budget" == full ]] || { echo "error: a --budget small release is for CI; --install takes full only" >&2; exit 2; }

[[ -n "$out" ]] && out="$(realpath -m "$out")"             # relative to where the recipe was started
cd "$(dirname "$0")/../.."                                  # the repository root: python -m training.X
out="$(realpath -m --relative-base="$PWD" "${out:-runs/recipes/gender-ko}")"   # inside the repository: relative
PY="${PYTHON:-$HOME/.cache/korean-speech/venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
CORPUS="${CORPUS:-../shared/data/ko-speech}"
NOISE="${NOISE:-../shared/data/noise}"

mkdir -p "$out/.done" "$out/results"
if [[ -f "$out/budget" && "$(cat "$out/budget")" != "$budget" ]]; then
    echo "error: $out was made with --budget $(cat "$out/budget"); use another --out" >&2; exit 2
fi
echo "$budget" > "$out/budget"

data="$out/data"; exp="$out/exp/gender-cpu"; release="$out/gender-ko"
train="$data/train.jsonl"; dev="$data/dev.jsonl"
if [[ "$budget" == small ]]; then
    train="$data/train-small.jsonl"; dev="$data/dev-small.jsonl"; noise_src="$NOISE"; NOISE="$data/noise"
fi

log() { echo "$(date -u +%H:%M:%S) [gender-ko $budget] $*"; }
run_stage() {
    local n="$1" name="$2"
    (( stage <= n && n <= stop_stage )) || return 1
    if [[ -f "$out/.done/$name" && "$force" == no ]]; then log "stage $n $name: done before, skipped"; return 1; fi
    log "stage $n $name: start"; SECONDS=0; return 0
}
done_stage() { touch "$out/.done/$2"; log "stage $1 $2: done in ${SECONDS}s"; }

if run_stage 0 prepare; then
    "$PY" -m training.prepare_ko_speech --data "$CORPUS" --out-dir "$data"
    if [[ "$budget" == small ]]; then
        "$PY" recipes/subset_manifest.py "$data/train.jsonl" "$train" --speakers-per-gender 2 --per-speaker 2
        "$PY" recipes/subset_manifest.py "$data/dev.jsonl" "$dev" --speakers-per-gender 1 --per-speaker 2
        "$PY" recipes/subset_manifest.py "$noise_src" "$data/noise" --max-duration 35
    fi
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

if (( stage <= 5 && 5 <= stop_stage )); then
    if [[ "$install" == yes ]]; then
        log "stage 5 install: $release -> checkpoints/gender-ko (the model card README.md is kept)"
        cp "$release"/config.json "$release"/model.safetensors checkpoints/gender-ko/
    else
        log "stage 5 install: skipped (pass --install to overwrite checkpoints/gender-ko)"
    fi
fi
log "finished stages $stage..$stop_stage; release: $release"
