#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the PyPI source package into a cache outside the repo.
#
#   training/build_kenlm.sh [BIN_DIR]        default: $HOME/.cache/korean-speech/kenlm/bin
#
# Needs cmake, a C++ compiler and the Debian packages
#   libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
#   zlib1g-dev libbz2-dev liblzma-dev
# Idempotent: does nothing when both binaries already exist. KENLM_MAX_ORDER (default 6) is the
# highest n-gram order the tools accept; 6 is also what the KenLM inside the flashlight-text wheel
# (our decoder) can load, so a higher order here would only build LMs the decoder rejects.
set -euo pipefail

BIN_DIR="${1:-${KENLM_BIN:-$HOME/.cache/korean-speech/kenlm/bin}}"
KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
KENLM_MAX_ORDER="${KENLM_MAX_ORDER:-6}"
PYTHON="${PYTHON:-python3}"

if [[ -x "$BIN_DIR/lmplz" && -x "$BIN_DIR/build_binary" ]]; then
    echo "KenLM already built: $BIN_DIR"
    exit 0
fi

for tool in cmake make c++; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found; install cmake and build-essential" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip download --quiet --no-binary kenlm --no-deps "kenlm==$KENLM_VERSION" -d "$WORK"
tar -xzf "$WORK/kenlm-$KENLM_VERSION.tar.gz" -C "$WORK"
SRC="$WORK/kenlm-$KENLM_VERSION"

cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER="$KENLM_MAX_ORDER" \
    -DCOMPILE_TESTS=OFF -DENABLE_PYTHON=OFF >"$WORK/cmake.log" \
    || { cat "$WORK/cmake.log" >&2; echo "error: cmake failed (missing Boost/zlib/bz2/lzma dev packages?)" >&2; exit 1; }
cmake --build "$WORK/build" --target lmplz build_binary -j "$(nproc)"

mkdir -p "$BIN_DIR"
install -m 755 "$WORK/build/bin/lmplz" "$WORK/build/bin/build_binary" "$BIN_DIR/"
echo "KenLM $KENLM_VERSION (max order $KENLM_MAX_ORDER) installed to $BIN_DIR"
