#!/usr/bin/env bash
# Builds the hello-wat example: bash build.sh OUT.wasm
# Needs wabt's wat2wasm on PATH; downloads nothing and writes only OUT.wasm.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
mkdir -p "$(dirname "$out")"
wat2wasm "$here/hello.wat" -o "$out"
