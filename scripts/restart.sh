#!/usr/bin/env bash
# restart.sh: how long a real node process holding KEYS keys of 100 B takes
# to restart, raftkv next to etcd 3.4, timed end to end from starting the
# process until it answers ready.
#
# Builds ./cmd/raftkv (release build, as bench.sh), then sets up, once and
# untimed, a single-node raftkv (1 shard unless SHARDS is set, otherwise
# default flags) and a single-member etcd (Debian's etcd-server, default
# flags but --snapshot-count), both on 127.0.0.1 with data in a temp dir:
#   - load: KEYS keys "bench/%08d" (as `raftkv bench` names them) of 100 B,
#     written by 8 clients as transactions of 128 puts (POST /v1/txn;
#     etcd's POST /v3/kv/txn through its JSON gateway), 128 being both
#     systems' default limit of operations per transaction;
#   - raftkv: a checkpoint of every group (POST /v1/cluster/snapshot);
#     etcd snapshots by itself every ETCD_SNAPSHOT_COUNT entries;
#   - tail: TAIL single-key writes over the loaded keys (PUT /v1/kv/KEY,
#     POST /v3/kv/put), which a restart finds in the log after the newest
#     checkpoint and replays, as a real restart does;
#   - stop (SIGTERM).
# Then, ROUNDS times, raftkv then etcd: start the process on its data dir
# and time it until raftkv's GET /readyz answers 200 or etcd's GET /health
# answers {"health":"true"} (polled every 10 ms), read its RSS
# (/proc/PID/status VmRSS) at that moment, and stop it again. Both data
# dirs are in the page cache, as on a machine that restarts a process (not
# one that reboots). A single node is compared with a single member so that
# neither has peers to catch up with: both must load their state and elect
# themselves. One markdown table comes out at the end; with --write-docs it
# also replaces the section of docs/benchmarks.md between the restart.sh
# markers.
#
#   scripts/restart.sh
#   KEYS=50000 ROUNDS=1 scripts/restart.sh
#   scripts/restart.sh --write-docs
#
# Environment: KEYS (default 1000000), TAIL (5000), ROUNDS (3), SHARDS (1),
# ETCD_SNAPSHOT_COUNT (5000; etcd's default is 100000, which would leave
# the whole load in its log), BASE port (19850: raftkv HTTP BASE and raft
# BASE+1, etcd clients BASE+2 and peers BASE+3).
#
# Every process it starts is stopped by pid, and the temp dir removed, on
# any exit, Ctrl-C included.
set -euo pipefail

KEYS=${KEYS:-1000000} TAIL=${TAIL:-5000} ROUNDS=${ROUNDS:-3} SHARDS=${SHARDS:-1}
ETCD_SNAPSHOT_COUNT=${ETCD_SNAPSHOT_COUNT:-5000} BASE=${BASE:-19850}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
docs=$repo/docs/benchmarks.md
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
lib_parse_args "$@" # sets write_docs; --help prints the header above

command -v etcd >/dev/null || lib_die "needs the etcd binary (Debian: apt-get install etcd-server)"
for tool in curl python3; do
	command -v "$tool" >/dev/null || lib_die "needs $tool"
done

lib_init raftkv-restart
mkdir "$LIB_WORK/bin" "$LIB_WORK/logs" "$LIB_WORK/data"
echo "restart.sh: building raftkv" >&2
lib_build_raftkv "$LIB_WORK/bin/raftkv"
bin=$LIB_WORK/bin/raftkv
raftkv_http=127.0.0.1:$BASE etcd_client=127.0.0.1:$((BASE + 2))
etcd_peer=http://127.0.0.1:$((BASE + 3))

raftkv_cmd=("$bin" serve --id n1 --data-dir "$LIB_WORK/data/raftkv" --shards "$SHARDS"
	--http-addr "$raftkv_http" --raft-addr "127.0.0.1:$((BASE + 1))")
etcd_cmd=(etcd --name e1 --data-dir "$LIB_WORK/data/etcd" --snapshot-count "$ETCD_SNAPSHOT_COUNT"
	--listen-client-urls "http://$etcd_client" --advertise-client-urls "http://$etcd_client"
	--listen-peer-urls "$etcd_peer" --initial-advertise-peer-urls "$etcd_peer"
	--initial-cluster "e1=$etcd_peer" --initial-cluster-state new --initial-cluster-token raftkv-restart)

# The helper: loads keys, writes the tail, and waits for readiness. Polling
# from one Python process costs the machine less than a curl per poll.
helper=$LIB_WORK/restart.py
cat >"$helper" <<'EOF'
import base64, http.client, json, random, sys, threading, time

VALUE = "v" * 100
LOADERS = 8

def key(i):
    return "bench/%08d" % i

def request(conn, method, path, body):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit("%s %s: %d %s" % (method, path, resp.status, data[:200]))
    return data

def b64(s):
    return base64.b64encode(s.encode()).decode()

def txn(target, keys):
    if target == "raftkv":
        return "/v1/txn", json.dumps({"success": [{"op": "put", "key": key(i), "value": VALUE} for i in keys]})
    return "/v3/kv/txn", json.dumps({"success": [{"requestPut": {"key": b64(key(i)), "value": b64(VALUE)}} for i in keys]})

def put(target, i):
    if target == "raftkv":
        return "PUT", "/v1/kv/" + key(i), VALUE
    return "POST", "/v3/kv/put", json.dumps({"key": b64(key(i)), "value": b64(VALUE)})

def parallel(work):
    """Runs work(conn, worker) on LOADERS threads, each with its own connection."""
    errors = []
    def run(w):
        try:
            work(http.client.HTTPConnection(addr, timeout=60), w)
        except BaseException as e:
            errors.append(e)
    threads = [threading.Thread(target=run, args=(w,)) for w in range(LOADERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("%s: %s" % (target, errors[0]))

mode, target, addr = sys.argv[1:4]
if mode == "load":  # load TARGET ADDR KEYS
    n = int(sys.argv[4])
    batches = [range(s, min(s + 128, n)) for s in range(0, n, 128)]
    def load(conn, w):
        for b in batches[w::LOADERS]:
            request(conn, "POST", *txn(target, b))
    parallel(load)
elif mode == "tail":  # tail TARGET ADDR KEYS TAIL
    n, tail = int(sys.argv[4]), int(sys.argv[5])
    picks = random.Random(1).choices(range(n), k=tail)
    def write(conn, w):
        for i in picks[w::LOADERS]:
            request(conn, *put(target, i))
    parallel(write)
elif mode == "ready":  # ready TARGET ADDR START PID: ms from START (epoch s) to ready, RSS MiB
    start, pid = float(sys.argv[4]), sys.argv[5]
    path = "/readyz" if target == "raftkv" else "/health"
    while True:
        try:
            conn = http.client.HTTPConnection(addr, timeout=1)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200 and (target == "raftkv" or json.loads(body).get("health") == "true"):
                break
        except (OSError, http.client.HTTPException, ValueError):
            pass
        try:
            open("/proc/%s/stat" % pid).close()
        except OSError:
            sys.exit("%s exited before it was ready" % target)
        if time.time() - start > 300:
            sys.exit("%s not ready after 300 s" % target)
        time.sleep(0.01)
    took = time.time() - start
    rss = [l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS:")][0]
    print("%.0f %.0f" % (1000 * took, int(rss) / 1024))
EOF

# raftkv_status prints what the node reports about its shard groups (GET
# /v1/cluster): per group, its newest checkpoint's index and its last log
# index; with "sum", one line about the restart instead: keys restored, the
# slowest checkpoint load (ms), entries replayed, the slowest recovery (ms;
# -1 while a group is still replaying).
raftkv_status() {
	curl -sf "http://$raftkv_http/v1/cluster" | python3 -c '
import json, sys
gs = [g for g in json.load(sys.stdin)["groups"] if g["name"] != "meta"]
if sys.argv[1:] == ["sum"]:
    rec = [g.get("recovery_ms", -1) for g in gs]
    print(sum(g.get("restored_keys", 0) for g in gs), max(g.get("restore_ms", 0) for g in gs),
          sum(g.get("replayed_entries", 0) for g in gs), -1 if min(rec) < 0 else max(rec))
else:
    for g in gs:
        print("  %s: checkpoint at index %s, log to %s" % (g["name"], g.get("last_snapshot_index"), g.get("last_log_index")))' "$@"
}

# etcd_log_after_snapshot prints how many entries etcd's log holds after
# its newest snapshot: raft index (from /v3/maintenance/status) minus the
# index in the newest member/snap/TERM-INDEX.snap file name.
etcd_log_after_snapshot() {
	local status snap
	status=$(curl -sf -X POST -d '{}' "http://$etcd_client/v3/maintenance/status")
	snap=$(find "$LIB_WORK/data/etcd/member/snap" -name '*.snap' -printf '%f\n' | sort | tail -n 1)
	python3 -c '
import json, sys
st, snap = json.loads(sys.argv[1]), sys.argv[2]
idx = int(snap.split("-")[1].split(".")[0], 16) if snap else 0
print(int(st["raftIndex"]) - idx, idx)' "$status" "$snap"
}

etcd_ready() { curl -sf "http://$etcd_client/health" | grep -q '"health":"true"'; }

echo "restart.sh: loading $KEYS keys into raftkv ($SHARDS shard(s)) and etcd ($(etcd --version | head -1))" >&2
lib_start "$LIB_WORK/logs/raftkv-setup.log" "${raftkv_cmd[@]}"
pid=$LIB_PID
lib_wait_for 60 raftkv "$pid" curl -sf "http://$raftkv_http/readyz"
t0=$EPOCHREALTIME
lib_run /dev/null python3 "$helper" load raftkv "$raftkv_http" "$KEYS"
t1=$EPOCHREALTIME
curl -sf -X POST "http://$raftkv_http/v1/cluster/snapshot" >/dev/null || lib_die "raftkv checkpoint failed"
lib_run /dev/null python3 "$helper" tail raftkv "$raftkv_http" "$KEYS" "$TAIL"
echo "restart.sh: raftkv loaded in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, checkpoint taken, $TAIL writes after it:" >&2
raftkv_status >&2
lib_stop "$pid"

lib_start "$LIB_WORK/logs/etcd-setup.log" "${etcd_cmd[@]}"
pid=$LIB_PID
lib_wait_for 60 etcd "$pid" etcd_ready
t0=$EPOCHREALTIME
lib_run /dev/null python3 "$helper" load etcd "$etcd_client" "$KEYS"
t1=$EPOCHREALTIME
lib_run /dev/null python3 "$helper" tail etcd "$etcd_client" "$KEYS" "$TAIL"
read -r etcd_tail etcd_snap < <(etcd_log_after_snapshot)
echo "restart.sh: etcd loaded in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; newest snapshot at index $etcd_snap, $etcd_tail entries after it" >&2
lib_stop "$pid"
# etcd's --initial-cluster-state new is only read when the data dir is
# empty; restarts use the same flags, as a service manager would.

results=$LIB_WORK/results.tsv
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
	for target in raftkv etcd; do
		if [ "$target" = raftkv ]; then cmd=("${raftkv_cmd[@]}") addr=$raftkv_http; else cmd=("${etcd_cmd[@]}") addr=$etcd_client; fi
		start=$EPOCHREALTIME
		lib_start "$LIB_WORK/logs/$target-$round.log" "${cmd[@]}"
		pid=$LIB_PID
		lib_run "$LIB_WORK/ready" python3 "$helper" ready "$target" "$addr" "$start" "$pid" ||
			lib_die "$target did not restart (log: $(tail -n 3 "$LIB_WORK/logs/$target-$round.log"))"
		read -r ms rss <"$LIB_WORK/ready"
		extra=""
		if [ "$target" = raftkv ]; then
			# recovery_ms is -1 until the group has replayed its log; wait
			# for it (untimed) to report what the restart did.
			for _ in $(seq 1 100); do
				extra=$(raftkv_status sum) || extra="- - - -1"
				[ "${extra##* }" = -1 ] || break
				sleep 0.1
			done
		else
			extra="$KEYS - $etcd_tail -"
		fi
		lib_stop "$pid"
		printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$ms" "$rss" "$extra" >>"$results"
		echo "round $round $target: ready in $ms ms, RSS $rss MiB (keys, checkpoint ms, entries replayed, recovery ms: $extra)" >&2
	done
done

command="KEYS=$KEYS TAIL=$TAIL ROUNDS=$ROUNDS"
[ "$SHARDS" = 1 ] || command+=" SHARDS=$SHARDS"
[ "$ETCD_SNAPSHOT_COUNT" = 5000 ] || command+=" ETCD_SNAPSHOT_COUNT=$ETCD_SNAPSHOT_COUNT"
command+=" scripts/restart.sh"
table=$(python3 - "$results" <<'EOF'
import collections, sys

rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rnd, target, ms, rss, extra = line.rstrip("\n").split("\t")
    keys, ckpt, replayed, recovery = extra.split()
    num = lambda v: int(v) if v.lstrip("-").isdigit() else v
    rows[target].append(dict(ms=float(ms), rss=float(rss), ckpt=num(ckpt), replayed=num(replayed), recovery=num(recovery)))

def each(rs, f, fmt="{}"):
    # A figure the node did not report ("-") is printed as it is.
    return ", ".join(fmt.format(r[f]) if not isinstance(r[f], str) else r[f] for r in rs)

def mean(rs, f):
    return sum(r[f] for r in rs) / len(rs)

k, e = rows["raftkv"], rows["etcd"]
print("| | raftkv | etcd | raftkv/etcd |")
print("|---|---:|---:|---:|")
print("| start to ready (/readyz 200, /health true) | %s | %s | %.2f |" % (each(k, "ms", "{:,.0f} ms"), each(e, "ms", "{:,.0f} ms"), mean(k, "ms") / mean(e, "ms")))
print("| RSS when ready | %s | %s | %.2f |" % (each(k, "rss", "{:,.0f} MiB"), each(e, "rss", "{:,.0f} MiB"), mean(k, "rss") / mean(e, "rss")))
print("| log entries after the newest checkpoint | %s | %s | |" % (each(k, "replayed", "{:,}"), each(e[:1], "replayed", "{:,}")))
print("| raftkv: checkpoint load | %s | | |" % each(k, "ckpt", "{} ms"))
print("| raftkv: recovery (checkpoint, election, replay) | %s | | |" % each(k, "recovery", "{} ms"))
EOF
)

echo
echo "$table"

if $write_docs; then
	section=$LIB_WORK/section.md
	{
		echo "Measured $(date -u +%Y-%m-%d) with \`$command\` ($(etcd --version | head -1 | sed 's/^etcd Version: /etcd /'), raftkv $(git -C "$repo" rev-parse --short HEAD)). A cell lists the rounds in order, raftkv and etcd alternating; the ratio is of their means."
		echo
		echo "$table"
	} >"$section"
	lib_write_docs "$docs" restart.sh "$section"
	echo "restart.sh: wrote the table into docs/benchmarks.md" >&2
fi
