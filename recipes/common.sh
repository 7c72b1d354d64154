# Sourced by recipes/*/run.sh (never run on its own), after `set -euo pipefail` and after the recipe
# has set: recipe (its name), stop_stage (its last stage before install), install_stage, threads,
# and optionally recipe_option() for options of its own (`recipe_option FLAG VALUE` returns 0 when
# it took the flag and its value). This file parses the shared options, moves to the repository
# root (the stages run `python -m training.X`), sets out, PY, CORPUS, NOISE and the data paths of
# the budget, and defines log, run_stage, done_stage, stage_prepare and stage_install.

stage=0
budget=full
out=""                                      # default: runs/recipes/$recipe in the repository
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
        --install) install=yes; stop_stage="$install_stage"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) if [[ $# -ge 2 ]] && declare -F recipe_option >/dev/null && recipe_option "$1" "$2"; then shift 2
           else echo "error: unknown option $1 (see --help)" >&2; exit 2; fi ;;
    esac
done
[[ "$budget" == full || "$budget" == small ]] || { echo "error: --budget full|small, not '$budget'" >&2; exit 2; }
[[ "$install" == no || "$budget" == full ]] || { echo "error: a --budget small release is for CI; --install takes full only" >&2; exit 2; }

[[ -n "$out" ]] && out="$(realpath -m "$out")"             # relative to where the recipe was started
cd "$(dirname "$0")/../.."                                  # the repository root: python -m training.X
out="$(realpath -m --relative-base="$PWD" "${out:-runs/recipes/$recipe}")"   # inside the repository: relative
PY="${PYTHON:-$HOME/.cache/korean-speech/venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
CORPUS="${CORPUS:-../shared/data/ko-speech}"
NOISE="${NOISE:-../shared/data/noise}"

mkdir -p "$out/.done" "$out/results"
if [[ -f "$out/budget" && "$(cat "$out/budget")" != "$budget" ]]; then
    echo "error: $out was made with --budget $(cat "$out/budget"); use another --out" >&2; exit 2
fi
echo "$budget" > "$out/budget"

data="$out/data"
train="$data/train.jsonl"; dev="$data/dev.jsonl"
if [[ "$budget" == small ]]; then
    train="$data/train-small.jsonl"; dev="$data/dev-small.jsonl"; noise_src="$NOISE"; NOISE="$data/noise"
fi

log() { echo "$(date -u +%H:%M:%S) [$recipe $budget] $*"; }
# run_stage N NAME: true when stage N is in range and not done yet (then the caller runs it).
run_stage() {
    local n="$1" name="$2"
    (( stage <= n && n <= stop_stage )) || return 1
    if [[ -f "$out/.done/$name" && "$force" == no ]]; then log "stage $n $name: done before, skipped"; return 1; fi
    log "stage $n $name: start"; SECONDS=0; return 0
}
done_stage() { touch "$out/.done/$2"; log "stage $1 $2: done in ${SECONDS}s"; }

# Stage 0 of every recipe: speaker-disjoint manifests; the small budget takes 8 short train and 4 dev
# utterances (both genders) and the noise clips of 35 s or less.
stage_prepare() {
    "$PY" -m training.prepare_ko_speech --data "$CORPUS" --out-dir "$data"
    if [[ "$budget" == small ]]; then
        "$PY" recipes/subset_manifest.py "$data/train.jsonl" "$train" --speakers-per-gender 2 --per-speaker 2
        "$PY" recipes/subset_manifest.py "$data/dev.jsonl" "$dev" --speakers-per-gender 1 --per-speaker 2
        "$PY" recipes/subset_manifest.py "$noise_src" "$data/noise" --max-duration 35
    fi
}

# The last stage of every recipe (stage `install_stage`): with --install, copy the release's files
# into checkpoints/NAME (the model card README.md there is kept); otherwise say it was skipped.
#   stage_install NAME RELEASE_FOLDER FILE...
stage_install() {
    local name="$1" release="$2"; shift 2
    (( stage <= install_stage && install_stage <= stop_stage )) || return 0
    if [[ "$install" == yes ]]; then
        log "stage $install_stage install: $release -> checkpoints/$name (the model card README.md is kept)"
        mkdir -p "checkpoints/$name"
        local f
        for f in "$@"; do cp "$release/$f" "checkpoints/$name/"; done
    else
        log "stage $install_stage install: skipped (pass --install to overwrite checkpoints/$name)"
    fi
}
