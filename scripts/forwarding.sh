#!/usr/bin/env bash
# forwarding.sh: what a forwarded write costs next to one sent to the leader,
# and what writes spread over every node (as curl users send them) cost.
# Starts a 3-node cluster of SHARDS shards (default 1) of each given binary in
# turn (on 127.0.0.1 ports from BASE, default 18300), then runs `raftkv bench
# --op put` against shard-1's leader alone, against a follower alone (with one
# shard every write then takes one node-to-node hop), and spread over all
# three nodes, then (when the bench client has --leader-aware) from a client
# that sends each key to its shard's leader, alternating binaries, and prints
# writes/s and the CPU all three nodes spent per 1,000 writes.
#
#   scripts/forwarding.sh ./raftkv                 # one build
#   scripts/forwarding.sh ./raftkv-old ./raftkv    # compare two builds, alternating
#   ROUNDS=2 CLIENTS=64 DURATION=10s SHARDS=4 scripts/forwarding.sh ./a ./b
#
# Every process it starts is stopped by pid, and the temp dir removed, on
# any exit, Ctrl-C included.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 RAFTKV_BINARY [RAFTKV_BINARY...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-2} CLIENTS=${CLIENTS:-64} DURATION=${DURATION:-10s} BASE=${BASE:-18300} SHARDS=${SHARDS:-1}
bench=$(realpath "$1") # any build's bench client will do; the first one drives all runs
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init raftkv-forwarding
mkdir "$LIB_WORK/logs"

nodes=() # the pids of the running cluster
start_cluster() { # $1 = binary
	local bin=$1 i join
	rm -rf "$LIB_WORK/data"
	nodes=()
	for i in 1 2 3; do
		join=()
		[ "$i" -gt 1 ] && join=(--join "127.0.0.1:$BASE")
		lib_start "$LIB_WORK/logs/n$i.log" "$bin" serve --id "n$i" --data-dir "$LIB_WORK/data/n$i" --shards "$SHARDS" \
			--http-addr "127.0.0.1:$((BASE + i - 1))" --raft-addr "127.0.0.1:$((BASE + 100 + i - 1))" \
			--balance-interval 0 "${join[@]}"
		nodes+=("$LIB_PID")
		lib_wait_for 30 "raftkv n$i" "$LIB_PID" curl -sf "127.0.0.1:$((BASE + i - 1))/readyz"
	done
}

leader_http() { # the HTTP address of shard-1's leader
	curl -s "127.0.0.1:$BASE/v1/cluster" | python3 -c '
import json,sys
st=json.load(sys.stdin)
lead=[g["leader"] for g in st["groups"] if g["name"]=="shard-1"][0]
print([n["http_addr"] for n in st["nodes"] if n["id"]==lead][0])'
}

run() { # $1 = label, $2 = endpoints, then extra bench flags
	local before after out label=$1 eps=$2
	shift 2
	before=$(lib_cpu_ticks "${nodes[@]}")
	lib_run "$LIB_WORK/bench.json" "$bench" bench --op put --clients "$CLIENTS" --duration "$DURATION" --endpoints "$eps" -o json "$@"
	out=$(cat "$LIB_WORK/bench.json")
	after=$(lib_cpu_ticks "${nodes[@]}")
	python3 -c '
import json,sys
r=json.loads(sys.argv[1]); ticks=int(sys.argv[2]); hz=int(sys.argv[3]); label=sys.argv[4]
cpu=1e6*ticks/hz/max(r["ok"],1)
print("%-36s %7.0f writes/s  p50 %6.2f ms  p99 %7.2f ms  errors %3d  cpu/1000 writes %5.0f ms" % (label, r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["errors"], cpu))
'  "$out" "$((after - before))" "$(getconf CLK_TCK)" "$label"
}

# Read once, whole: `bench --help | grep -q` under pipefail failed whenever
# grep's early exit cut the help short (SIGPIPE), and skipped that run.
bench_help=$("$bench" bench --help 2>&1 || true)
for round in $(seq 1 "$ROUNDS"); do
	for bin in "$@"; do
		start_cluster "$(realpath "$bin")"
		lead=$(leader_http)
		follower=127.0.0.1:$BASE
		for i in 1 2 3; do
			[ "127.0.0.1:$((BASE + i - 1))" != "$lead" ] && follower=127.0.0.1:$((BASE + i - 1)) && break
		done
		run "round $round $(basename "$bin") leader" "$lead"
		run "round $round $(basename "$bin") follower (forwarded)" "$follower"
		all="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"
		run "round $round $(basename "$bin") spread over 3 nodes" "$all"
		if [[ $bench_help == *--leader-aware* ]]; then
			run "round $round $(basename "$bin") leader-aware client" "$all" --leader-aware
		fi
		lib_stop "${nodes[@]}"
	done
done
