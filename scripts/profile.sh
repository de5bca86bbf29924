#!/usr/bin/env bash
# profile.sh: where a node's CPU goes under writes.
#
# Builds ./cmd/raftkv (release build), starts a 3-node cluster of SHARDS
# shards (default 4) with --pprof on 127.0.0.1 ports from BASE (default
# 18500), runs `raftkv bench --op put` with CLIENTS workers (default 64)
# spread over the three nodes for DURATION (whole seconds, default 20s),
# and takes a CPU profile of node 1 for PROFILE seconds (default 12) from
# the middle of the run. Prints the bench result and the profile's
# heaviest functions by cumulative time; the profile is left in OUT
# (default ./raftkv-cpu.prof) for `go tool pprof`. LEADER_AWARE=1 runs
# the bench client with --leader-aware (each key straight to its shard's
# leader) instead, to compare with the spread load.
#
#   scripts/profile.sh
#   SHARDS=1 CLIENTS=256 OUT=/tmp/p.prof scripts/profile.sh
#   LEADER_AWARE=1 OUT=/tmp/la.prof scripts/profile.sh
#
# Every process it starts is stopped by pid, and the temp dir removed, on
# any exit, Ctrl-C included.
set -euo pipefail
SHARDS=${SHARDS:-4} CLIENTS=${CLIENTS:-64} DURATION=${DURATION:-20s} PROFILE=${PROFILE:-12}
BASE=${BASE:-18500} OUT=${OUT:-./raftkv-cpu.prof} LEADER_AWARE=${LEADER_AWARE:-} CLIENT_OUT=${CLIENT_OUT:-}
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_parse_args "$@"
lib_init raftkv-profile
mkdir "$LIB_WORK/logs"
bin=$LIB_WORK/raftkv
lib_build_raftkv "$bin"

for i in 1 2 3; do
	join=()
	[ "$i" -gt 1 ] && join=(--join "127.0.0.1:$BASE")
	lib_start "$LIB_WORK/logs/n$i.log" "$bin" serve --id "n$i" --data-dir "$LIB_WORK/data/n$i" --shards "$SHARDS" \
		--http-addr "127.0.0.1:$((BASE + i - 1))" --raft-addr "127.0.0.1:$((BASE + 100 + i - 1))" --pprof "${join[@]}"
	lib_wait_for 30 "raftkv n$i" "$LIB_PID" curl -sf "127.0.0.1:$((BASE + i - 1))/readyz"
done

# The nodes' own balancing spreads the shards' leaders within a
# --balance-interval (10 s) or two; profiling before would catch node 1
# leading everything.
lib_wait_for 30 "balanced raftkv leadership" "" lib_balanced "127.0.0.1:$BASE" 3
all="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"
routing=()
[ -n "$LEADER_AWARE" ] && routing=(--leader-aware)
[ -n "$CLIENT_OUT" ] && routing+=(--cpuprofile "$CLIENT_OUT")
lib_start "$LIB_WORK/bench.txt" "$bin" bench --op put --clients "$CLIENTS" --duration "$DURATION" --endpoints "$all" "${routing[@]}"
bench=$LIB_PID
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ && $PROFILE =~ ^[0-9]+$ && $PROFILE -lt $secs ]] ||
	lib_die "DURATION is whole seconds (like 20s) and PROFILE seconds fewer than it"
sleep $(((secs - PROFILE) / 2))
curl -sf -o "$OUT" "127.0.0.1:$BASE/debug/pprof/profile?seconds=$PROFILE"
wait "$bench" || lib_die "the bench run failed: $(cat "$LIB_WORK/bench.txt")"
lib_forget "$bench"
head -n 1 "$LIB_WORK/bench.txt"
go tool pprof -top -cum -nodecount=40 "$bin" "$OUT" 2>/dev/null | cut -c1-160
if [ -n "$CLIENT_OUT" ]; then
	echo "--- the bench client ($CLIENT_OUT)"
	go tool pprof -top -cum -nodecount=40 "$bin" "$CLIENT_OUT" 2>/dev/null | cut -c1-160
fi
