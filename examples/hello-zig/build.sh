#!/usr/bin/env bash
# Builds the hello-zig filter: bash build.sh OUT.wasm
#
# Needs `python` on PATH with the `ziglang` package (Zig 0.17); the
# project's build puts target/toolchains/venv/bin on PATH. Nothing is
# downloaded; Zig's caches go to a temporary directory (unless
# ZIG_LOCAL_CACHE_DIR / ZIG_GLOBAL_CACHE_DIR say otherwise), so the only
# file written outside it is OUT.wasm.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$(cd "$here/../../sdk/zig" && pwd)"

out_dir="$(dirname "$1")"
mkdir -p "$out_dir"
out="$(cd "$out_dir" && pwd)/$(basename "$1")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Per-module options (-target, -O, -fsingle-threaded) come before the
# first -M, which makes the root module; the SDK module inherits them.
# -fsingle-threaded: std.heap.wasm_allocator requires it in Zig 0.17.
# -rdynamic: without it the exported callbacks are dropped.
cd "$tmp"
python -m ziglang build-exe \
    -target wasm32-freestanding -O ReleaseSmall -fsingle-threaded \
    --dep proxy_wasm \
    -Mroot="$here/hello.zig" \
    -Mproxy_wasm="$sdk/proxy_wasm.zig" \
    -fno-entry -rdynamic \
    --cache-dir "${ZIG_LOCAL_CACHE_DIR:-$tmp/cache}" \
    --global-cache-dir "${ZIG_GLOBAL_CACHE_DIR:-$tmp/global-cache}" \
    -femit-bin="$out"
