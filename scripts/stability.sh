#!/usr/bin/env bash
# stability.sh: on a settled 3-node cluster (scripts/cluster.sh, default
# flags), run WRITERS closed-loop writers for DURATION with a checkpoint of
# every group on every node CHECKPOINT_AT into the run, then 64 linearizable
# readers for 20 s; print each group's term before and after (a changed term
# is an election), both bench summaries and the non-zero election counters.
# "Settled" = no term changed for 15 s (leader balancing done).
#
#   scripts/stability.sh                      # 256 writers, 60 s, checkpoint at 15 s
#   WRITERS=64 DURATION=20s scripts/stability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WRITERS=${WRITERS:-256}
DURATION=${DURATION:-60s}
CHECKPOINT_AT=${CHECKPOINT_AT:-15}
export RAFTKV_CLUSTER_DIR=${RAFTKV_CLUSTER_DIR:-$(mktemp -d)/cluster}
export RAFTKV_BASE_HTTP=${RAFTKV_BASE_HTTP:-18180} RAFTKV_BASE_RAFT=${RAFTKV_BASE_RAFT:-17100}
H=$RAFTKV_BASE_HTTP
PORTS="$H $((H + 1)) $((H + 2))"
EP=127.0.0.1:$H,127.0.0.1:$((H + 1)),127.0.0.1:$((H + 2))
trap 'scripts/cluster.sh down --wipe >/dev/null 2>&1 || true' EXIT
scripts/cluster.sh up 3 >/dev/null
B=$RAFTKV_CLUSTER_DIR/raftkv

terms() {
	for p in $PORTS; do
		curl -s "http://127.0.0.1:$p/v1/cluster" | python3 -c 'import sys,json; d=json.load(sys.stdin); print(" ".join("%s=%d" % (g["name"], g["term"]) for g in d["groups"]))'
	done | sort | uniq -c
}

prev="" stable=0
while [ $stable -lt 15 ]; do
	cur=$(terms)
	if [ "$cur" = "$prev" ]; then stable=$((stable + 1)); else stable=0 prev=$cur; fi
	sleep 1
done
echo "settled terms (count of nodes that agree):"; echo "$prev"

(sleep "$CHECKPOINT_AT"; for p in $PORTS; do curl -s -o /dev/null -w "checkpoint via :$p -> %{http_code}\n" -X POST "http://127.0.0.1:$p/v1/cluster/snapshot"; done) &
"$B" bench --endpoints "$EP" --clients "$WRITERS" --duration "$DURATION" --timeout 10m | tail -1
wait
echo "terms after the writers:"; terms
"$B" bench --endpoints "$EP" --op get --clients 64 --duration 20s --keys 1000 --timeout 10m | tail -1
echo "terms after the readers:"; terms
echo "elections and step-downs (non-zero; first_election is the cluster's start, transfer is leader balancing):"
for p in $PORTS; do curl -s "http://127.0.0.1:$p/metrics" | grep -E '^raftkv_raft_(elections|step_downs)_total' | grep -v ' 0$' || true; done
