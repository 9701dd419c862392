#!/usr/bin/env bash
# Installs dependencies, builds d3 and runs every test with ctest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "${D3_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${D3_TEST_JOBS:-1}" "$@"
