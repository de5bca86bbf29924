# shellcheck shell=bash
# lib.sh: what the measuring scripts (bench.sh, forwarding.sh, idle-cpu.sh,
# profile.sh, scale.sh, restart.sh) share, so that each thing is done one way: building
# the release binary, starting and stopping processes by pid, waiting for a
# node, reading CPU time from /proc, balancing raftkv's leaders and writing
# a table into docs/benchmarks.md. Source it after `set -euo pipefail`; it
# defines functions and the arrays below, and runs nothing.
#
# A script that starts processes calls lib_init once: it makes the temp dir
# ($LIB_WORK) and sets the traps that stop every pid in LIB_PIDS and remove
# the dir on any exit, Ctrl-C included.

LIB_PIDS=()   # every process started through lib_start, stopped on exit
LIB_WORK=""   # the temp dir of lib_init
LIB_NAME=${LIB_NAME:-$(basename "$0")}

# lib_parse_args reads the measuring scripts' one flag: --write-docs sets
# write_docs=true (false otherwise); -h/--help prints the script's header
# comment (up to its `set -euo` line) and exits; anything else is a usage
# error (exit 2).
# shellcheck disable=SC2034 # write_docs is the calling script's
lib_parse_args() {
	local arg
	write_docs=false
	for arg in "$@"; do
		case $arg in
		--write-docs) write_docs=true ;;
		-h | --help)
			sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
			exit 0
			;;
		*)
			echo "usage: $0 [--write-docs]" >&2
			exit 2
			;;
		esac
	done
}

lib_die() {
	echo "$LIB_NAME: $*" >&2
	exit 1
}

# lib_init makes the temp dir (prefix $1) and installs the exit traps.
lib_init() {
	LIB_WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	trap lib_cleanup EXIT
	trap 'exit 130' INT TERM HUP # runs the EXIT trap
}

# lib_cleanup stops every process still running and removes the temp dir.
# A second Ctrl-C does not cut it short.
lib_cleanup() {
	trap '' INT TERM HUP
	lib_stop "${LIB_PIDS[@]}"
	[ -z "$LIB_WORK" ] || rm -rf "$LIB_WORK"
}

# lib_start runs a command in the background with its output in the log
# file $1 and records its pid in LIB_PIDS and in LIB_PID (the caller's
# copy: $! is not reliable once other commands have run).
lib_start() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	LIB_PID=$!
	LIB_PIDS+=("$LIB_PID")
}

# lib_stop sends SIGTERM to the given pids, gives them 10 s to exit, then
# SIGKILLs what is left, reaps them and forgets them in LIB_PIDS. Only the
# pids this script started are ever signalled.
lib_stop() {
	local p alive
	[ $# -gt 0 ] || return 0
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 1 100); do
		alive=false
		for p in "$@"; do if kill -0 "$p" 2>/dev/null; then alive=true; fi; done
		$alive || break
		sleep 0.1
	done
	for p in "$@"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	lib_forget "$@"
}

# lib_forget drops the given pids from LIB_PIDS.
lib_forget() {
	local p keep=()
	for p in "${LIB_PIDS[@]}"; do
		[[ " $* " == *" $p "* ]] || keep+=("$p")
	done
	LIB_PIDS=("${keep[@]}")
}

# lib_run runs a command to completion with its stdout in the file $1 and
# returns its status. It runs in the background, recorded in LIB_PIDS, while
# the script waits for it: a signal then interrupts the wait at once and
# the exit trap stops the command too (a foreground command would first run
# to its end).
lib_run() {
	local out=$1 pid rc=0
	shift
	"$@" >"$out" &
	pid=$!
	LIB_PIDS+=("$pid")
	wait "$pid" || rc=$?
	lib_forget "$pid"
	return "$rc"
}

# lib_build_raftkv builds the release binary of ./cmd/raftkv (-trimpath, no
# debug info) into $1.
lib_build_raftkv() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	(cd "$repo" && go build -trimpath -ldflags='-s -w' -o "$1" ./cmd/raftkv)
}

# lib_wait_for waits up to $1 seconds for a command to succeed: $2 = what
# it waits for, $3 = a pid that must stay alive meanwhile (or ""), $4... =
# the command. On failure it prints the ends of the logs in $LIB_WORK/logs
# and exits.
lib_wait_for() {
	local secs=$1 what=$2 pid=$3
	shift 3
	for _ in $(seq 1 $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		[ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "$LIB_NAME: $what did not come up" >&2
	tail -n 5 "$LIB_WORK"/logs/*.log >&2 2>/dev/null || true
	exit 1
}

# lib_cpu_ticks prints the utime+stime of the given pids, in clock ticks
# (getconf CLK_TCK per second), from /proc/PID/stat.
lib_cpu_ticks() {
	local sum=0 p f
	for p in "$@"; do
		read -r -a f <"/proc/$p/stat"
		sum=$((sum + f[13] + f[14]))
	done
	echo "$sum"
}

# lib_cpu_over prints the CPU seconds (user+system, all of them) the given
# pids use over the next $1 seconds.
lib_cpu_over() {
	local window=$1 a b
	shift
	a=$(lib_cpu_ticks "$@")
	sleep "$window"
	b=$(lib_cpu_ticks "$@")
	awk -v d=$((b - a)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", d / hz }'
}

# lib_balanced succeeds when, as the raftkv node at $1 (host:port) sees it,
# every group has a leader and no node leads two or more groups more than
# another: what the nodes' own balancing reaches. With $2, the cluster must
# also have that many nodes.
lib_balanced() {
	curl -sf "http://$1/v1/cluster" | python3 -c '
import collections, json, sys
st = json.load(sys.stdin)
leads = collections.Counter({n["id"]: 0 for n in st["nodes"]})
for g in st["groups"]:
    if not g.get("leader"):
        sys.exit(1)
    leads[g["leader"]] += 1
if sys.argv[1] and len(leads) != int(sys.argv[1]):
    sys.exit(1)
sys.exit(0 if max(leads.values()) - min(leads.values()) <= 1 else 1)' "${2:-}"
}

# lib_balance_step does one move of the nodes' own balancer, sooner: it
# hands one group of the node leading the most groups to the node leading
# the fewest, through the node at $1. Balancing alone moves one group per
# --balance-interval (10 s), a minute for 8 shards on 3 nodes.
lib_balance_step() {
	local body
	body=$(curl -sf "http://$1/v1/cluster" | python3 -c '
import collections, json, sys
st = json.load(sys.stdin)
leads = collections.defaultdict(list, {n["id"]: [] for n in st["nodes"]})
for g in st["groups"]:
    if g.get("leader"):
        leads[g["leader"]].append(g["name"])
most = max(leads, key=lambda n: (len(leads[n]), n))
least = min(leads, key=lambda n: (len(leads[n]), n))
if len(leads[most]) - len(leads[least]) >= 2:
    print(json.dumps({"group": sorted(leads[most])[-1], "to": least}))') || return 0
	[ -z "$body" ] || curl -sf -X POST -d "$body" "http://$1/v1/cluster/transfer-leadership" >/dev/null || true
}

# lib_settle waits up to $2 seconds for the raftkv cluster behind $1 to be
# balanced, moving leaders as the balancer would.
lib_settle() {
	local addr=$1 secs=$2
	for _ in $(seq 1 "$secs"); do
		lib_balanced "$addr" && return 0
		lib_balance_step "$addr"
		sleep 1
	done
	lib_die "leadership not balanced after ${secs}s"
}

# lib_write_docs replaces the text between "<!-- $2 begin -->" and
# "<!-- $2 end -->" in the markdown file $1 with the file $3; it fails, and
# changes nothing, unless $1 has one such section.
lib_write_docs() {
	python3 - "$1" "$2" "$3" "$LIB_NAME" <<'EOF'
import sys
path, name, section, me = sys.argv[1], sys.argv[2], open(sys.argv[3]).read(), sys.argv[4]
begin, end = "<!-- %s begin -->" % name, "<!-- %s end -->" % name
text = open(path).read()
if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
    sys.exit("%s: %s needs one %s ... %s section" % (me, path, begin, end))
head, rest = text.split(begin)
_, tail = rest.split(end)
open(path, "w").write(head + begin + "\n" + section + end + tail)
EOF
}
