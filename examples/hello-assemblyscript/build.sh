#!/usr/bin/env bash
# Builds the hello-assemblyscript filter: build.sh OUT.wasm
#
# Needs `asc` (npm assemblyscript 0.28) on PATH; the project's build puts
# target/toolchains/node/node_modules/.bin there. The first `asc` on PATH of
# version 0.20 or later is used (an AssemblyScript 0.14 `asc`, as
# examples/compat-proxy-runtime needs, earlier on PATH does not get in the
# way). Downloads nothing and writes only OUT.wasm.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT.wasm" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$here/../../sdk/assemblyscript"
out="$1"

find_asc() {
  local IFS=:
  local dir
  for dir in $PATH; do
    [ -n "$dir" ] || continue
    if [ -x "$dir/asc" ] && "$dir/asc" --version 2>/dev/null | grep -Eq '^Version (0\.([2-9][0-9])|[1-9][0-9]*)\.'; then
      echo "$dir/asc"
      return 0
    fi
  done
  return 1
}

if ! asc="$(find_asc)"; then
  echo "build.sh: no AssemblyScript (0.20 or later; 0.28 tested) \`asc\` on PATH: npm install assemblyscript@0.28, then put its node_modules/.bin on PATH" >&2
  exit 1
fi
if [ ! -f "$sdk/index.ts" ]; then
  echo "build.sh: the AssemblyScript SDK is not at $sdk" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
# hello.ts imports the SDK as ../../sdk/assemblyscript (relative to itself).
# --runtime incremental: the garbage-collected runtime (memory handed to the
#   host comes from heap.alloc, which the collector never reclaims);
# --use abort= : no `env.abort` import (weft has no such host function); an
#   abort becomes a trap.
"$asc" "$here/hello.ts" -o "$out" -O3 --runtime incremental --use abort=
