#!/usr/bin/env bash
# Builds the hello-c example: build.sh OUT.wasm
#
# Needs clang-14 with the wasm32-wasi target and wasi-libc on PATH
# (Debian: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32).
# Writes nothing but OUT.wasm (clang's intermediate objects go to $TMPDIR).
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
sdk="$here/../../sdk/c"

command -v clang-14 >/dev/null || {
    echo "$0: clang-14 not found on PATH (apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)" >&2
    exit 1
}

mkdir -p "$(dirname "$out")"
clang-14 --target=wasm32-wasi -O2 -mexec-model=reactor \
    -std=c11 -Wall -Wextra \
    -I "$sdk" \
    -Wl,--strip-all \
    -o "$out" \
    "$here/hello.c" "$sdk/proxy_wasm_helpers.c"
