#!/usr/bin/env bash
# scale.sh: what more shards buy and cost on 3 nodes: idle CPU, and write
# throughput and its CPU, for 1, 2, 4 and 8 shards.
#
# Builds ./cmd/raftkv (release build, as bench.sh), then, for every round
# and shard count, starts a fresh 3-node cluster of that many shards on
# 127.0.0.1 (default flags otherwise, data in a temp dir) and waits until it
# has settled: every node ready, every group led, leadership balanced (the
# script makes the moves the nodes' own balancer would make one per 10 s).
# Then it measures
#   - idle CPU: utime+stime of the three server processes over IDLE seconds
#     (/proc/PID/stat, as idle-cpu.sh), given as ms of CPU per second;
#   - writes: `raftkv bench --op put --clients CLIENTS` spread round-robin
#     over the three nodes for DURATION (100-byte values, 10,000 keys):
#     writes/s, p50, p99, errors, and the CPU of the three servers per
#     1,000 writes;
# and stops the cluster. Rounds alternate the order of the shard counts
# (up, then down), so a machine that gets busier or quieter over the run
# does not favour one count. One markdown table comes out at the end; with
# --write-docs it also replaces the section of docs/benchmarks.md between
# the scale.sh markers.
#
#   scripts/scale.sh
#   SHARDS="1 2" DURATION=2s IDLE=3 ROUNDS=1 scripts/scale.sh
#   scripts/scale.sh --write-docs
#
# Environment: SHARDS (default "1 2 4 8"), ROUNDS (2), IDLE seconds (10),
# DURATION of a bench run (10s), CLIENTS (64), BASE port (19800: HTTP
# BASE..BASE+2, raft BASE+10..BASE+12).
#
# Every process it starts is stopped by pid, and the temp dir removed, on
# any exit, Ctrl-C included.
set -euo pipefail

SHARDS=${SHARDS:-1 2 4 8} ROUNDS=${ROUNDS:-2} IDLE=${IDLE:-10} DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-64} BASE=${BASE:-19800}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
docs=$repo/docs/benchmarks.md
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
lib_parse_args "$@" # sets write_docs; --help prints the header above

for s in $SHARDS; do
	[[ $s =~ ^[1-9][0-9]*$ ]] || lib_die "SHARDS: $s is not a positive number"
done
for tool in curl python3; do
	command -v "$tool" >/dev/null || lib_die "needs $tool"
done

lib_init raftkv-scale
mkdir "$LIB_WORK/bin" "$LIB_WORK/logs"
echo "scale.sh: building raftkv" >&2
lib_build_raftkv "$LIB_WORK/bin/raftkv"
bin=$LIB_WORK/bin/raftkv

eps=()
for i in 1 2 3; do eps+=("127.0.0.1:$((BASE + i - 1))"); done
endpoints=$(
	IFS=,
	echo "${eps[*]}"
)

nodes=()
start_cluster() { # $1 = shards
	local i join
	rm -rf "$LIB_WORK/data"
	nodes=()
	for i in 1 2 3; do
		join=()
		[ "$i" -gt 1 ] && join=(--join "${eps[0]}")
		lib_start "$LIB_WORK/logs/n$i.log" "$bin" serve --id "n$i" --data-dir "$LIB_WORK/data/n$i" \
			--shards "$1" --http-addr "${eps[i - 1]}" --raft-addr "127.0.0.1:$((BASE + 10 + i - 1))" \
			--log-level warn "${join[@]}"
		nodes+=("$LIB_PID")
		lib_wait_for 60 "raftkv n$i" "$LIB_PID" curl -sf "http://${eps[i - 1]}/readyz"
	done
	lib_settle "${eps[0]}" 120
	# Let the joins' and moves' catch-up traffic pass before the idle window.
	sleep 2
}

results=$LIB_WORK/results.tsv
: >"$results"
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
	order=$SHARDS
	[ $((round % 2)) -eq 1 ] || order=$(tr ' ' '\n' <<<"$SHARDS" | grep . | tac | tr '\n' ' ')
	for shards in $order; do
		start_cluster "$shards"
		idle=$(lib_cpu_over "$IDLE" "${nodes[@]}")
		before=$(lib_cpu_ticks "${nodes[@]}")
		lib_run "$LIB_WORK/bench.json" "$bin" bench --endpoints "$endpoints" --op put --clients "$CLIENTS" \
			--duration "$DURATION" --timeout 10s -o json || true
		out=$(cat "$LIB_WORK/bench.json")
		after=$(lib_cpu_ticks "${nodes[@]}")
		lib_stop "${nodes[@]}"
		[ -n "$out" ] || out='{"ok":0,"errors":0,"ops_per_sec":0,"p50_ms":0,"p99_ms":0}'
		printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$shards" "$idle" "$((after - before))" "$(tr -d '\n' <<<"$out")" >>"$results"
		python3 -c '
import json, sys
r = json.loads(sys.argv[1])
idle, ticks, hz, window = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
print("round %s %2s shards  idle %5.0f ms/s  %7.0f writes/s  p50 %6.2f ms  p99 %7.2f ms  errors %d  cpu/1000 writes %5.0f ms" % (
    sys.argv[2], sys.argv[3], 1000 * idle / window, r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["errors"], 1e6 * ticks / hz / max(r["ok"], 1)))
' "$out" "$round" "$shards" "$idle" "$((after - before))" "$hz" "$IDLE" >&2
	done
done

command="SHARDS=\"$SHARDS\" ROUNDS=$ROUNDS IDLE=$IDLE DURATION=$DURATION"
[ "$CLIENTS" = 64 ] || command+=" CLIENTS=$CLIENTS"
command+=" scripts/scale.sh"
table=$(python3 - "$results" "$hz" "$IDLE" <<'EOF'
import collections, json, sys

hz, window = int(sys.argv[2]), float(sys.argv[3])
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rnd, shards, idle, ticks, out = line.rstrip("\n").split("\t", 4)
    r = json.loads(out)
    r["idle_ms_per_s"] = 1000 * float(idle) / window
    r["cpu_ms_per_1000"] = 1e6 * int(ticks) / hz / max(r["ok"], 1)
    rows[int(shards)].append((int(rnd), r))

def each(rs, field, fmt):
    return ", ".join(fmt.format(r[field]) for r in rs)

print("| shards | groups | idle CPU, 3 nodes | writes/s | p50 | p99 | errors | CPU per 1,000 writes |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for shards in sorted(rows):
    rs = [r for _, r in sorted(rows[shards], key=lambda x: x[0])]
    print("| %d | %d | %s | %s | %s | %s | %s | %s |" % (
        shards, shards + 1,
        each(rs, "idle_ms_per_s", "{:.0f} ms/s"),
        each(rs, "ops_per_sec", "{:,.0f}"),
        each(rs, "p50_ms", "{:.1f} ms"),
        each(rs, "p99_ms", "{:.1f} ms"),
        each(rs, "errors", "{:,}"),
        each(rs, "cpu_ms_per_1000", "{:.0f} ms")))
EOF
)

echo
echo "$table"

if $write_docs; then
	section=$LIB_WORK/section.md
	{
		echo "Measured $(date -u +%Y-%m-%d) with \`$command\` (raftkv $(git -C "$repo" rev-parse --short HEAD)). A cell lists the rounds in order; idle CPU is of the three processes together, in ms of CPU per second."
		echo
		echo "$table"
	} >"$section"
	lib_write_docs "$docs" scale.sh "$section"
	echo "scale.sh: wrote the table into docs/benchmarks.md" >&2
fi
