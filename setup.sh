#!/usr/bin/env bash
# Set up everything on a fresh Debian machine (run as root): system packages, a Python venv with
# the requirements of pyproject.toml (at $HOME/.cache/korean-speech/venv, reused and updated when they change),
# KenLM's lmplz for building language models, and Whisper base for offline tests.
set -euo pipefail
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3-venv ffmpeg chromium fonts-noto-cjk espeak-ng sox \
        cmake build-essential libboost-program-options-dev libboost-system-dev libboost-thread-dev \
        libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev >/dev/null
fi

CACHE="${KOREAN_SPEECH_CACHE:-$HOME/.cache/korean-speech}"
VENV="$CACHE/venv"
STAMP="$VENV/.requirements.sha256"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
# pyproject.toml says what is needed: its core and every extra (app, train, cluster, dev). The
# project itself is not installed: it runs from this folder (pip install . is for users).
REQS="$VENV/.requirements.txt"
"$VENV/bin/python" .ci/requirements.py --all > "$REQS"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r "$REQS"
    echo "$want" > "$STAMP"
fi
"$VENV/bin/pip" check

PYTHON="$VENV/bin/python" bash training/build_kenlm.sh
"$VENV/bin/python" -m training.fetch_whisper_base >/dev/null
echo "ready: $VENV/bin/python"
