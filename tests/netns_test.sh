#!/usr/bin/env bash
# d3 across network namespaces (scripts/netns-cluster.sh), as root: a three-tier plan tiled over
# two edge nodes, each node in its own namespace with kernel-shaped links, checked memcmp-equal to
# one process by d3-infer --verify; a bandwidth drop applied with tc while requests run with
# --adapt (the planner, learning from wall-clock reports, migrates; none lost, all exact); the
# three-tier plan again with one edge's link taken down during the requests (failover: none
# lost); and the shaped device<->edge bandwidth measured within 10% of its configured 100 Mbit/s.
# Every phase is a new d3-infer session on the same nodes, as a user runs it. Skips (exit 77,
# ctest SKIP_RETURN_CODE) with a one-line reason when not root, without namespaces, tc or cgroup
# v1 cpu, or when a netns cluster is up already.
#   netns_test.sh SOURCE_DIR BIN_DIR
set -u
src="$1"
bin="$2"
# Sanitized builds run slower: the phases' time bounds (hang guards) scale (tests/CMakeLists.txt).
scale="${D3_TIME_SCALE:-1}"
case "$scale" in ''|*[!0-9]*) scale=1 ;; esac
skip() { echo "netns_test: skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root"
command -v ip >/dev/null && command -v tc >/dev/null && command -v python3 >/dev/null || skip "ip, tc or python3 missing"
[ -d /sys/fs/cgroup/cpu ] || skip "no cgroup v1 cpu controller"
ip netns list 2>/dev/null | grep -q '^d3-' && skip "a netns cluster is up already"
probe="d3probe$$"
ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces"
ip netns del "$probe"

work="$(mktemp -d -t d3-netns-test-XXXXXX)"
cleanup() { "$src/scripts/netns-cluster.sh" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
# The reason twice: before the node logs and as the last line (CI keeps only an output's ends).
fail() {
  echo "netns_test: FAIL: $*"
  for f in "$work"/cluster/*.log; do echo "== $f"; tail -n 5 "$f"; done
  echo "netns_test: FAIL: $*"
  exit 1
}

# Latencies as the kernel gives them (netns-cluster.sh shapes bandwidth only, no netem here): with
# the 2 and 20 ms of D3's setting in the testbed, hpa priced the all-cloud plan it must start from
# at 108 ms against 112 for the edges (measured 65), and one noisy probe chose the edges.
cat > "$work/testbed.json" <<'JSON'
{"name": "netns_test", "device_speed": 0.1, "edge_speed": 0.2, "cloud_speed": 0.9, "edge_nodes": 2,
 "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 0.2}, "edge-edge": {"mbit_per_s": 1000, "latency_ms": 0.2},
           "edge-cloud": {"mbit_per_s": 200, "latency_ms": 0.5}}}
JSON
"$src/scripts/netns-cluster.sh" up --testbed "$work/testbed.json" --edges 2 --node-binary "$bin/d3-node" \
  --out "$work/cluster" || fail "netns-cluster.sh up"

# Each node runs in its namespace and under its cpu quota.
for n in device edge1 edge2 cloud; do
  pid="$(ip netns pids "d3-$n" | head -n1)"
  [ -n "$pid" ] && grep -q ":cpu:/d3-$n\$" "/proc/$pid/cgroup" || fail "d3-node $n is not in cgroup cpu:/d3-$n"
done

# The plan: device conv1..maxpool, layer1..layer2 tiled 2x1 over edge1 and edge2, cloud layer3..fc.
timeout $((90 * scale)) ip netns exec d3-device "$bin/d3-infer" --cluster "$work/cluster/cluster.json" \
  --plan "$src/apps/config/resnet18-3tier.plan.json" --requests 3 --verify --timeout-ms 60000 > "$work/infer.log" 2>&1 \
  || { cat "$work/infer.log"; fail "d3-infer across namespaces"; }
grep -q "verify: 3 of 3 answers memcmp-equal" "$work/infer.log" || { cat "$work/infer.log"; fail "answers not verified"; }
grep "verify:" "$work/infer.log"

# A bandwidth drop on real links: the backbone (edge<->cloud, and so device<->cloud) falls from
# 200 to 2 Mbit/s with tc while 100 requests run under --adapt (wall clock: the stages report real
# times, each node's clock mapped onto the app's). The plan hpa starts from uses the cloud (a fast
# cloud, slow edges); after the drop the planner must migrate off it, with no request lost. The
# drop comes 4 s after the deployment; 100 requests leave about half of them for after it (at
# ~80 ms a request on the cloud, 60 requests had left too few to adapt with). At most 2
# migrations after the drop (issue 14's bound for one change). Runs used to count 3-6: an edge's
# tensors to the cloud held its pongs seconds behind them on the 2 Mbit/s link, the cloud took
# the live edge for gone, and the app failed over and back; nodes now announce large sends
# (incoming notices), and 5 runs after that fix migrated 1, 1, 1, 2 and 1 times.
# The bound: 100 requests at ~2.4 s each on the dropped backbone if the planner never moved
# (one CI run was killed at 150 s, with no output to tell a late migration from none), plus the
# deployment; a run that passes takes ~40 s.
# The migration ships up to 47 MB from the app, which shares the device namespace's 100 Mbit/s
# egress with the device node, whose pings to the receiving edge then wait behind it: a CI run
# saw the device node report a live edge1 silent for 1618 ms, and the app failed over and back
# (4 migrations). The app now has the reporter recheck such a report before it acts on it.
# A migration's weights now leave in the background (1 MB parts) while the running plan answers:
# a migration of 10 MB or more must have shipped in the background, and the answers of the old
# plan meanwhile are reported.
timeout $((300 * scale)) ip netns exec d3-device "$bin/d3-infer" --cluster "$work/cluster/cluster.json" --strategy hpa --adapt \
  --clock wall --requests 100 --verify --timeout-ms 60000 --log "$work/adapt.jsonl" > "$work/adapt.log" 2>&1 &
infer=$!
for _ in $(seq 120); do grep -q "^deployed" "$work/adapt.log" && break; sleep 1; done
grep -q "cloud" <(grep "strategy hpa" "$work/adapt.log") || { cat "$work/adapt.log"; fail "hpa's first plan does not use the cloud"; }
sleep 4
drop="$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)"
"$src/scripts/netns-cluster.sh" shape edge-cloud=2 || fail "tc bandwidth drop"
wait "$infer" || { cat "$work/adapt.log"; grep -vE '"link_probed"' "$work/adapt.jsonl" | tail -n 12;
                   fail "d3-infer --adapt during a bandwidth drop"; }
"$src/scripts/netns-cluster.sh" shape edge-cloud=200 > /dev/null
grep -q "100 answered, 0 failed" "$work/adapt.log" && grep -q "verify: 100 of 100 answers memcmp-equal" "$work/adapt.log" \
  || { cat "$work/adapt.log"; fail "requests lost or inexact during the bandwidth drop"; }
python3 - "$work/adapt.jsonl" "$drop" <<'PY' || { cat "$work/adapt.log"; fail "no migration, or more than 2, after the bandwidth drop"; }
import json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
after = [e for e in events if e.get("event") == "layers_migrated" and e["time"] >= sys.argv[2]]
print("netns_test: after the drop at %s: %d migration(s), the first at %s moving %d layers" % (
    sys.argv[2], len(after), after[0]["time"] if after else "-", after[0]["layers_moved"] if after else 0))
if not 1 <= len(after) <= 2:  # adapts, and settles
    # What each migration rested on: the planner's verdict on the answer before it (its reason
    # and the estimates it judged on; a run that migrated 3 times left no more than the count).
    for m in after:
        verdicts = [e for e in events if e.get("event") == "planner_verdict" and e["time"] <= m["time"]
                    and not e.get("verdict", "").startswith("waiting for the migration")]
        v = verdicts[-1] if verdicts else {}
        print("netns_test: v%s -> v%s at %s, %s layers moved; last verdict before it: %s; Mbit/s %s; speeds %s" % (
            m.get("from_version"), m.get("to_version"), m["time"], m.get("layers_moved"), v.get("verdict", "-"),
            json.dumps(v.get("mbit_per_s", {})), json.dumps(v.get("speeds", {}))))
    sys.exit(1)
# A migration that ships megabytes ships them in the background: the running plan answers
# meanwhile (the planner is told, and waits for the new one before it judges again).
for m in after:
    if m.get("weight_bytes_shipped", 0) < 10e6: continue
    if not m.get("shipped_in_background"): sys.exit("a %d B migration stopped the requests" % m["weight_bytes_shipped"])
    answers = [e for e in events if e.get("event") == "planner_verdict" and e["plan_version"] == m["from_version"]]
    meanwhile = [e for e in answers if e["verdict"].startswith("waiting for the migration")]
    latencies = sorted(e["latency_ms"] for e in answers)
    if not latencies: continue  # a failover's version no request ran on
    shipping_ms = m["wall_ready_ms"] - m["wall_start_ms"]
    print("netns_test: v%d -> v%d shipped %.1f MB in %.0f ms while v%d answered %d requests (median %.0f ms)" % (
        m["from_version"], m["to_version"], m["weight_bytes_shipped"] / 1e6, shipping_ms, m["from_version"],
        len(meanwhile), latencies[len(latencies) // 2]))
    # Reported, not required: one CI run saw no answer of the old plan during a 6.5 s shipment
    # (its requests took ~2.5 s after the drop); the cause is not known yet.
PY
grep -E "^migration|planner estimates" "$work/adapt.log"
grep -E '"event":"(node_down|node_rejoined|peer_report_[a-z]*)"' "$work/adapt.jsonl" | head -n 6

# A link between two nodes fails while both still answer the app: edge2 and the cloud lose each
# other (a blackhole route each way; this kernel has no tc drop action) during 40 requests on the
# tiled plan, whose edge2 tile sends to the cloud. A node reports its silent peer; the app, which
# still hears both, has the reporter recheck the peer (protocol.hpp: recheck), fails over only
# when that ping goes unanswered too, and every request is answered once, exact.
ec="$(ip -n d3-cloud -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)"
e2="$(ip -n d3-edge2 -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)"
heal() { ip -n d3-cloud route del blackhole "$e2/32" 2> /dev/null; ip -n d3-edge2 route del blackhole "$ec/32" 2> /dev/null; true; }
timeout $((120 * scale)) ip netns exec d3-device "$bin/d3-infer" --cluster "$work/cluster/cluster.json" \
  --plan "$src/apps/config/resnet18-3tier.plan.json" --requests 40 --in-flight 2 --verify --timeout-ms 60000 \
  --log "$work/partition.jsonl" > "$work/partition.log" 2>&1 &
infer=$!
for _ in $(seq 120); do grep -q "^deployed" "$work/partition.log" && break; sleep 1; done
sleep 1
ip -n d3-cloud route add blackhole "$e2/32" && ip -n d3-edge2 route add blackhole "$ec/32" || { heal; fail "blackhole routes"; }
wait "$infer" || { heal; cat "$work/partition.log"; fail "d3-infer with edge2<->cloud cut"; }
heal
grep -q "40 answered, 0 failed" "$work/partition.log" && grep -q "verify: 40 of 40 answers memcmp-equal" "$work/partition.log" \
  || { cat "$work/partition.log"; fail "requests lost with edge2<->cloud cut"; }
grep -q '"event":"node_down".*unreachable from node.*no answer to a recheck either' "$work/partition.jsonl" \
  || { cat "$work/partition.log"; grep -E "node_down|peer_report" "$work/partition.jsonl"; fail "the cut link was not failed over after a recheck"; }
grep -E '"event":"(node_down|peer_report_[a-z]*)"' "$work/partition.jsonl" | head -n 3
# edge2 still answers the app, but it is not taken back while the cloud cannot reach it (a plan
# across the cut link would fail over again: under ASan, with the cut outlasting the hold, edge2
# used to fail over and back 4 times).
if grep -q '"event":"node_rejoined"' "$work/partition.jsonl"; then
  grep -E '"event":"(node_down|node_rejoined|link_[a-z_]*)"' "$work/partition.jsonl"
  fail "edge2 was taken back while its link to the cloud was cut"
fi
# The connections between the two resume after TCP's retransmission backoff: wait until nothing
# is left unsent on them, either way (bounded), so that the next session starts on working links.
# (Measured under ASan: a 66 s cut left 101 KB unsent from edge2 and 2.6 KB from the cloud, sent
# 45 s after the heal; a session started before that got no answer from its stage on edge2
# within 60 s.)
unsent() { ip netns exec "$1" ss -tnH state established "( dst $2 or src $2 )" | awk '{s += $2} END {print s + 0}'; }
for _ in $(seq $((120 * scale))); do
  [ "$(unsent d3-cloud "$e2")" = 0 ] && [ "$(unsent d3-edge2 "$ec")" = 0 ] && break
  sleep 0.5
done
echo "netns_test: edge2<->cloud unsent after the heal: $(unsent d3-cloud "$e2") and $(unsent d3-edge2 "$ec") B"

# A link taken down during requests (the last session on these nodes: after the outage their
# connections to edge2 wait out TCP's retransmission backoff, up to tens of seconds): edge2's
# interface goes down while 40 requests run (2 in flight); its connections stay open but carry
# nothing, so the app finds edge2 silent, fails over to a plan without it, re-sends what was
# unanswered, and every request is answered once, exact.
timeout $((120 * scale)) ip netns exec d3-device "$bin/d3-infer" --cluster "$work/cluster/cluster.json" \
  --plan "$src/apps/config/resnet18-3tier.plan.json" --requests 40 --in-flight 2 --verify --timeout-ms 60000 \
  > "$work/fault.log" 2>&1 &
infer=$!
# Down once the plan is deployed (under ASan deploying took 2-6 s, and a link taken down 3 s after
# the start failed the deployment itself: "tile stage 3 on node 'edge2': no answer").
for _ in $(seq 120); do grep -q "^deployed" "$work/fault.log" && break; sleep 1; done
sleep 1
ip -n d3-edge2 link set eth0 down
wait "$infer" || { cat "$work/fault.log"; ip -n d3-edge2 link set eth0 up; fail "d3-infer with edge2's link down"; }
ip -n d3-edge2 link set eth0 up
grep -q "40 answered, 0 failed" "$work/fault.log" && grep -q "verify: 40 of 40 answers memcmp-equal" "$work/fault.log" \
  || { cat "$work/fault.log"; fail "requests lost with edge2's link down"; }
grep -q "node edge2 down" "$work/fault.log" || { cat "$work/fault.log"; fail "edge2's lost link went unnoticed"; }
grep -E "verify:|down|failover" "$work/fault.log" | head -n 4

# The device<->edge link: 16 MB from the device's namespace to edge1's, goodput at the receiver.
timeout $((60 * scale)) ip netns exec d3-edge1 python3 "$src/tests/link_rate.py" serve 10.213.0.11 5999 > "$work/rate" &
server=$!
sleep 0.5
timeout $((60 * scale)) ip netns exec d3-device python3 "$src/tests/link_rate.py" send 10.213.0.11 5999 16000000 || fail "sending"
wait "$server" || fail "receiving"
rate="$(cat "$work/rate")"
python3 -c "import sys; r = float('$rate'); sys.exit(0 if 90 <= r <= 110 else 1)" \
  || fail "device->edge1 measured $rate Mbit/s, configured 100 (10% allowed)"
echo "netns_test: device->edge1 $rate Mbit/s measured, 100 configured"
echo "netns_test: passed"
