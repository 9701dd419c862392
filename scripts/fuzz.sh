#!/usr/bin/env bash
# Fuzzes every parser that reads bytes from outside with libFuzzer (clang-14, ASan + UBSan):
#   scripts/fuzz.sh [SECONDS | --runs N] [TARGET...]
# Builds the targets of fuzz/ into ${D3_FUZZ_BUILD_DIR:-build-fuzz}, makes each target's seed
# corpus (the repository's real files: apps/config's plans, clusters, testbeds, traces and
# inference configs, a topology log and tiny ONNX exports of the pattern families (fuzz/seeds/),
# ONNX's own per-operator models from libonnx-testdata, and the model file,
# tensor bundles, layer shipments and stage specs d3 writes for a small graph, via make_seeds),
# first replays every input kept in fuzz/regressions/TARGET/ (inputs that once crashed), then
# fuzzes each target for SECONDS (default 60) or N inputs. Prints the inputs run per target.
# Exit 1 when a target crashed, leaked, hung or was reported by a sanitizer: the input is saved
# in BUILD/artifacts/ (keep it in fuzz/regressions/TARGET/ once fixed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${D3_FUZZ_BUILD_DIR:-$root/build-fuzz}"
limit=(-max_total_time=60)
all_targets=(model_file onnx tensor_bundle tensor_codec image layer_shipment stage_spec plan_json cluster_json testbed_json trace_json infer_config
  topology_log)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) [ $# -ge 2 ] || { echo "fuzz.sh: --runs needs a number" >&2; exit 2; }; limit=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    ''|*[!0-9]*) [[ " ${all_targets[*]} " == *" $1 "* ]] || { echo "fuzz.sh: unknown target '$1' (${all_targets[*]})" >&2; exit 2; }
                 targets+=("$1"); shift ;;
    *) limit=(-max_total_time="$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

source "$root/scripts/apt-install.sh"
"$root/scripts/install-deps.sh"
apt_install clang-14 libclang-rt-14-dev libonnx-testdata
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -DD3_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "${D3_JOBS:-$(nproc)}" >/dev/null

# Seeds, fresh each run (the corpus a run grows is kept in BUILD/corpus/TARGET/ for the next).
seeds="$build/seeds"
rm -rf "$seeds"
mkdir -p "$seeds" "$build/artifacts"
"$build/fuzz/make_seeds" "$seeds" >/dev/null
mkdir -p "$seeds"/{onnx,plan_json,cluster_json,testbed_json,trace_json,infer_config,topology_log}
cp "$root"/apps/config/*.plan.json "$seeds/plan_json/"
cp "$root"/apps/config/cluster*.json "$seeds/cluster_json/"
cp "$root"/apps/config/testbed-*.json "$seeds/testbed_json/"
cp "$root"/apps/config/*.trace.json "$seeds/trace_json/"
cp "$root"/apps/config/*.infer.json "$seeds/infer_config/"
cp "$root"/fuzz/seeds/topology_log/* "$seeds/topology_log/"
cp "$root"/fuzz/seeds/onnx/* "$seeds/onnx/"  # tiny exports with the multi-node patterns (ViT, ConvNeXt, DenseNet, Swin, MaxViT)
for model in /usr/share/libonnx-testdata/data/node/test_{conv,maxpool,averagepool,relu,gemm,matmul,add,concat,batchnorm,softmax,flatten,reshape,globalaveragepool}*/model.onnx; do
  [ -f "$model" ] && cp "$model" "$seeds/onnx/$(basename "$(dirname "$model")").onnx"
done

# One target: replays its kept regressions, then fuzzes; writes its summary line to
# $build/artifacts/TARGET.result and returns nonzero when it failed.
fuzz_one() {
  local t="$1" bin="$build/fuzz/fuzz_$1" result="$build/artifacts/$1.result"
  local regressions=("$root/fuzz/regressions/$t"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$bin" "${regressions[@]}" >"$build/artifacts/$t-regressions.log" 2>&1; then
      printf '%-15s FAILED: a kept regression input fails again (log %s)\n' "$t" "$build/artifacts/$t-regressions.log" >"$result"
      return 1
    fi
  fi
  local corpus="$build/corpus/$t" log="$build/artifacts/$t.log"
  mkdir -p "$corpus"
  # -rss_limit_mb: an input that makes a parser allocate past 2 GB is a finding too.
  if "$bin" "$corpus" "$seeds/$t" "${limit[@]}" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" >"$log" 2>&1; then
    local runs
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    printf '%-15s %10s inputs, no crash\n' "$t" "$runs" >"$result"
  else
    printf '%-15s FAILED: %s\n' "$t" "$(grep -m1 -E 'ERROR|SUMMARY|runtime error' "$log" || tail -n1 "$log")" >"$result"
    return 1
  fi
}

# The targets run side by side, one per core (each libFuzzer process is single-threaded, so a
# target gets its SECONDS of one core either way).
jobs="${D3_JOBS:-$(nproc)}"
running=0
for t in "${targets[@]}"; do
  rm -f "$build/artifacts/$t.result"
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true
failed=0
summary=()
for t in "${targets[@]}"; do
  line="$(cat "$build/artifacts/$t.result" 2>/dev/null || printf '%-15s FAILED: no result (the run was cut short)' "$t")"
  summary+=("$line")
  if [[ "$line" == *FAILED* ]]; then failed=1; fi
done
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ] || { echo "fuzz.sh: a target failed; the crashing inputs are in $build/artifacts/" >&2; exit 1; }
