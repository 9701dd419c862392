#!/usr/bin/env bash
# Installs dependencies, builds d3 and runs every test with ctest.
#   scripts/test.sh [--sanitize | --sanitize=thread] [CTEST ARGS...]
# --sanitize builds everything with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
# and runs the whole suite under them: a report ends its process (tests, the d3-node processes
# they start, d3-bench), and any report in the tests' output fails the run, also when ctest
# passed. --sanitize=thread builds with ThreadSanitizer into build-tsan/ (see README).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sanitize=""
case "${1:-}" in
  --sanitize|--sanitize=address) sanitize=address; shift ;;
  --sanitize=thread) sanitize=thread; shift ;;
esac
"$root/scripts/install-deps.sh"
if [ -n "$sanitize" ]; then
  suffix=$([ "$sanitize" = address ] && echo asan || echo tsan)
  export D3_BUILD_DIR="${D3_BUILD_DIR:-$root/build-$suffix}"
  export D3_CMAKE_ARGS="-DD3_SANITIZE=$sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo"
  # A report ends the process with a nonzero code (UBSan halts too). Suppressions: third-party
  # code only (scripts/sanitizers/), each with the reason.
  export ASAN_OPTIONS="exitcode=66:detect_leaks=1:check_initialization_order=1"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$root/scripts/sanitizers/ubsan.supp"
  export LSAN_OPTIONS="suppressions=$root/scripts/sanitizers/lsan.supp"
  export TSAN_OPTIONS="exitcode=66:suppressions=$root/scripts/sanitizers/tsan.supp"
fi
build_start=$SECONDS
"$root/scripts/build.sh"
echo "test.sh: built in $((SECONDS - build_start)) s"
cd "${D3_BUILD_DIR:-$root/build}"
status=0
# One job per core: the tests that start node processes or time things are RUN_SERIAL
# (tests/CMakeLists.txt), so they still run alone.
ctest --output-on-failure -j "${D3_TEST_JOBS:-$(nproc)}" "$@" || status=$?
if [ -n "$sanitize" ]; then
  # Reports of the test programs are in ctest's log; the node processes' reach it too (a report
  # aborts a node, and the fixtures print the log of a node that ends badly).
  pattern='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer'
  count="$(grep -cE "$pattern" Testing/Temporary/LastTest.log || true)"
  if [ "$count" != 0 ]; then
    echo "test.sh: $count sanitizer report(s) in $PWD/Testing/Temporary/LastTest.log:" >&2
    grep -E "$pattern" Testing/Temporary/LastTest.log | sort | uniq -c | head -n 20 >&2
    status=1
  else
    echo "test.sh: no $sanitize sanitizer report in any test's output"
  fi
fi
exit "$status"
