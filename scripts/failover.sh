#!/usr/bin/env bash
# failover.sh measures failover on a local 3-node cluster under steady write
# load: round after round it SIGKILLs the leader of a shard, restarts it after
# a pause, and prints per round the time to a new leader, the shard's write-
# unavailability window, the catch-up time of the restarted node, the medians
# and availability = MTBF / (MTBF + MTTR). It writes an SVG timeline. Then it
# runs 60 s of writes from 64 clients without faults and counts elections.
#
# It is a thin wrapper over 'raftkv chaos failover' and 'raftkv chaos steady',
# which start their own nodes on 127.0.0.1 (free ports, temp dirs) and stop
# them again; it does not touch a cluster started with scripts/cluster.sh.
set -euo pipefail

usage() {
	cat <<USAGE
Usage: scripts/failover.sh [raftkv chaos failover flags]

Examples:
  scripts/failover.sh                         # 10 rounds, timeline in ./failover.svg
  scripts/failover.sh --rounds 20 --down 3s --mtbf 2160h
  STEADY=0 scripts/failover.sh --rounds 5     # skip the 60 s no-fault run
  scripts/failover.sh --server-args "--heartbeat-timeout 500ms --election-timeout 500ms"

Environment:
  RAFTKV_BIN      use this raftkv binary instead of building one
  STEADY          1 (default) to also run the no-fault load; 0 to skip
  STEADY_CLIENTS  writers of that run (default 64)
  STEADY_FOR      its length (default 60s)
USAGE
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

bin=${RAFTKV_BIN:-}
tmp=""
cleanup() { [ -n "$tmp" ] && rm -rf "$tmp"; }
trap cleanup EXIT
if [ -z "$bin" ]; then
	tmp=$(mktemp -d)
	bin="$tmp/raftkv"
	echo "building raftkv..." >&2
	(cd "$REPO_ROOT" && go build -o "$bin" ./cmd/raftkv)
fi

has_rounds=0
for a in "$@"; do case "$a" in --rounds|--rounds=*) has_rounds=1 ;; esac; done
extra=()
[ "$has_rounds" = 1 ] || extra+=(--rounds 10)
has_svg=0
for a in "$@"; do case "$a" in --svg|--svg=*) has_svg=1 ;; esac; done
[ "$has_svg" = 1 ] || extra+=(--svg "$PWD/failover.svg")

echo "== failover: SIGKILL the leader of a shard, restart it" >&2
"$bin" chaos failover "${extra[@]}" "$@"

if [ "${STEADY:-1}" = 1 ]; then
	echo >&2
	echo "== no faults: ${STEADY_FOR:-60s} of writes from ${STEADY_CLIENTS:-64} clients; elections must be 0" >&2
	"$bin" chaos steady --clients "${STEADY_CLIENTS:-64}" --duration "${STEADY_FOR:-60s}"
fi
