#!/usr/bin/env bash
# Configures and builds d3 (Release) into ${D3_BUILD_DIR:-build}. Used by test.sh and demo.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${D3_BUILD_DIR:-$root/build}"
jobs="${D3_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$jobs"
