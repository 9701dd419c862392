#!/usr/bin/env bash
# The command-line apps on bad input: each case must exit with the documented code and print one
# line naming the problem. Usage: cli_test.sh BIN_DIR
set -u
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# expect CODE WORD COMMAND...: runs COMMAND, checks its exit code and that stderr contains WORD.
expect() {
  local code="$1" word="$2"
  shift 2
  local err
  err="$("$@" 2>&1 >/dev/null)"
  local got=$?
  if [ "$got" -eq "$code" ] && [[ "$err" == *"$word"* ]] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $* -> exit $got (expected $code), stderr: $err (expected one line with '$word')"
  fi
}

head -c 100 /dev/zero > "$work/short.bin"
printf 'not a model' > "$work/bad.d3m"
printf 'garbage' > "$work/bad.onnx"
printf '{"event": "node_up"}\n{oops\n' > "$work/bad.jsonl"

expect 2 "unknown model 'nope'" "$bin/d3-run" --model nope
expect 2 "holds 100 bytes" "$bin/d3-run" --model resnet18 --input "$work/short.bin"
expect 2 "cannot open input file" "$bin/d3-run" --model resnet18 --input "$work/missing.bin"
expect 2 "wrong magic" "$bin/d3-run" --model "$work/bad.d3m"
expect 2 "not a valid ONNX protobuf" "$bin/d3-run" --model "$work/bad.onnx"
expect 2 "--threads expects an integer" "$bin/d3-run" --threads 0
expect 2 "unknown option '--bogus'" "$bin/d3-run" --bogus
expect 2 "has no layer named 'nothere'" "$bin/d3-run" --model resnet18 --tiles 2x2 --tile-run conv1:nothere
expect 2 "leaves the run" "$bin/d3-run" --model resnet18 --tiles 2x2 --tile-run maxpool:layer1.0.conv1
expect 2 "not spatially local" "$bin/d3-run" --model alexnet --tiles 2x1 --tile-run features.10:classifier.1
expect 2 "give a plan" "$bin/d3-infer" --nodes device=127.0.0.1:1
expect 2 "--strategy expects" "$bin/d3-infer" --nodes device=127.0.0.1:1 --strategy fastest
expect 2 "cannot open config" "$bin/d3-infer" --config "$work/missing.json"
expect 2 "line 2" "$bin/d3-topology" "$work/bad.jsonl"
expect 2 "unknown benchmark" "$bin/d3-bench" nonsense
expect 2 "unknown model 'nope'" "$bin/d3-bench" grid --models resnet18,nope
expect 2 "unknown scenario '5G'" "$bin/d3-bench" grid --scenarios 4G,5G
expect 2 "unknown strategy 'fastest'" "$bin/d3-bench" grid --strategies hpa,fastest
expect 2 "cannot open testbed file" "$bin/d3-bench" grid --testbed "$work/missing.json"
printf '{"scenarios": {"4G": {"edge-cloud": {"mbit_per_s": 0, "latency_ms": 5}}}}' > "$work/bad-testbed.json"
expect 2 "mbit_per_s must be a positive number" "$bin/d3-bench" grid --testbed "$work/bad-testbed.json"
expect 2 "--requests expects an integer" "$bin/d3-bench" grid --requests 0
expect 2 "--lan expects comma-separated positive numbers, got '0'" "$bin/d3-bench" regimes --lan 10,0
expect 2 "unknown option '--uplinks'" "$bin/d3-bench" regimes --uplinks 4G
expect 2 "unknown model 'nope'" "$bin/d3-bench" regimes --models nope
printf '{"steps": [{"at_ms": 0, "uplink": "5G"}]}' > "$work/bad.trace.json"
expect 2 "step 0: uplink must be CAT1, 3G, 4G or WiFi" "$bin/d3-bench" adapt --trace "$work/bad.trace.json"
expect 2 "unknown option '--fast'" "$bin/d3-bench" adapt --fast
expect 2 "--provision with --images" "$bin/d3-bench" adapt --provision --images
expect 2 "it needs --threads 1" "$bin/d3-bench" engine --cpu 0 --threads 1,2
config="$(cd "$(dirname "$0")/../apps/config" && pwd)"
printf '/sys/fs/cgroup/cpu/d3-device 500\n' > "$work/low.quotas"
expect 2 "--quotas: cannot read" "$bin/d3-bench" realnet --cluster "$config/cluster.json" --testbed "$config/testbed-realnet.json" \
  --speed-scale 0.9 --out "$work/rn" --quotas "$work/missing.quotas"
expect 2 "is below the kernel's 1000 us" "$bin/d3-bench" realnet --cluster "$config/cluster.json" \
  --testbed "$config/testbed-realnet.json" --speed-scale 0.9 --out "$work/rn" --quotas "$work/low.quotas"
expect 2 "--settle expects an integer in [0, 100]" "$bin/d3-bench" realnet --cluster "$config/cluster.json" \
  --testbed "$config/testbed-realnet.json" --speed-scale 0.9 --out "$work/rn" --settle -1
expect 2 "trace: cannot open" "$bin/d3-infer" --nodes device=127.0.0.1:1 --plan "$work/p.json" --trace "$work/missing.trace.json"
printf '{"nodes": [{"name": "device", "port": 0}]}' > "$work/bad-cluster.json"
expect 2 "nodes[0].port must be a port in [1, 65535]" "$bin/d3-infer" --cluster "$work/bad-cluster.json" --plan "$work/p.json"
expect 2 "cannot open cluster file" "$bin/d3-infer" --cluster "$work/missing.json" --plan "$work/p.json"
expect 2 "--in-flight expects an integer" "$bin/d3-infer" --nodes device=127.0.0.1:1 --plan "$work/p.json" --in-flight 0
expect 2 "--convert needs two values" "$bin/d3-run" --convert x.onnx
# d3-run --dump: the tensor of a named ONNX node (the last node's is the output), errors by name.
tiny="$(dirname "$0")/../fuzz/seeds/onnx/tiny_preact.onnx"
expect 2 "--dump names ONNX nodes: it needs an ONNX model" "$bin/d3-run" --model resnet18 --dump x=y
expect 2 "--dump takes NODE=FILE, got 'x'" "$bin/d3-run" --model "$tiny" --dump x
expect 2 "--dump /nope: tiny_preact: no layer named '/nope'" "$bin/d3-run" --model "$tiny" --repeat 1 --dump "/nope=$work/d.bin"
if "$bin/d3-run" --model "$tiny" --repeat 1 --output "$work/out.bin" --dump "/hs/Mul=$work/hs.bin" \
     --dump "/conv/Conv=$work/conv.bin" > /dev/null && cmp -s "$work/out.bin" "$work/hs.bin" &&
   [ "$(stat -c %s "$work/conv.bin")" -eq 1024 ] && ! cmp -s "$work/conv.bin" <(head -c 1024 "$work/out.bin"); then
  passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: d3-run --dump of tiny_preact's output and conv"; fi
expect 2 "--dot needs a value" "$bin/d3-topology" x.jsonl --dot
expect 2 "--adapt needs --strategy hpa" "$bin/d3-infer" --nodes device=127.0.0.1:1 --strategy dads --adapt

# d3-node: a value CAF's INI reader would drop (the member then keeps its default) is an error
# naming the file, the line and the key; --help lists the [d3] options.
printf '[d3]\nname="x"\nspeed="fast"\n' > "$work/speed.ini"
expect 2 "line 3: [d3] speed must be a number" timeout 10 "$bin/d3-node" --config-file="$work/speed.ini"
printf '[d3]\nname="x"\nport=70000\n' > "$work/port.ini"
expect 2 "[d3] port must be an integer in [0, 65535]" timeout 10 "$bin/d3-node" --config-file="$work/port.ini"
printf '[d3]\nname="x"\ncache_mb="big"\n' > "$work/cache.ini"
expect 2 "[d3] cache_mb must be an integer >= 0" timeout 10 "$bin/d3-node" --config-file="$work/cache.ini"
printf '[d3]\nname="x"\nrole=edge\n' > "$work/role.ini"
expect 2 "strings must be double-quoted" timeout 10 "$bin/d3-node" --config-file="$work/role.ini"
printf '[d3]\nname="x"\nspeeed=1\n' > "$work/key.ini"
expect 2 "unknown [d3] key 'speeed'" timeout 10 "$bin/d3-node" --config-file="$work/key.ini"
# TLS: on by default; a node or app without a usable identity does not start, and says which file.
certs="$bin/../certs"
printf '[d3]\nname="x"\n' > "$work/notls.ini"
expect 2 "TLS is on but the cluster CA is not given" timeout 10 "$bin/d3-node" --config-file="$work/notls.ini"
# node_ini FILE D3-LINES CERTIFICATE KEY: a node config with the [d3] lines and an [openssl] section.
node_ini() {
  printf '[d3]\n%b[openssl]\ncafile="%s/ca.pem"\ncertificate="%s/%s"\nkey="%s/%s"\n' "$2" "$certs" "$certs" "$3" "$certs" "$4" > "$1"
}
node_ini "$work/wrongkey.ini" 'name="x"\n' edge1.pem edge2.key
expect 2 "does not belong to certificate" timeout 10 "$bin/d3-node" --config-file="$work/wrongkey.ini"
node_ini "$work/missing.ini" 'name="x"\n' missing.pem edge1.key
expect 2 "missing.pem' cannot be read" timeout 10 "$bin/d3-node" --config-file="$work/missing.ini"
# Provisioned models (INI models): one that cannot be loaded, or does not fit the cache, is a bad configuration.
node_ini "$work/models.ini" 'name="edge1"\nmodels="resnet18,nosuch"\n' edge1.pem edge1.key
expect 2 "[d3] models: nosuch: unknown model 'nosuch'" timeout 30 "$bin/d3-node" --config-file="$work/models.ini"
node_ini "$work/budget.ini" 'name="edge1"\nmodels="resnet18"\ncache_mb=10\n' edge1.pem edge1.key
expect 2 "[d3] models: resnet18: layer cache budget of 10 MB exceeded" timeout 30 "$bin/d3-node" --config-file="$work/budget.ini"
printf '{"tls": true, "nodes": [{"name": "device", "port": 1}]}' > "$work/tls-cluster.json"
expect 2 "tls: true is not enough" "$bin/d3-infer" --cluster "$work/tls-cluster.json" --plan "$work/p.json"
expect 2 "nowhere/ca.pem' cannot be read" "$bin/d3-infer" --nodes device=127.0.0.1:1 --strategy device --tls "$work/nowhere"
if "$bin/d3-node" --help | grep -q "speed    emulated compute capacity"; then passed=$((passed + 1)); else
  failed=$((failed + 1)); echo "FAIL: d3-node --help does not list the [d3] options"; fi

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
