#!/usr/bin/env bash
# Builds the compat-proxy-runtime filter: build.sh OUT.wasm
#
# Needs the published AssemblyScript proxy-wasm SDK and the compiler it was
# written for, installed in one npm prefix:
#   npm install --prefix target/toolchains/as-compat assemblyscript@0.14.9 @solo-io/proxy-runtime@0.1.8
# and that prefix's node_modules/.bin on PATH (the project's build puts
# target/toolchains/as-compat/node_modules/.bin there). The first `asc` on
# PATH that is version 0.14.x is used (so an AssemblyScript 0.28 `asc`
# earlier on PATH does not get in the way); the SDK is resolved from the
# node_modules directory that `asc` lives in. Downloads nothing and writes
# only OUT.wasm.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT.wasm" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
out="$1"

find_asc() {
  local IFS=:
  local dir
  for dir in $PATH; do
    [ -n "$dir" ] || continue
    if [ -x "$dir/asc" ] && "$dir/asc" --version 2>/dev/null | grep -q '^Version 0\.14\.'; then
      echo "$dir/asc"
      return 0
    fi
  done
  return 1
}

if ! asc="$(find_asc)"; then
  echo "build.sh: no AssemblyScript 0.14 \`asc\` on PATH; run" >&2
  echo "  npm install --prefix target/toolchains/as-compat assemblyscript@0.14.9 @solo-io/proxy-runtime@0.1.8" >&2
  echo "and put target/toolchains/as-compat/node_modules/.bin on PATH" >&2
  exit 1
fi
modules="$(cd "$(dirname "$asc")/.." && pwd)"
if [ ! -f "$modules/@solo-io/proxy-runtime/assembly/index.ts" ]; then
  echo "build.sh: @solo-io/proxy-runtime is not installed next to $asc (in $modules)" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
# The command line of the SDK's own "asbuild:optimized" script (asc 0.14:
# -b is the binary output; the default runtime is "full"). --path lets asc
# find @solo-io/proxy-runtime in that node_modules; --use
# abort=abort_proc_exit routes aborts to the SDK's handler, which logs at
# CRITICAL and calls wasi_unstable.proc_exit(255).
"$asc" "$here/compat.ts" -b "$out" --path "$modules" --use abort=abort_proc_exit --optimize
