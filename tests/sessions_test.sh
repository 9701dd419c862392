#!/usr/bin/env bash
# Several app sessions on one long-running cluster, as users run d3-infer: four d3-node processes
# on loopback (mutual TLS, ports chosen by the kernel), then d3-infer --strategy hpa --adapt three
# times in a row. Each session probes the links between nodes (every third answer) and must get
# every probe answered: a second session once found every node-to-node probe refused at once
# (request_receiver_down: the probes were relayed through the first app, gone by then), and a
# node kept watching, for the next app, the peers of an app long gone. Every request is answered
# and exact in every session.
#   sessions_test.sh BIN_DIR SOURCE_DIR
set -u
bin="$1"
src="$2"
work="$(mktemp -d -t d3-sessions-XXXXXX)"
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "sessions_test: FAIL: $*"; for f in "$work"/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }

"$src/scripts/make-certs.sh" "$work/certs" device edge1 edge2 cloud app > /dev/null || fail "make-certs.sh"
declare -A role=([device]=device [edge1]=edge [edge2]=edge [cloud]=cloud)
for n in device edge1 edge2 cloud; do
  cat > "$work/$n.ini" <<INI
[d3]
name="$n"
role="${role[$n]}"
host="127.0.0.1"
port=0
tls=true
[openssl]
cafile="$work/certs/ca.pem"
certificate="$work/certs/$n.pem"
key="$work/certs/$n.key"
INI
  "$bin/d3-node" --config-file="$work/$n.ini" > "$work/$n.log" 2>&1 &
  pids+=($!)
done
nodes=""
for n in device edge1 edge2 cloud; do
  for _ in $(seq 100); do grep -q "listening on" "$work/$n.log" 2>/dev/null && break; sleep 0.1; done
  port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/$n.log" | head -n1)"
  [ -n "$port" ] || fail "node $n did not start"
  nodes+="{\"name\": \"$n\", \"role\": \"${role[$n]}\", \"host\": \"127.0.0.1\", \"port\": $port},"
done
cat > "$work/cluster.json" <<JSON
{"tls": {"dir": "$work/certs", "name": "app"}, "nodes": [${nodes%,}]}
JSON

for session in 1 2 3; do
  timeout 120 "$bin/d3-infer" --cluster "$work/cluster.json" --strategy hpa --adapt --clock wall --requests 12 \
    --verify --timeout-ms 30000 --log "$work/session$session.jsonl" > "$work/session$session.log" 2>&1 || { cat "$work/session$session.log"; fail "session $session"; }
  grep -q "12 answered, 0 failed" "$work/session$session.log" && grep -q "verify: 12 of 12 answers memcmp-equal" "$work/session$session.log" \
    || { cat "$work/session$session.log"; fail "session $session lost or changed answers"; }
  if grep -E "got no echo|stage error|down \(" "$work/session$session.log"; then
    fail "session $session: a probe failed or a live node was taken for down"
  fi
  probes="$(grep -c '"event":"link_probed"' "$work/session$session.jsonl")"
  [ "$probes" -gt 0 ] || fail "session $session probed no link"
  echo "sessions_test: session $session: 12 of 12 answered exact, $probes link probes all answered, no node taken for down"
done
echo "sessions_test: passed"
