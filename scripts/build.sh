#!/usr/bin/env bash
# Configures and builds d3 (Release) into ${D3_BUILD_DIR:-build}. Used by test.sh and demo.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${D3_BUILD_DIR:-$root/build}"
jobs="${D3_JOBS:-$(nproc)}"
# D3_CMAKE_ARGS: more cache settings (scripts/test.sh --sanitize sets the sanitizer build).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${D3_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$jobs"
