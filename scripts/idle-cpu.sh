#!/usr/bin/env bash
# idle-cpu.sh: CPU used by an idle 3-node raftkv cluster and, when etcd is
# installed (Debian: apt-get install etcd-server), an idle 3-member etcd on
# the same machine, measured alternately ROUNDS times over WINDOW seconds
# each. Prints seconds of CPU (user+system, all three processes) per window.
# Everything binds to 127.0.0.1 and is stopped on exit.
#
#   scripts/idle-cpu.sh            # 3 rounds of 10 s each
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-10}
lib_init raftkv-idle-cpu
export RAFTKV_CLUSTER_DIR=$LIB_WORK/raftkv RAFTKV_BASE_HTTP=${RAFTKV_BASE_HTTP:-18380} RAFTKV_BASE_RAFT=${RAFTKV_BASE_RAFT:-17300}
ETCD_PIDS=()
# cluster.sh stops the raftkv nodes it started (it keeps their pids in the
# cluster dir); lib_cleanup then stops etcd and removes the temp dir.
cleanup() {
	scripts/cluster.sh down --wipe >/dev/null 2>&1 || true
	lib_cleanup
}
trap cleanup EXIT

scripts/cluster.sh up 3 >/dev/null
RAFTKV_PIDS=$(cat "$RAFTKV_CLUSTER_DIR"/*/raftkv.pid)

if command -v etcd >/dev/null; then
	cluster=""
	for i in 1 2 3; do cluster+="e$i=http://127.0.0.1:$((23800 + i)),"; done
	for i in 1 2 3; do
		lib_start "$LIB_WORK/etcd$i.log" etcd --name "e$i" --data-dir "$LIB_WORK/etcd$i" \
			--listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
			--listen-client-urls "http://127.0.0.1:$((23700 + i))" --advertise-client-urls "http://127.0.0.1:$((23700 + i))" \
			--initial-cluster "${cluster%,}" --initial-cluster-state new
		ETCD_PIDS+=("$LIB_PID")
	done
fi
sleep 15 # let elections and leader balancing settle

printf "%-6s %-28s %s\n" round "raftkv (3 nodes, 5 groups)" "etcd (3 members)"
for r in $(seq "$ROUNDS"); do
	# shellcheck disable=SC2086
	rk=$(lib_cpu_over "$WINDOW" $RAFTKV_PIDS)
	et="-"
	if [ ${#ETCD_PIDS[@]} -gt 0 ]; then et=$(lib_cpu_over "$WINDOW" "${ETCD_PIDS[@]}"); fi
	printf "%-6s %-28s %s\n" "$r" "${rk} s CPU / ${WINDOW} s" "${et} s CPU / ${WINDOW} s"
done
