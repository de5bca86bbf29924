#!/usr/bin/env bash
# cluster.sh runs a local raftkv cluster on 127.0.0.1 for trying things out:
# start it, kill and restart nodes, watch failover, tear it down.
#
# Everything lives under one folder (RAFTKV_CLUSTER_DIR): the binary, and per
# node a data dir, a log file and a pid file; with --tls also certs/, the
# cluster CA and one certificate per node. The script only ever signals the
# processes whose pids it recorded there.
set -euo pipefail

usage() {
	cat <<EOF
Usage: scripts/cluster.sh <command> [args]

Commands:
  up [N] [--tls]
                build raftkv and start an N-node cluster (default 3); node1
                bootstraps, the others join it. Starts only nodes not running.
                --tls makes a CA and node certificates in the folder's certs/
                ('raftkv certs') and runs every node with mutual TLS on the
                raft port and HTTPS on the API; a folder with certs/ stays TLS
                for every later command.
  down [--wipe] stop every node (SIGTERM, SIGKILL after ${STOP_WAIT}s); --wipe also
                deletes the cluster folder (data, logs, binary)
  status        show which nodes run, then 'raftkv cluster status'
  kill ID       SIGKILL a node (ID: node2 or 2), to watch failover
  stop ID       SIGTERM a node and wait for it to exit
  restart ID    start a stopped or killed node again with the same flags; a
                node that was removed from the cluster (leave, dead-node
                cleanup) is stopped again, with how to bring it back
  logs ID [-f]  print the end of a node's log (-f: follow it)

Environment:
  RAFTKV_CLUSTER_DIR  folder for binary, data, logs, pids (default ./.raftkv-cluster)
  RAFTKV_BASE_HTTP    HTTP port of node1; nodeK uses BASE+K-1 (default 8080)
  RAFTKV_BASE_RAFT    raft port of node1; nodeK uses BASE+K-1 (default 7000)
  RAFTKV_SHARDS       shards of a new cluster (default 4)

Example:
  scripts/cluster.sh up 3
  scripts/cluster.sh up 3 --tls    # then: raftkv get KEY --ca-cert DIR/certs/ca.pem
  scripts/cluster.sh kill node1 && scripts/cluster.sh status
  scripts/cluster.sh restart node1
  scripts/cluster.sh down --wipe
EOF
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BASE_HTTP=${RAFTKV_BASE_HTTP:-8080}
BASE_RAFT=${RAFTKV_BASE_RAFT:-7000}
SHARDS=${RAFTKV_SHARDS:-4}
READY_WAIT=30 # seconds 'up' waits for every node's /readyz
STOP_WAIT=15  # seconds a node gets to exit after SIGTERM

# The cluster folder, made absolute so the script works from any directory.
CLUSTER_DIR=${RAFTKV_CLUSTER_DIR:-./.raftkv-cluster}
MARKER=.raftkv-cluster # marks a folder this script created (checked before --wipe)
BIN=""
TLS=false # set by 'up --tls', or by a folder that has certs/ca.pem (see detect_tls)

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

init_dir() {
	mkdir -p "$CLUSTER_DIR"
	CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
	touch "$CLUSTER_DIR/$MARKER"
	BIN="$CLUSTER_DIR/raftkv"
	detect_tls
}

# resolve_dir makes CLUSTER_DIR absolute without creating it.
resolve_dir() {
	if [[ -d $CLUSTER_DIR ]]; then
		CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
	fi
	BIN="$CLUSTER_DIR/raftkv"
	detect_tls
}

cert_dir() { echo "$CLUSTER_DIR/certs"; }
ca_file() { echo "$(cert_dir)/ca.pem"; }

# detect_tls turns TLS on for a folder whose cluster was made with --tls, so
# that restart, status and a later up keep talking to it the same way.
detect_tls() {
	if [[ -f $(ca_file) ]]; then
		TLS=true
	fi
}

# make_certs makes the cluster CA (once) and node $1's certificate (once),
# for the addresses the script uses: 127.0.0.1 and localhost.
make_certs() {
	local i=$1
	if [[ ! -f $(ca_file) ]]; then
		"$BIN" certs init --dir "$(cert_dir)" >/dev/null
		echo "made a cluster CA in $(cert_dir)"
	fi
	if [[ ! -f $(cert_dir)/node$i.pem ]]; then
		"$BIN" certs node --dir "$(cert_dir)" --name "node$i" --hosts 127.0.0.1,localhost >/dev/null
	fi
}

build() {
	echo "building raftkv -> $BIN"
	(cd "$REPO_ROOT" && go build -o "$BIN" ./cmd/raftkv)
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# node_index turns "node2" or "2" into 2.
node_index() {
	local i=${1#node}
	if ! is_uint "$i" || ((10#$i < 1)); then
		die "bad node id '$1' (use node1, node2, ... or 1, 2, ...)"
	fi
	echo "$((10#$i))"
}

http_addr() { echo "127.0.0.1:$((BASE_HTTP + $1 - 1))"; }
raft_addr() { echo "127.0.0.1:$((BASE_RAFT + $1 - 1))"; }
node_dir() { echo "$CLUSTER_DIR/node$1"; }
pid_file() { echo "$(node_dir "$1")/raftkv.pid"; }
log_file() { echo "$(node_dir "$1")/raftkv.log"; }

# known_nodes prints the indexes of every node the folder has seen.
known_nodes() {
	local d
	for d in "$CLUSTER_DIR"/node*; do
		[[ -d $d ]] || continue
		d=${d##*/node}
		is_uint "$d" && echo "$d"
	done | sort -n
}

# node_pid prints the pid of node $1 if that process is alive and is the
# raftkv we started for it; otherwise it prints nothing and fails.
node_pid() {
	local f pid cmd
	f=$(pid_file "$1")
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	is_uint "$pid" || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against pid reuse: the process must be our binary for this node.
	cmd=$(ps -ww -p "$pid" -o args= 2>/dev/null) || return 1
	[[ $cmd == "$BIN serve --id node$1 "* ]] || return 1
	echo "$pid"
}

# http_status prints the HTTP status code of GET http(s)://$1$2 (000 if none).
http_status() {
	if $TLS; then
		curl -s -o /dev/null -w '%{http_code}' --max-time 1 --cacert "$(ca_file)" "https://$1$2" || true
		return
	fi
	if command -v curl >/dev/null 2>&1; then
		curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$1$2" || true
		return
	fi
	local host=${1%:*} port=${1##*:} line=""
	if exec 3<>"/dev/tcp/$host/$port" 2>/dev/null; then
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&3
		read -r -t 1 line <&3 || true
		exec 3>&-
	fi
	line=${line#HTTP/* }
	echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
}

# port_user describes what listens on 127.0.0.1:$1, or prints nothing when
# the port is free: "pid 123 (raftkv)" when ss can tell, else "something".
port_user() {
	local port=$1 line
	if command -v ss >/dev/null 2>&1; then
		line=$(ss -Htlnp "sport = :$port" 2>/dev/null | head -n 1)
		[[ -n $line ]] || return 0
		if [[ $line =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
			echo "pid ${BASH_REMATCH[2]} (${BASH_REMATCH[1]})"
		else
			echo "another process"
		fi
		return 0
	fi
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "another process"
	fi
}

# check_ports refuses to start node $1 on ports something else holds: a
# node that cannot bind dies, and a quick-start node answering on them
# would otherwise be taken for this cluster's.
check_ports() {
	local i=$1 addr user
	for addr in "$(http_addr "$i")" "$(raft_addr "$i")"; do
		user=$(port_user "${addr##*:}")
		if [[ -n $user ]]; then
			echo "cluster.sh: cannot start node$i: $addr is in use by $user; stop it, or set RAFTKV_BASE_HTTP / RAFTKV_BASE_RAFT to free ports" >&2
			return 1
		fi
	done
}

# others_have_data succeeds when a node other than node1 has a data dir
# with something in it: a cluster exists.
others_have_data() {
	local i
	for i in $(known_nodes); do
		((i != 1)) && [[ -n $(ls -A "$(node_dir "$i")/data" 2>/dev/null) ]] && return 0
	done
	return 1
}

# first_running_other prints the lowest index of a running node other than
# $1, or fails.
first_running_other() {
	local i
	for i in $(known_nodes); do
		if ((i != $1)) && node_pid "$i" >/dev/null; then
			echo "$i"
			return 0
		fi
	done
	return 1
}

start_node() {
	local i=$1 pid dir
	if pid=$(node_pid "$i"); then
		echo "node$i already running (pid $pid)"
		return
	fi
	check_ports "$i" || return 1
	# A node with state ignores --join. A node without joins through a
	# node this script runs (never whatever else answers on a port): node1
	# for the others, and for node1, wiped after it was removed, the first
	# running node of the cluster; a fresh node1 of a new cluster
	# bootstraps it.
	local via=""
	if ((i > 1)); then
		via=1
		if [[ -z $(ls -A "$(node_dir "$i")/data" 2>/dev/null) ]] && ! node_pid 1 >/dev/null; then
			echo "cluster.sh: cannot start node$i: it would join through node1 ($(http_addr 1)), which this script is not running" >&2
			return 1
		fi
	elif [[ -z $(ls -A "$(node_dir 1)/data" 2>/dev/null) ]] && others_have_data; then
		via=$(first_running_other 1) || {
			echo "cluster.sh: cannot start node1: its data dir is empty but the cluster's other nodes have data; start one of them first, and node1 joins through it" >&2
			return 1
		}
	fi
	dir=$(node_dir "$i")
	mkdir -p "$dir/data"
	local args=(serve --id "node$i" --data-dir "$dir/data"
		--http-addr "$(http_addr "$i")" --raft-addr "$(raft_addr "$i")" --shards "$SHARDS")
	if [[ -n $via ]]; then
		if $TLS; then
			args+=(--join "https://$(http_addr "$via")")
		else
			args+=(--join "$(http_addr "$via")")
		fi
	fi
	if $TLS; then
		make_certs "$i"
		local cert key
		cert="$(cert_dir)/node$i.pem" key="$(cert_dir)/node$i-key.pem"
		args+=(--tls-cert "$cert" --tls-key "$key"
			--peer-tls-cert "$cert" --peer-tls-key "$key" --peer-ca "$(ca_file)")
	fi
	echo "== $(date -u +%FT%TZ) starting: ${args[*]}" >>"$(log_file "$i")"
	# setsid keeps the node out of this terminal's process group, so a
	# Ctrl-C while this script waits does not reach it.
	if command -v setsid >/dev/null 2>&1; then
		setsid "$BIN" "${args[@]}" >>"$(log_file "$i")" 2>&1 </dev/null &
	else
		nohup "$BIN" "${args[@]}" >>"$(log_file "$i")" 2>&1 </dev/null &
	fi
	echo "$!" >"$(pid_file "$i")"
	# setsid and nohup exec the binary a moment later; until they have, the
	# pid does not look like the node's to node_pid.
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		node_pid "$i" >/dev/null || ! kill -0 "$!" 2>/dev/null && break
		sleep 0.1
	done
	echo "node$i started (pid $!): http $(http_addr "$i"), raft $(raft_addr "$i"), data $dir/data, log $(log_file "$i")"
	STARTED+=("$i")
}

# STARTED lists the nodes this run of the script started; a failed 'up'
# stops exactly those.
STARTED=()

# undo_up stops the nodes this 'up' started, after a failure.
undo_up() {
	local i
	((${#STARTED[@]} > 0)) || return 0
	echo "cluster.sh: up failed; stopping the nodes it started: ${STARTED[*]/#/node}" >&2
	for i in "${STARTED[@]}"; do
		signal_node "$i" TERM >&2
	done
}

# explain_removed says that node $1 was removed from the cluster and how it
# comes back: restarting it on its old data never will.
explain_removed() {
	local i=$1
	cat >&2 <<EOF
node$i was removed from the cluster (a 'raftkv cluster leave', a dead-node
cleanup or an outage recovery): its data in $(node_dir "$i")/data is no longer
replicated, it serves nothing (HTTP 410 removed), and restarting it on that
data never makes it a member again. To bring it back as a new member, wipe
its data and start it; it joins through another running node:
  $0 stop node$i
  rm -rf $(node_dir "$i")/data
  $0 restart node$i
EOF
}

# wait_ready waits until every listed node answers /readyz with 200. It
# returns 2 at once when one answers 410: that node was removed from the
# cluster and will never be ready (explain_removed says what to do).
wait_ready() {
	local deadline=$((SECONDS + READY_WAIT)) i pending code
	while :; do
		pending=()
		for i in "$@"; do
			if ! node_pid "$i" >/dev/null; then
				echo "node$i exited; last lines of its log:" >&2
				tail -n 20 "$(log_file "$i")" >&2 || true
				return 1
			fi
			code=$(http_status "$(http_addr "$i")" /readyz)
			if [[ $code == 410 ]]; then
				explain_removed "$i"
				return 2
			fi
			[[ $code == 200 ]] || pending+=("node$i")
		done
		((${#pending[@]} == 0)) && return 0
		if ((SECONDS >= deadline)); then
			echo "not ready after ${READY_WAIT}s: ${pending[*]} (see '$0 logs ID')" >&2
			return 1
		fi
		sleep 0.3
	done
}

# signal_node sends $2 to node $1 and waits up to STOP_WAIT seconds for it
# to exit, then kills it.
signal_node() {
	local i=$1 sig=$2 pid deadline
	if ! pid=$(node_pid "$i"); then
		echo "node$i is not running"
		rm -f "$(pid_file "$i")"
		return
	fi
	kill "-$sig" "$pid"
	deadline=$((SECONDS + STOP_WAIT))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			echo "node$i (pid $pid) still running after ${STOP_WAIT}s; sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		sleep 0.2
	done
	rm -f "$(pid_file "$i")"
	echo "node$i stopped (pid $pid, $sig)"
}

cmd_up() {
	local n=3 i nodes=() arg want_tls=false
	for arg in "$@"; do
		case $arg in
		--tls) want_tls=true ;;
		*)
			if ! is_uint "$arg" || ((10#$arg < 1)); then
				die "up: N must be a positive number, got '$arg'"
			fi
			n=$((10#$arg))
			;;
		esac
	done
	init_dir
	if $want_tls && ! $TLS && [[ -n $(ls -A "$(node_dir 1)/data" 2>/dev/null) ]]; then
		die "up --tls: $CLUSTER_DIR holds a cluster made without TLS; use another RAFTKV_CLUSTER_DIR or 'down --wipe' first"
	fi
	if $want_tls; then
		command -v curl >/dev/null 2>&1 || die "up --tls: needs curl for the readiness checks over https"
		TLS=true
	elif $TLS; then
		echo "$CLUSTER_DIR has certs/: starting with TLS, as it was made"
	fi
	build
	# A fresh node1 bootstraps the cluster alone: let it become ready before
	# the others join it. A node1 with state is restarting and needs its
	# peers for a quorum, so then every node starts at once.
	local fresh=false
	if [[ -z $(ls -A "$(node_dir 1)/data" 2>/dev/null) ]] && ! others_have_data; then
		fresh=true
	fi
	for ((i = 1; i <= n; i++)); do
		if ! start_node "$i"; then
			undo_up
			die "up: node$i could not be started"
		fi
		nodes+=("$i")
		if ((i == 1)) && $fresh && ! wait_ready 1; then
			undo_up
			die "node1 did not become ready"
		fi
	done
	echo "waiting for every node to be ready (up to ${READY_WAIT}s)..."
	if ! wait_ready "${nodes[@]}"; then
		undo_up
		die "cluster did not become ready"
	fi
	local eps=()
	for i in "${nodes[@]}"; do eps+=("$(http_addr "$i")"); done
	local ep_list
	ep_list=$(
		IFS=,
		echo "${eps[*]}"
	)
	if $TLS; then
		local ca
		ca=$(ca_file)
		cat <<EOF

Cluster of $n node(s) is ready, with TLS. Data, logs and certs/: $CLUSTER_DIR
HTTPS endpoints: ${eps[*]}

Try:
  curl --cacert $ca -X PUT --data-binary hello https://${eps[0]}/v1/kv/greeting
  curl --cacert $ca https://${eps[n - 1]}/v1/kv/greeting
  curl --cacert $ca https://${eps[0]}/v1/cluster
  export RAFTKV_ENDPOINTS=$ep_list RAFTKV_CA_CERT=$ca
  $BIN put greeting hi && $BIN get greeting
  $0 kill node1; $0 status     # watch another node take over
EOF
		return
	fi
	cat <<EOF

Cluster of $n node(s) is ready. Data and logs: $CLUSTER_DIR
HTTP endpoints: ${eps[*]}

Try:
  curl -X PUT --data-binary hello http://${eps[0]}/v1/kv/greeting
  curl http://${eps[n - 1]}/v1/kv/greeting
  curl -i -X PUT -H 'If-Match: "REV"' --data-binary bye http://${eps[0]}/v1/kv/greeting  # REV from the first put
  curl 'http://${eps[0]}/v1/kv?prefix=gr'
  curl http://${eps[0]}/v1/cluster
  export RAFTKV_ENDPOINTS=$ep_list
  $BIN put greeting hi && $BIN get greeting
  $0 kill node1; $0 status     # watch another node take over
EOF
}

cmd_down() {
	local wipe=false i pids=() deadline
	case ${1:-} in
	"") ;;
	--wipe) wipe=true ;;
	*) die "down: unknown argument '$1' (only --wipe)" ;;
	esac
	resolve_dir
	if [[ ! -d $CLUSTER_DIR ]]; then
		echo "no cluster folder at $CLUSTER_DIR"
		return
	fi
	for i in $(known_nodes); do
		local pid
		if pid=$(node_pid "$i"); then
			kill -TERM "$pid"
			pids+=("$i:$pid")
		fi
		rm -f "$(pid_file "$i")"
	done
	deadline=$((SECONDS + STOP_WAIT))
	for entry in ${pids[@]+"${pids[@]}"}; do
		local pid=${entry#*:}
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				echo "node${entry%%:*} (pid $pid) did not stop in ${STOP_WAIT}s; sending SIGKILL" >&2
				kill -KILL "$pid" 2>/dev/null || true
			fi
			sleep 0.2
		done
		echo "node${entry%%:*} stopped (pid $pid)"
	done
	if $wipe; then
		[[ -f $CLUSTER_DIR/$MARKER ]] || die "$CLUSTER_DIR was not created by this script; not deleting it"
		rm -rf -- "$CLUSTER_DIR"
		echo "removed $CLUSTER_DIR"
	else
		echo "data kept in $CLUSTER_DIR ('$0 up' restarts it, 'down --wipe' deletes it)"
	fi
}

cmd_status() {
	local i pid live=()
	resolve_dir
	[[ -d $CLUSTER_DIR ]] || die "no cluster at $CLUSTER_DIR (run '$0 up')"
	for i in $(known_nodes); do
		if pid=$(node_pid "$i"); then
			printf 'node%-3s running  pid %-8s http %s  raft %s\n' "$i" "$pid" "$(http_addr "$i")" "$(raft_addr "$i")"
			live+=("$(http_addr "$i")")
		else
			printf 'node%-3s stopped  %-12s http %s  raft %s\n' "$i" "" "$(http_addr "$i")" "$(raft_addr "$i")"
		fi
	done
	if ((${#live[@]} == 0)); then
		echo "no node is running"
		return
	fi
	echo
	local eps
	eps=$(
		IFS=,
		echo "${live[*]}"
	)
	local tls_args=()
	if $TLS; then
		tls_args=(--ca-cert "$(ca_file)")
	fi
	"$BIN" cluster status --endpoints "$eps" --timeout 3s ${tls_args[@]+"${tls_args[@]}"} || echo "(cluster status failed)" >&2
}

cmd_restart() {
	local i
	i=$(node_index "$1")
	resolve_dir
	[[ -d $(node_dir "$i") ]] || die "node$i has never run in $CLUSTER_DIR (use '$0 up N')"
	[[ -x $BIN ]] || build
	if node_pid "$i" >/dev/null; then
		signal_node "$i" TERM
	fi
	start_node "$i"
	echo "waiting for node$i to be ready..."
	local rc=0
	wait_ready "$i" || rc=$?
	case $rc in
	0) echo "node$i is ready" ;;
	2)
		signal_node "$i" TERM >&2
		die "node$i was removed from the cluster; stopped it again (see above)"
		;;
	*) die "node$i did not become ready" ;;
	esac
}

cmd_logs() {
	local i follow=false
	i=$(node_index "$1")
	[[ ${2:-} == -f ]] && follow=true
	resolve_dir
	[[ -f $(log_file "$i") ]] || die "no log for node$i in $CLUSTER_DIR"
	if $follow; then
		exec tail -n 100 -f "$(log_file "$i")"
	fi
	tail -n 100 "$(log_file "$i")"
}

main() {
	local cmd=${1:-}
	[[ $# -gt 0 ]] && shift
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status ;;
	kill | stop)
		[[ $# -eq 1 ]] || die "usage: $0 $cmd ID"
		local i
		i=$(node_index "$1")
		resolve_dir
		if [[ $cmd == kill ]]; then
			local pid
			if pid=$(node_pid "$i"); then
				kill -KILL "$pid"
				echo "node$i killed (SIGKILL, pid $pid)"
			else
				echo "node$i is not running"
			fi
			rm -f "$(pid_file "$i")"
		else
			signal_node "$i" TERM
		fi
		;;
	restart)
		[[ $# -eq 1 ]] || die "usage: $0 restart ID"
		cmd_restart "$1"
		;;
	logs)
		[[ $# -ge 1 ]] || die "usage: $0 logs ID [-f]"
		cmd_logs "$@"
		;;
	-h | --help | help)
		usage
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
