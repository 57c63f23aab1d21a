#!/usr/bin/env bash
# bench/profile.sh: where the CPU goes in one repbench run against rephubd
# (32 MiB volume, so the initial sync is a small part of the profile),
# as scripts/bench.sh runs it for comparisons c, d and g (the profile behind
# bench/profile.md, which scripts/bench.sh copies into docs/BENCHMARKS.md).
#
#   bench/profile.sh [--build DIR] [--data shm|tcp|rdma] [--record-size S] [--qd N]
#                    [--threads N] [--seconds S] [--out DIR] [--callgrind] [--system]
#
# Default: perf sampling (`perf record -e cpu-clock`, a software event, so
# it also works where hardware counters are not exposed, e.g. in a VM where
# `perf stat -e instructions` says <not supported>), kernel included, of the
# hub and of the repbench process, each on its own; reports
# (`perf report --stdio --no-children`) go to --out (default: a scratch
# folder under /tmp, printed). --callgrind runs both under valgrind's
# callgrind instead (user space only, about 50x slower). --system samples
# every CPU (`perf record -a`, idle included) instead of the two processes.
# --data rdma runs inside the soft-RoCE VM, e.g.
#   tests/rxe-vm/run.sh --share /tmp/pf -- bench/profile.sh --build build \
#       --data rdma --record-size 4k --qd 1 --system --out /tmp/pf
# Measures nothing for the docs by itself and asserts nothing.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$SRC/build DATA=shm REC=64k QD=16 THREADS="" SECS=3 OUT="" CG=0 SYS=0
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$(cd "$2" && pwd); shift ;;
	--data) DATA=$2; shift ;;
	--record-size) REC=$2; shift ;;
	--qd) QD=$2; shift ;;
	--threads) THREADS=$2; shift ;;
	--seconds) SECS=$2; shift ;;
	--out) OUT=$2; shift ;;
	--callgrind) CG=1 ;;
	--system) SYS=1 ;;
	-h | --help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
BIN=$BUILD/bin
OUT=${OUT:-$(mktemp -d /tmp/rf-profile.XXXX)}
mkdir -p "$OUT"
W=$(mktemp -d /dev/shm/rf-profile.XXXX)
PIDS=()
cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$((20000 + RANDOM % 40000))
case $DATA in
shm) url=shm://$W/hub.sock ;;
tcp) url=tcp://127.0.0.1:$((port + 1)) ;;
rdma) url=rdma://10.0.2.15:$((port + 1)) ;;
*) echo "profile.sh: --data shm|tcp|rdma" >&2; exit 2 ;;
esac
mkdir -p "$W/state"
cat >"$W/hub.conf" <<EOF
[hub]
control = 127.0.0.1:$port
data = $url
state_dir = $W/state
ring_size = 64M
log_level = warn

[volume pf-a0-v0]
recovery = $W/state/pf-a0-v0.img
EOF
hub_cmd=("$BIN/rephubd" --config "$W/hub.conf")
rb_cmd=("$BIN/repbench" --hub "127.0.0.1:$port" --dir "$W" --prefix pf --vol-size 32M
	--record-size "$REC" --qd "$QD" ${THREADS:+--threads "$THREADS"} --seconds "$SECS"
	--json "$OUT/repbench.json")
if [ "$CG" = 1 ]; then
	hub_cmd=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.hub" "${hub_cmd[@]}")
	rb_cmd=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.repbench" "${rb_cmd[@]}")
fi
"${hub_cmd[@]}" >"$OUT/hub.log" 2>&1 &
hub=$!
PIDS+=("$hub")
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
if [ "$CG" = 1 ]; then
	timeout 600 "${rb_cmd[@]}" 2>"$OUT/repbench.log"
elif [ "$SYS" = 1 ]; then
	timeout 300 perf record -a -e cpu-clock -F 997 -o "$OUT/perf.system" -- "${rb_cmd[@]}" \
		2>"$OUT/repbench.log"
else
	hubpid=$hub
	perf record -e cpu-clock -F 997 -o "$OUT/perf.hub" -p "$hubpid" >"$OUT/perf-hub.log" 2>&1 &
	PIDS+=("$!")
	sleep 0.5
	timeout 300 perf record -e cpu-clock -F 997 -o "$OUT/perf.repbench" -- "${rb_cmd[@]}" \
		2>"$OUT/repbench.log"
	kill -INT "${PIDS[1]}"
	wait "${PIDS[1]}" || true
fi
kill -TERM "$hub"
wait "$hub" 2>/dev/null || true
if [ "$SYS" = 1 ]; then
	perf report -i "$OUT/perf.system" --stdio --no-children --sort comm,dso,sym 2>/dev/null |
		grep -v '^$' | head -60 >"$OUT/system.top.txt" || true
	perf report -i "$OUT/perf.system" --stdio --no-children --sort comm 2>/dev/null |
		grep -v '^$' | head -25 >"$OUT/system.comm.txt" || true
elif [ "$CG" = 1 ]; then
	for s in hub repbench; do
		callgrind_annotate "$OUT/callgrind.$s" 2>/dev/null | head -40 >"$OUT/$s.top.txt" || true
	done
else
	for s in hub repbench; do
		perf report -i "$OUT/perf.$s" --stdio --no-children --sort dso,sym 2>/dev/null |
			grep -v '^$' | head -45 >"$OUT/$s.top.txt" || true
		perf report -i "$OUT/perf.$s" --stdio --no-children --sort dso 2>/dev/null |
			grep -v '^$' | head -20 >"$OUT/$s.dso.txt" || true
	done
fi
echo "profile.sh: reports in $OUT (repbench.json, {hub,repbench}.top.txt)"
