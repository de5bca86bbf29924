#!/usr/bin/env bash
# bench.sh: raftkv next to etcd, measured by the same client.
#
# Builds ./cmd/raftkv (release build: -trimpath, no debug info), starts a
# 3-node raftkv cluster (default flags) and a 3-node etcd cluster (Debian's
# etcd-server, 3.4), all on 127.0.0.1 with data in a temp dir, then runs
# `raftkv bench` against each in turn for every load and round (even rounds
# in reverse order): raftkv with
# plain HTTP clients spread over the nodes, raftkv with the leader-aware
# client (`bench --leader-aware`: each key straight to its shard's leader),
# then etcd through its JSON gateway (the same HTTP client) and through
# gRPC (`bench --target etcd-grpc`: etcd's own Go client). Every run gets
# the same load: the workers spread round-robin over the three members
# (unless leader-aware), 100-byte values, 10,000 keys. The CPU of a system's three
# server processes (utime+stime from /proc/PID/stat) is read before and
# after each run, and given per 1,000 writes for the write loads (a read
# run's figure would include its preload); so is the bench client's own
# CPU (getrusage), which takes from the servers' on this shared machine. One markdown table comes out at the end; with
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

DURATION=${DURATION:-10s} ROUNDS=${ROUNDS:-2} BASE=${BASE:-19400}
all_loads="put1 put64 put256 get64 mixed64 txn1 txn64"
LOADS=${LOADS:-$all_loads}
CLIENTS=${CLIENTS:-spread leader-aware}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
docs=$repo/docs/benchmarks.md
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
lib_parse_args "$@" # sets write_docs; --help prints the header above

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
targets+=(etcd etcd-grpc)

if ! command -v etcd >/dev/null; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "bench.sh: installing etcd-server" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
	else
		lib_die "needs the etcd binary (Debian: apt-get install etcd-server)"
	fi
fi
for tool in curl python3; do
	command -v "$tool" >/dev/null || lib_die "needs $tool"
done

lib_init raftkv-bench
raftkv_pids=() etcd_pids=()
mkdir "$LIB_WORK/bin" "$LIB_WORK/data" "$LIB_WORK/logs"

echo "bench.sh: building raftkv" >&2
lib_build_raftkv "$LIB_WORK/bin/raftkv"
bin=$LIB_WORK/bin/raftkv

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
		lib_start "$LIB_WORK/logs/raftkv-n$i.log" "$bin" serve --id "n$i" --data-dir "$LIB_WORK/data/raftkv-n$i" \
			--http-addr "${raftkv_eps[i - 1]}" --raft-addr "127.0.0.1:$((BASE + 100 + i - 1))" \
			--log-level warn "${join[@]}"
		raftkv_pids+=("$LIB_PID")
		lib_wait_for 30 "raftkv n$i" "$LIB_PID" curl -sf "http://${raftkv_eps[i - 1]}/readyz"
	done
}

start_etcd() {
	local i cluster=""
	for i in 1 2 3; do
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$((BASE + 300 + i - 1))"
	done
	for i in 1 2 3; do
		lib_start "$LIB_WORK/logs/etcd-e$i.log" etcd --name "e$i" --data-dir "$LIB_WORK/data/etcd-e$i" \
			--listen-client-urls "http://${etcd_eps[i - 1]}" --advertise-client-urls "http://${etcd_eps[i - 1]}" \
			--listen-peer-urls "http://127.0.0.1:$((BASE + 300 + i - 1))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 300 + i - 1))" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token raftkv-bench \
			--log-level warn
		etcd_pids+=("$LIB_PID")
	done
	for i in 1 2 3; do
		lib_wait_for 30 "etcd e$i" "${etcd_pids[i - 1]}" sh -c "curl -sf http://${etcd_eps[i - 1]}/health | grep -q '\"health\":\"true\"'"
	done
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

echo "bench.sh: starting 3 raftkv nodes and 3 etcd members in $LIB_WORK" >&2
start_raftkv
start_etcd
# The nodes' own balancing reaches a balanced leadership within
# --balance-interval (10 s) or two of starting.
lib_wait_for 30 "balanced raftkv leadership" "" lib_balanced "${raftkv_eps[0]}" 3
echo "bench.sh: raftkv $raftkv_endpoints, etcd $etcd_endpoints ($(etcd --version | head -1))" >&2

results=$LIB_WORK/results.tsv
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
	# Even rounds run the targets in reverse order, so that over two rounds
	# each system runs as often early as late in a load: the machine's drift
	# and what a run leaves behind (the previous system's background work)
	# fall on both sides alike.
	order=("${targets[@]}")
	if [ $((round % 2)) -eq 0 ]; then
		order=()
		for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[i]}"); done
	fi
	for load in $LOADS; do
		for target in "${order[@]}"; do
			case $target in
			raftkv) eps=$raftkv_endpoints server=("${raftkv_pids[@]}") flags=(--target raftkv) ;;
			raftkv-la) eps=$raftkv_endpoints server=("${raftkv_pids[@]}") flags=(--target raftkv --leader-aware) ;;
			etcd) eps=$etcd_endpoints server=("${etcd_pids[@]}") flags=(--target etcd) ;;
			etcd-grpc) eps=$etcd_endpoints server=("${etcd_pids[@]}") flags=(--target etcd-grpc) ;;
			esac
			before=$(lib_cpu_ticks "${server[@]}")
			# shellcheck disable=SC2046 # bench_args is a list of flags
			lib_run "$LIB_WORK/bench.json" "$bin" bench "${flags[@]}" --endpoints "$eps" $(bench_args "$load") \
				--duration "$DURATION" --timeout 10s -o json || true
			out=$(cat "$LIB_WORK/bench.json")
			after=$(lib_cpu_ticks "${server[@]}")
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
targets = sys.argv[3:]  # the raftkv clients, then etcd's two interfaces
etcds = ["etcd", "etcd-grpc"]
raftkvs = [t for t in targets if t not in etcds]
heading = {"raftkv": "raftkv", "raftkv-la": "raftkv leader-aware", "etcd": "etcd gateway", "etcd-grpc": "etcd gRPC"}
for line in open(sys.argv[1]):
    rnd, load, target, ticks, out = line.rstrip("\n").split("\t", 4)
    r = json.loads(out)
    r["cpu_ms_per_1000"] = 1e6 * int(ticks) / hz / max(r["ok"], 1)
    r["client_cpu_ms_per_1000"] = 1000 * r.get("client_cpu_ms", 0) / max(r["ok"], 1)
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

short = {"raftkv": "raftkv", "raftkv-la": "leader-aware", "etcd": "gateway", "etcd-grpc": "gRPC"}
pairs = [(k, e) for e in etcds for k in raftkvs]
ratio_heads = ["%s / %s" % (short[k], short[e]) for k, e in pairs]
print("| load | | %s | %s |" % (" | ".join(heading[t] for t in targets), " | ".join(ratio_heads)))
print("|---|---|%s" % ("---:|" * (len(targets) + len(pairs))))
for load in order:
    title, unit = names[load]
    def row(label, field, fmt, ratios=True):
        cells = [each(rows[load][t], field, fmt) for t in targets]
        rs = [ratio(rows[load][k], rows[load][e], field) if ratios else "" for k, e in pairs]
        fields = list(label) + cells + rs
        print("|" + "|".join(" %s " % f if f else " " for f in fields) + "|")
    row((title, unit), "ops_per_sec", "{:,.0f}")
    row(("", "p50"), "p50_ms", "{:.2f} ms")
    row(("", "p99"), "p99_ms", "{:.2f} ms")
    row(("", "errors"), "errors", "{:,}", ratios=False)
    if load.startswith("put"):
        row(("", "CPU per 1,000 writes"), "cpu_ms_per_1000", "{:.0f} ms")
        row(("", "client's CPU per 1,000 writes"), "client_cpu_ms_per_1000", "{:.0f} ms")

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
	section=$LIB_WORK/section.md
	{
		echo "Measured $(date -u +%Y-%m-%d) with \`$command\` ($(etcd --version | head -1 | sed 's/^etcd Version: /etcd /'), raftkv $(git -C "$repo" rev-parse --short HEAD)). A cell lists the rounds in order; the ratio is of their means."
		echo
		echo "$table"
	} >"$section"
	lib_write_docs "$docs" bench.sh "$section"
	echo "bench.sh: wrote the table into docs/benchmarks.md" >&2
fi
