#!/usr/bin/env bash
# partition.sh is failover.sh with a network partition instead of SIGKILL:
# round after round it cuts the leader of a shard off from the other nodes
# (each node runs in its own network namespace, joined by veth pairs to a
# private bridge; the cut is a pair of blackhole routes), heals the cut after
# a pause, and measures the time to a new leader on the majority side, the
# shard's write-unavailability window, and how long the healed node takes to
# catch up. Needs root and iproute2; otherwise it says so and exits 0.
#
# Every namespace, bridge and process it creates is removed at the end.
set -euo pipefail

case "${1:-}" in
-h|--help)
	cat <<USAGE
Usage: sudo scripts/partition.sh [raftkv chaos failover flags]

Examples:
  sudo scripts/partition.sh                   # 10 rounds, timeline in ./partition.svg
  sudo scripts/partition.sh --rounds 5 --down 3s

Environment:
  RAFTKV_BIN   use this raftkv binary instead of building one
USAGE
	exit 0 ;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "partition.sh: skipped: network namespaces need root (try: sudo $0 $*)" >&2
	exit 0
fi
if ! command -v ip >/dev/null; then
	echo "partition.sh: skipped: the ip command (iproute2) is not installed" >&2
	exit 0
fi

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

extra=()
case " $* " in *" --rounds"*) ;; *) extra+=(--rounds 10) ;; esac
case " $* " in *" --svg"*) ;; *) extra+=(--svg "$PWD/partition.svg") ;; esac

"$bin" chaos failover --fault partition "${extra[@]}" "$@"
