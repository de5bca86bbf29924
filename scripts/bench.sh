#!/usr/bin/env bash
# bench.sh: raftkv next to etcd, measured by the same client.
#
# Builds ./cmd/raftkv (release build: -trimpath, no debug info), starts a
# 3-node raftkv cluster (default flags) and a 3-node etcd cluster (Debian's
# etcd-server, 3.4), all on 127.0.0.1 with data in a temp dir, then runs
# `raftkv bench` against each in turn for every load and round: raftkv with
# plain HTTP clients spread over the nodes, raftkv with the leader-aware
# client (`bench --leader-aware`: each key straight to its shard's leader),
# then etcd. Every run gets the same load: the workers spread round-robin
# over the three members (unless leader-aware), 100-byte values, 10,000
# keys. The CPU of a system's three
# server processes (utime+stime from /proc/PID/stat) is read before and
# after each run, and given per 1,000 writes for the write loads (a read
# run's figure would include its preload). One markdown table comes out at the end; with
# --write-docs it also replaces the section of docs/benchmarks.md between
# the bench.sh markers.
#
#   scripts/bench.sh
#   DURATION=2s ROUNDS=1 LOADS="put64 get64" scripts/bench.sh
#   scripts/bench.sh --write-docs
#
# Loads (LOADS, space-separated; default all of them):
#   put1 put64 put256   writes with 1, 64 and 256 clients
#   get64               linearizable reads with 64 clients
#   mixed64             90% linearizable reads, 10% writes, 64 clients
#   txn1 txn64          2-key transfers across two shards (a compare and two
#                       puts in one transaction), 1 and 64 clients; with put1
#                       the table also gives txn1's p50 over put1's
#
# Environment: DURATION per run (default 10s), ROUNDS (default 2), BASE
# port (default 19400: raftkv HTTP BASE.., raft BASE+100.., etcd clients
# BASE+200.., etcd peers BASE+300..), CLIENTS: the raftkv clients to run
# (default "spread leader-aware"; "spread" or "leader-aware" for one).
#
# Every process it starts is stopped by pid, and the temp dir removed, on
# any exit, Ctrl-C included.
set -euo pipefail

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

DURATION=${DURATION:-10s} ROUNDS=${ROUNDS:-2} BASE=${BASE:-19400}
all_loads="put1 put64 put256 get64 mixed64 txn1 txn64"
LOADS=${LOADS:-$all_loads}
CLIENTS=${CLIENTS:-spread leader-aware}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
docs=$repo/docs/benchmarks.md

for load in $LOADS; do
	case $load in
	put1 | put64 | put256 | get64 | mixed64 | txn1 | txn64) ;;
	*)
		echo "bench.sh: unknown load $load (known: $all_loads)" >&2
		exit 2
		;;
	esac
done
# targets: the runs of each load, in order. raftkv is the spread client,
# raftkv-la the leader-aware one.
targets=()
for kind in $CLIENTS; do
	case $kind in
	spread) targets+=(raftkv) ;;
	leader-aware) targets+=(raftkv-la) ;;
	*)
		echo "bench.sh: unknown client $kind in CLIENTS (known: spread leader-aware)" >&2
		exit 2
		;;
	esac
done
if [ ${#targets[@]} -eq 0 ]; then
	echo "bench.sh: CLIENTS is empty" >&2
	exit 2
fi
targets+=(etcd)

if ! command -v etcd >/dev/null; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "bench.sh: installing etcd-server" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
	else
		echo "bench.sh: needs the etcd binary (Debian: apt-get install etcd-server)" >&2
		exit 1
	fi
fi
for tool in curl python3; do
	command -v "$tool" >/dev/null || {
		echo "bench.sh: needs $tool" >&2
		exit 1
	}
done

work=$(mktemp -d "${TMPDIR:-/tmp}/raftkv-bench.XXXXXX")
pids=() raftkv_pids=() etcd_pids=()
# cleanup stops every process the script started, SIGTERM first and SIGKILL
# for any still there 10 s later, and removes the temp dir. A second Ctrl-C
# does not cut it short.
cleanup() {
	local p i alive
	trap '' INT TERM HUP
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for i in $(seq 1 100); do
		alive=false
		for p in "${pids[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=true; fi; done
		$alive || break
		sleep 0.1
	done
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP # runs the EXIT trap
mkdir "$work/bin" "$work/data" "$work/logs"

echo "bench.sh: building raftkv" >&2
(cd "$repo" && go build -trimpath -ldflags='-s -w' -o "$work/bin/raftkv" ./cmd/raftkv)
bin=$work/bin/raftkv

# wait_for waits up to 30 s for a command to succeed: $1 = what it waits
# for, $2 = the pid that must stay alive meanwhile (or ""), $3... = the
# command.
wait_for() {
	local what=$1 pid=$2 i
	shift 2
	for i in $(seq 1 300); do
		"$@" >/dev/null 2>&1 && return 0
		[ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench.sh: $what did not come up" >&2
	tail -n 5 "$work"/logs/*.log >&2 || true
	exit 1
}

raftkv_eps=() etcd_eps=()
for i in 1 2 3; do
	raftkv_eps+=("127.0.0.1:$((BASE + i - 1))")
	etcd_eps+=("127.0.0.1:$((BASE + 200 + i - 1))")
done
raftkv_endpoints=$(
	IFS=,
	echo "${raftkv_eps[*]}"
)
etcd_endpoints=$(
	IFS=,
	echo "${etcd_eps[*]}"
)

start_raftkv() {
	local i join
	for i in 1 2 3; do
		join=()
		[ "$i" -gt 1 ] && join=(--join "${raftkv_eps[0]}")
		"$bin" serve --id "n$i" --data-dir "$work/data/raftkv-n$i" \
			--http-addr "${raftkv_eps[i - 1]}" --raft-addr "127.0.0.1:$((BASE + 100 + i - 1))" \
			--log-level warn "${join[@]}" >"$work/logs/raftkv-n$i.log" 2>&1 &
		pids+=($!) raftkv_pids+=($!)
		wait_for "raftkv n$i" "$!" curl -sf "http://${raftkv_eps[i - 1]}/readyz"
	done
}

# balanced: every group has a leader and no node leads two or more groups
# more than another, which the nodes' own balancing reaches within
# --balance-interval (10 s) or two of starting.
balanced() {
	curl -sf "http://${raftkv_eps[0]}/v1/cluster" | python3 -c '
import collections, json, sys
st = json.load(sys.stdin)
leads = collections.Counter({n["id"]: 0 for n in st["nodes"]})
for g in st["groups"]:
    if not g.get("leader"):
        sys.exit(1)
    leads[g["leader"]] += 1
sys.exit(0 if len(leads) == 3 and max(leads.values()) - min(leads.values()) <= 1 else 1)'
}

start_etcd() {
	local i cluster=""
	for i in 1 2 3; do
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$((BASE + 300 + i - 1))"
	done
	for i in 1 2 3; do
		etcd --name "e$i" --data-dir "$work/data/etcd-e$i" \
			--listen-client-urls "http://${etcd_eps[i - 1]}" --advertise-client-urls "http://${etcd_eps[i - 1]}" \
			--listen-peer-urls "http://127.0.0.1:$((BASE + 300 + i - 1))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 300 + i - 1))" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token raftkv-bench \
			--log-level warn >"$work/logs/etcd-e$i.log" 2>&1 &
		pids+=($!) etcd_pids+=($!)
	done
	for i in 1 2 3; do
		wait_for "etcd e$i" "${etcd_pids[i - 1]}" sh -c "curl -sf http://${etcd_eps[i - 1]}/health | grep -q '\"health\":\"true\"'"
	done
}

cpu_ticks() { # utime+stime of the given pids, in clock ticks
	local sum=0 p f
	for p in "$@"; do
		read -r -a f <"/proc/$p/stat"
		sum=$((sum + f[13] + f[14]))
	done
	echo "$sum"
}

bench_args() { # the bench flags of load $1
	case $1 in
	put1) echo "--op put --clients 1" ;;
	put64) echo "--op put --clients 64" ;;
	put256) echo "--op put --clients 256" ;;
	get64) echo "--op get --clients 64" ;;
	mixed64) echo "--op mixed --read-ratio 0.9 --clients 64" ;;
	txn1) echo "--op txn --clients 1" ;;
	txn64) echo "--op txn --clients 64" ;;
	esac
}

echo "bench.sh: starting 3 raftkv nodes and 3 etcd members in $work" >&2
start_raftkv
start_etcd
wait_for "balanced raftkv leadership" "" balanced
echo "bench.sh: raftkv $raftkv_endpoints, etcd $etcd_endpoints ($(etcd --version | head -1))" >&2

results=$work/results.tsv
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
	for load in $LOADS; do
		for target in "${targets[@]}"; do
			case $target in
			raftkv) eps=$raftkv_endpoints server=("${raftkv_pids[@]}") flags=(--target raftkv) ;;
			raftkv-la) eps=$raftkv_endpoints server=("${raftkv_pids[@]}") flags=(--target raftkv --leader-aware) ;;
			etcd) eps=$etcd_endpoints server=("${etcd_pids[@]}") flags=(--target etcd) ;;
			esac
			before=$(cpu_ticks "${server[@]}")
			# shellcheck disable=SC2046 # bench_args is a list of flags
			out=$("$bin" bench "${flags[@]}" --endpoints "$eps" $(bench_args "$load") \
				--duration "$DURATION" --timeout 10s -o json) || true
			after=$(cpu_ticks "${server[@]}")
			[ -n "$out" ] || out='{"ok":0,"errors":0,"ops_per_sec":0,"p50_ms":0,"p99_ms":0}'
			printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$load" "$target" "$((after - before))" "$(tr -d '\n' <<<"$out")" >>"$results"
			python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("round %s %-8s %-9s %8.0f ops/s  p50 %6.2f ms  p99 %7.2f ms  errors %d" % (sys.argv[2], sys.argv[3], sys.argv[4], r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["errors"]))
' "$out" "$round" "$load" "$target" >&2
		done
	done
done

command="DURATION=$DURATION ROUNDS=$ROUNDS"
[ "$LOADS" = "$all_loads" ] || command+=" LOADS=\"$LOADS\""
[ "$CLIENTS" = "spread leader-aware" ] || command+=" CLIENTS=\"$CLIENTS\""
command+=" scripts/bench.sh"
table=$(python3 - "$results" "$(getconf CLK_TCK)" "${targets[@]}" <<'EOF'
import collections, json, sys

rows = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
hz = int(sys.argv[2])
targets = sys.argv[3:]  # the raftkv clients, then etcd
raftkvs = [t for t in targets if t != "etcd"]
heading = {"raftkv": "raftkv", "raftkv-la": "raftkv leader-aware", "etcd": "etcd"}
for line in open(sys.argv[1]):
    rnd, load, target, ticks, out = line.rstrip("\n").split("\t", 4)
    r = json.loads(out)
    r["cpu_ms_per_1000"] = 1e6 * int(ticks) / hz / max(r["ok"], 1)
    rows[load][target].append(r)
    if load not in order:
        order.append(load)

names = {
    "put1": ("writes, 1 client", "writes/s"),
    "put64": ("writes, 64 clients", "writes/s"),
    "put256": ("writes, 256 clients", "writes/s"),
    "get64": ("linearizable reads, 64 clients", "reads/s"),
    "mixed64": ("90% reads / 10% writes, 64 clients", "ops/s"),
    "txn1": ("2-key cross-shard transactions, 1 client", "txn/s"),
    "txn64": ("2-key cross-shard transactions, 64 clients", "txn/s"),
}

def each(rs, field, fmt):
    return ", ".join(fmt.format(r[field]) for r in rs)

def mean(rs, field):
    return sum(r[field] for r in rs) / len(rs) if rs else 0

def ratio(k, e, f):
    return "%.2f" % (mean(k, f) / mean(e, f)) if mean(e, f) and k else "–"

ratio_heads = ["%s/etcd" % heading[t] for t in raftkvs]
print("| load | | %s | %s |" % (" | ".join(heading[t] for t in targets), " | ".join(ratio_heads)))
print("|---|---|%s" % ("---:|" * (len(targets) + len(raftkvs))))
for load in order:
    e = rows[load]["etcd"]
    title, unit = names[load]
    def row(label, field, fmt, ratios=True):
        cells = [each(rows[load][t], field, fmt) for t in targets]
        rs = [ratio(rows[load][t], e, field) if ratios else "" for t in raftkvs]
        fields = list(label) + cells + rs
        print("|" + "|".join(" %s " % f if f else " " for f in fields) + "|")
    row((title, unit), "ops_per_sec", "{:,.0f}")
    row(("", "p50"), "p50_ms", "{:.2f} ms")
    row(("", "p99"), "p99_ms", "{:.2f} ms")
    row(("", "errors"), "errors", "{:,}", ratios=False)
    if load.startswith("put"):
        row(("", "CPU per 1,000 writes"), "cpu_ms_per_1000", "{:.0f} ms")

# The transaction target: a 2-key cross-shard transaction's p50 at most 3x
# a single write's, both with one client.
if "txn1" in rows and "put1" in rows:
    parts = []
    for t in targets:
        w, x = mean(rows["put1"][t], "p50_ms"), mean(rows["txn1"][t], "p50_ms")
        if w:
            parts.append("%s %.2f (%.2f ms / %.2f ms)" % (heading[t], x / w, x, w))
    print()
    print("p50 of a 2-key cross-shard transaction over a single write's, 1 client: " + "; ".join(parts) + ".")
EOF
)

echo
echo "$table"

if $write_docs; then
	section=$work/section.md
	{
		echo "Measured $(date -u +%Y-%m-%d) with \`$command\` ($(etcd --version | head -1 | sed 's/^etcd Version: /etcd /'), raftkv $(git -C "$repo" rev-parse --short HEAD)). A cell lists the rounds in order; the ratio is of their means."
		echo
		echo "$table"
	} >"$section"
	python3 - "$docs" "$section" <<'EOF'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- bench.sh begin -->", "<!-- bench.sh end -->"
text = open(path).read()
if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
    sys.exit("bench.sh: %s needs one %s ... %s section" % (path, begin, end))
head, rest = text.split(begin)
_, tail = rest.split(end)
open(path, "w").write(head + begin + "\n" + section + end + tail)
EOF
	echo "bench.sh: wrote the table into docs/benchmarks.md" >&2
fi
