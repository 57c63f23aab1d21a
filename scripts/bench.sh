#!/usr/bin/env bash
# scripts/bench.sh: every comparison of issue #7 in one run, side by side
# with its anchor on the same machine (and, for rdma, in the same VM boot):
#
#   a  rdma 64 KiB (repbench, soft-RoCE VM)      vs ib_write_bw 64 KiB
#   b  rdma durable-ack p50, 4 KiB, QD1          vs ib_write_lat 4 KiB (RTT)
#      (twice: the ring in DRAM (rule apply) and on an emulated NVDIMM (rule pmem))
#   c  tcp 64 KiB (repbench, loopback)           vs iperf3 single stream
#   d  shm 64 KiB (repbench)                     vs single-thread memcpy
#   e  fio nbd engine via nbdkit + repagent + hub vs plain `nbdkit file`
#   f  initial sync of a 1 GiB volume            vs fio sequential read, transport bw
#   g  1/2/4/8 agents on one hub                 vs 1 agent
#   h  guest 4 KiB QD1 write latency at each acknowledgement level (fio
#      through nbdkit + filter, soft-RoCE VM, ring on the NVDIMM)
#                                                vs plain nbdkit, ib_write_lat
#      and the lags between the three positions under load
#   i  peers across two guests on one wire (tests/rxe-vm/run2.sh, bench/peers.sh):
#      DRBD 8.4 protocol C / A vs repfabric durable / async over rdma: fio
#      4 KiB randwrite QD1 and 1 MiB write QD16 beside the raw disk, and the
#      initial full sync of the same volume
#   j  QEMU's block mirror (qemu-storage-daemon, blockdev-mirror to nbdkit,
#      copy-mode background and write-blocking): time to ready for the f
#      volume, and fio through its NBD export while it mirrors
#                                                vs f (initial sync), e (fio)
#
# Writes bench/results/<timestamp>.json and regenerates docs/BENCHMARKS.md
# and docs/bench/*.png (gnuplot) from that run (bench/report.py).
#
# Usage: scripts/bench.sh [--short] [--build DIR] [--json FILE] [--md FILE]
#                         [--plots DIR] [--only a,b,...] [--no-vm]
#   --short   smoke run (seconds, tiny sizes, no VM unless RF_BENCH_VM=1);
#             outputs go to a scratch folder unless --json/--md/--plots say
#             otherwise, so the committed docs are not overwritten
#   --build   build folder holding bin/ and lib/ (default: build)
#   --only    run only these comparisons (the others are reported skipped)
# Benchmarks measure; nothing here asserts a speed. Exit 0 when the JSON and
# the markdown were written (comparisons that failed are marked in both).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RF_BUILD_DIR:-$SRC/build}
SHORT=0
ONLY=a,b,c,d,e,f,g,h,i,j
VM=1
JSON_OUT="" MD_OUT="" PLOTS_OUT=""
GUEST=""

while [ $# -gt 0 ]; do
	case $1 in
	--short) SHORT=1 ;;
	--build) BUILD=$(cd "$2" && pwd); shift ;;
	--json) JSON_OUT=$2; shift ;;
	--md) MD_OUT=$2; shift ;;
	--plots) PLOTS_OUT=$2; shift ;;
	--only) ONLY=$2; shift ;;
	--no-vm) VM=0 ;;
	--guest) GUEST=$2; shift ;; # internal: runs a/b inside the VM
	-h | --help) sed -n '2,36p' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
BIN=$BUILD/bin
LIB=$BUILD/lib

# ------------------------------------------------------------ sizes, times
if [ "$SHORT" = 1 ]; then
	SECS=0.5 FIO_SECS=1 VOL=16M GVOL=16M SYNC_VOL_MB=32 IPERF_SECS=1 VM_SECS=1 ROUNDS=1
	[ "${RF_BENCH_VM:-0}" = 1 ] || VM=0
else
	SECS=${RF_BENCH_SECS:-3} FIO_SECS=${RF_BENCH_FIO_SECS:-5} VOL=256M GVOL=64M
	SYNC_VOL_MB=${RF_BENCH_SYNC_MB:-1024} IPERF_SECS=3 VM_SECS=${RF_BENCH_VM_SECS:-5}
	ROUNDS=${RF_BENCH_ROUNDS:-3}
fi

# ------------------------------------------------------------ processes
PIDS=()
W=""
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$W" ] && [ -d "$W" ]; then
		if [ "$rc" = 0 ] && [ "${RF_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$W"; else
			log "scratch kept in $W"; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn NAME CMD...: background, output to $W/NAME.log; sets LAST_PID.
spawn() {
	local name=$1; shift
	"$@" >"$W/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}
# stop PID: TERM, wait up to 5 s, KILL.
stop() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
# free_port: a port nobody listens on, below the ephemeral range (a port
# that an outgoing connection holds cannot be bound, but is not seen here).
free_port() {
	local p lo
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
	for _ in $(seq 200); do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	return 1
}
# wait_port PORT SECONDS [PID]: until PORT accepts; gives up early if PID exits.
wait_port() {
	for _ in $(seq $((${2:-20} * 10))); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		[ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
want() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

# skip_part NAME WHY: record a comparison (or an anchor) that could not run.
skip_part() {
	printf '{"skipped": %s}\n' "$(printf '%s' "$2" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
		>"$P/$1.json"
	log "$1: skipped: $2"
}

# start_hub NAME DATA_URL NAGENTS NVOLS RING: rephubd with volumes
# PREFIX-aI-vJ (PREFIX = NAME) on tmpfs; sets HUB_PID and HUB_CTL. A hub
# that cannot bind its ports (taken since free_port looked) is retried on
# new ones (a tcp:// data URL gets a new port too), three times at most.
start_hub() {
	local try data=$2
	for try in 1 2 3; do
		start_hub1 "$1" "$data" "$3" "$4" "$5" && return 0
		grep -q 'in use' "$W/$1-hub.log" 2>/dev/null || return 1
		case $data in tcp://127.0.0.1:*) data=tcp://127.0.0.1:$(free_port) ;; esac
		log "$1: hub ports taken, retrying ($try)"
	done
	return 1
}
start_hub1() {
	local name=$1 data=$2 na=$3 nv=$4 ring=$5 d port i j
	d=$W/$name
	rm -rf "$d"
	mkdir -p "$d/state"
	port=$(free_port)
	{
		echo "[hub]"
		echo "control = 127.0.0.1:$port"
		echo "data = $data"
		echo "state_dir = $d/state"
		echo "ring_size = $ring"
		echo "log_level = warn"
		[ -z "${RING_DIR:-}" ] || echo "ring_dir = $RING_DIR"
		[ -z "${HUB_POLL_US:-}" ] || echo "poll_us = $HUB_POLL_US"
		for ((i = 0; i < na; i++)); do
			for ((j = 0; j < nv; j++)); do
				printf '\n[volume %s-a%d-v%d]\nrecovery = %s/state/%s-a%d-v%d.img\n' \
					"$name" "$i" "$j" "$d" "$name" "$i" "$j"
			done
		done
	} >"$d/hub.conf"
	spawn "$name-hub" "$BIN/rephubd" --config "$d/hub.conf"
	HUB_PID=$LAST_PID
	HUB_CTL=127.0.0.1:$port
	wait_port "$port" 20 "$HUB_PID" || { tail -20 "$W/$name-hub.log" >&2; stop "$HUB_PID"; return 1; }
}

# repbench NAME OUT ARGS...: repbench against the hub started as NAME.
repbench() {
	local name=$1 out=$2; shift 2
	timeout "${RB_TIMEOUT:-300}" "$BIN/repbench" --hub "$HUB_CTL" --hub-pid "$HUB_PID" \
		--dir "$W/$name" --prefix "$name" --json "$out" "$@" 2>>"$W/$name-repbench.log"
}

# ------------------------------------------------------------ guest (a, b)
if [ -n "$GUEST" ]; then
	# In the soft-RoCE VM: repbench over rdma, the transport alone, perftest.
	# Every result goes to $GUEST (a --share folder).
	W=$(mktemp -d /dev/shm/rf-bench-vm.XXXX)
	P=$GUEST
	RB_TIMEOUT=150 # rxe can stall a QP for good (tests/rxe-vm/README.md)
	ADDR=10.0.2.15
	log "guest $(uname -r), $(nproc) CPUs"
	printf '{"kernel": "%s", "nproc": %d, "loadavg_start": "%s"}\n' "$(uname -r)" "$(nproc)" \
		"$(cut -d' ' -f1-3 /proc/loadavg)" >"$P/vm-env.json"
	run_rdma() {
		start_hub vm "rdma://$ADDR:$(free_port)" 1 1 16M || return 1
		# a: throughput, 64 KiB records, 16 outstanding
		repbench vm "$P/a-ours.json" --vol-size 32M --record-size 64k --qd 16 --threads 4 \
			--seconds "$VM_SECS" --sync-timeout 90 || echo "repbench 64k failed" >>"$P/vm-errors.txt"
		# b: durable-ack latency, 4 KiB, QD1
		repbench vm "$P/b-ours.json" --vol-size 32M --record-size 4k --qd 1 \
			--seconds "$VM_SECS" --sync-timeout 90 || echo "repbench 4k qd1 failed" >>"$P/vm-errors.txt"
		stop "$HUB_PID"
	}
	if want a || want b; then
		run_rdma || echo "rdma hub failed" >>"$P/vm-errors.txt"
	fi
	# b on persistent memory (run.sh --nvdimm): the ring on /dev/dax0.0, so a
	# record is durable once flushed there (docs/DURABILITY.md, rule pmem).
	run_pmem() {
		[ -c /dev/dax0.0 ] || { echo "no /dev/dax0.0: b-pmem not measured" >>"$P/vm-errors.txt"; return 0; }
		mkdir -p "$W/pmem-rings"
		ln -sf /dev/dax0.0 "$W/pmem-rings/vmpm-a0.ring"
		RING_DIR=$W/pmem-rings start_hub vmpm "rdma://$ADDR:$(free_port)" 1 1 16M || return 1
		grep -q "uses rule pmem" "$W/vmpm-hub.log" 2>/dev/null ||
			"$BIN/repctl" --hub "$HUB_CTL" status --json >"$P/b-pmem-status.json" 2>&1 || true
		repbench vmpm "$P/b-pmem.json" --vol-size 32M --record-size 4k --qd 1 \
			--seconds "$VM_SECS" --sync-timeout 90 || echo "repbench 4k qd1 pmem failed" >>"$P/vm-errors.txt"
		"$BIN/repctl" --hub "$HUB_CTL" status --json >"$P/b-pmem-status.json" 2>&1 || true
		stop "$HUB_PID"
	}
	if want b; then
		run_pmem || echo "pmem hub failed" >>"$P/vm-errors.txt"
	fi
	# h: what the guest sees. fio (nbd engine) 4 KiB random writes at QD1
	# through nbdkit + the repagent filter at each acknowledgement level,
	# against the same fio on plain nbdkit (same file system, same boot).
	# One hub, the ring on the NVDIMM (rule pmem), rdma. First nothing
	# busy-polls; then the hub (poll_us, applied by SIGHUP) and the agent
	# (repagent-poll-us) poll for H_POLL_US before sleeping. Last, the lags
	# between the three positions under load: the status sampled while fio
	# writes 64 KiB at QD16 at level async.
	H_POLL_US=${RF_BENCH_POLL_US:-100}
	h_fio() { # h_fio URI OUT
		timeout $((VM_SECS + 60)) fio --output="$2" --output-format=json --ioengine=nbd \
			--uri="$1" --size=32M --offset=0 --time_based --runtime="$VM_SECS" \
			--name=rand4k --rw=randwrite --bs=4k --iodepth=1 >/dev/null
	}
	h_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
	run_levels() {
		local filter=$LIB/nbdkit-repagent-filter.so sock=$W/h.sock psock=$W/h-plain.sock
		local lv poll npid k
		command -v fio >/dev/null && command -v nbdkit >/dev/null ||
			{ echo "no fio or nbdkit in the VM: h not measured" >>"$P/vm-errors.txt"; return 0; }
		[ -c /dev/dax0.0 ] || { echo "no /dev/dax0.0: h not measured" >>"$P/vm-errors.txt"; return 0; }
		truncate -s 32M "$W/h-plain.img" "$W/h-disk.img"
		spawn h-nbdkit-plain nbdkit -f -U "$psock" file "$W/h-plain.img"
		npid=$LAST_PID
		h_sock "$psock" && h_fio "nbd+unix:///?socket=$psock" "$P/h-plain.json" ||
			echo "h: fio on plain nbdkit failed" >>"$P/vm-errors.txt"
		stop "$npid"
		mkdir -p "$W/h-rings"
		ln -sf /dev/dax0.0 "$W/h-rings/h-a0.ring"
		RING_DIR=$W/h-rings start_hub h "rdma://$ADDR:$(free_port)" 1 1 16M || return 1
		for run in async:0 landed:0 durable:0 hubpoll landed:$H_POLL_US durable:$H_POLL_US lags; do
			case $run in
			hubpoll)
				echo "poll_us = $H_POLL_US" >>"$W/h/hub.conf"
				kill -HUP "$HUB_PID"
				sleep 1
				continue
				;;
			lags) lv=async poll=0 ;;
			*) lv=${run%%:*} poll=${run#*:} ;;
			esac
			rm -f "$sock"
			spawn "h-nbdkit-$lv-$poll" nbdkit -f -U "$sock" --filter="$filter" file "$W/h-disk.img" \
				repagent-hub="$HUB_CTL" repagent-volume=h-a0-v0 repagent-agent-id=h-a0 \
				repagent-bitmap="$W/h.bitmap" repagent-ack="$lv" repagent-poll-us="$poll"
			npid=$LAST_PID
			if ! h_sock "$sock" || ! timeout 150 "$BIN/repctl" --hub "$HUB_CTL" wait h-a0-v0 \
				--synced --timeout 140 >>"$W/h-wait.log" 2>&1; then
				echo "h: $lv/$poll: not synced" >>"$P/vm-errors.txt"
				stop "$npid"
				continue
			fi
			if [ "$run" = lags ]; then
				timeout $((VM_SECS + 60)) fio --output="$P/h-lags-fio.json" --output-format=json \
					--ioengine=nbd --uri="nbd+unix:///?socket=$sock" --size=32M --offset=0 \
					--time_based --runtime="$VM_SECS" --name=seq64k --rw=write --bs=64k \
					--iodepth=16 >/dev/null &
				k=$!
				: >"$P/h-lags.jsonl"
				while kill -0 "$k" 2>/dev/null; do
					"$BIN/repctl" --hub "$HUB_CTL" status --json 2>/dev/null |
						jq -c '.agents[0] | {landed_seq, durable_seq, applied_seq, durable_lag_records,
							durable_lag_bytes, durable_lag_ms, apply_lag_records, apply_lag_bytes,
							apply_lag_ms, lag_records, lag_bytes, lag_ms}' >>"$P/h-lags.jsonl" 2>/dev/null || true
					sleep 0.25
				done
				wait "$k" || echo "h: fio under load failed" >>"$P/vm-errors.txt"
			else
				h_fio "nbd+unix:///?socket=$sock" "$P/h-$lv-p$poll.json" ||
					echo "h: fio at $lv/$poll failed" >>"$P/vm-errors.txt"
				"$BIN/repctl" --hub "$HUB_CTL" status --json >"$P/h-$lv-p$poll-status.json" 2>&1 || true
			fi
			stop "$npid"
		done
		stop "$HUB_PID"
	}
	if want h; then
		run_levels || echo "h: hub failed" >>"$P/vm-errors.txt"
	fi
	cp "$W"/vm-*.log "$P"/ 2>/dev/null || true
	# the transport alone (no agent, no hub volume work)
	timeout 120 "$BIN/rf-fabric-bench" --url "rdma://$ADDR:$(free_port)" --dir "$W" \
		--seconds "$VM_SECS" --record-size 65536 --json "$P/a-fabric.json" 2>>"$W/fb.log" ||
		echo "rf-fabric-bench rdma failed" >>"$P/vm-errors.txt"
	timeout 120 "$BIN/rf-fabric-bench" --url "rdma://$ADDR:$(free_port)" --dir "$W" \
		--records 2000 --qd1 --record-size 4096 --json "$P/b-fabric.json" 2>>"$W/fb.log" ||
		echo "rf-fabric-bench rdma qd1 failed" >>"$P/vm-errors.txt"
	# perftest: -x 1 (RoCE v2 GID), timeouts on both sides
	perf_pair() {
		local out=$1 port; shift
		port=$(free_port)
		timeout 60 "$@" -p "$port" >"$out.server" 2>&1 &
		local spid=$!
		sleep 1
		timeout 60 "$@" -p "$port" "$ADDR" >"$out" 2>&1 || echo "$* failed" >>"$P/vm-errors.txt"
		wait "$spid" || true
	}
	perf_pair "$P/a-anchor.txt" ib_write_bw -d rxe0 -x 1 -F -s 65536 -D "$VM_SECS"
	perf_pair "$P/b-anchor.txt" ib_write_lat -d rxe0 -x 1 -F -s 4096 -n 2000
	rdma statistic show link rxe0/1 >"$P/rxe-stats.txt" 2>&1 || true
	cat /proc/loadavg >"$P/vm-loadavg.txt"
	rm -rf "$W"
	W=""
	exit 0
fi

# ------------------------------------------------------------ host
for t in repbench rf-fabric-bench rephubd; do
	[ -x "$BIN/$t" ] || { echo "bench.sh: $BIN/$t is missing: build first" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "bench.sh: python3 is needed (scripts/deps.sh)" >&2; exit 1; }
TS=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$SHORT" = 1 ]; then
	OUTD=${TMPDIR:-/tmp}/rf-bench-short-$TS
	JSON_OUT=${JSON_OUT:-$OUTD/$TS.json}
	MD_OUT=${MD_OUT:-$OUTD/BENCHMARKS.md}
	PLOTS_OUT=${PLOTS_OUT:-$OUTD/bench}
else
	JSON_OUT=${JSON_OUT:-$SRC/bench/results/$TS.json}
	MD_OUT=${MD_OUT:-$SRC/docs/BENCHMARKS.md}
	PLOTS_OUT=${PLOTS_OUT:-$SRC/docs/bench}
fi
mkdir -p "$(dirname "$JSON_OUT")" "$(dirname "$MD_OUT")" "$PLOTS_OUT"
W=$(mktemp -d /dev/shm/rf-bench.XXXX)
P=$W/parts
mkdir -p "$P"
T0=$(date +%s)
# the accelerator tests/rxe-vm/run.sh will pick (the same test)
VM_ACCEL=${RF_VM_ACCEL:-tcg}
if [ -z "${RF_VM_ACCEL:-}" ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	VM_ACCEL=kvm
fi
{
	echo "{"
	echo "\"timestamp\": \"$TS\", \"short\": $([ "$SHORT" = 1 ] && echo true || echo false),"
	echo "\"host\": \"$(hostname)\", \"nproc\": $(nproc),"
	echo "\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/"//g')\","
	echo "\"kernel\": \"$(uname -r)\","
	echo "\"mem_kb\": $(awk '/MemTotal/ {print $2}' /proc/meminfo),"
	echo "\"git\": \"$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)\","
	echo "\"settings\": {\"secs\": $SECS, \"fio_secs\": $FIO_SECS, \"iperf_secs\": $IPERF_SECS," \
		"\"vm_secs\": $VM_SECS, \"rounds\": $ROUNDS, \"sync_vol_mb\": $SYNC_VOL_MB," \
		"\"vol\": \"$VOL\", \"gvol\": \"$GVOL\", \"vm_accel\": \"$VM_ACCEL\"},"
	echo "\"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\""
	echo "}"
} >"$P/env.json"
log "run $TS ($([ "$SHORT" = 1 ] && echo short || echo full)), scratch $W"
for k in a b c d e f g h i j; do want "$k" || skip_part "$k" "not selected (--only $ONLY)"; done

# c: tcp -------------------------------------------------------------------
# c, d, e and g run ROUNDS interleaved rounds (ours, then the anchors; e:
# the anchor first); the report takes the median of the per-round ratios
# and shows their range.
if want c; then
	for r in $(seq "$ROUNDS"); do
		log "c: round $r/$ROUNDS: tcp 64 KiB: repbench, rf-fabric-bench, iperf3"
		if start_hub c "tcp://127.0.0.1:$(free_port)" 1 1 64M; then
			repbench c "$P/c-ours.r$r.json" --vol-size "$VOL" --record-size 64k --qd 16 \
				--threads 4 --seconds "$SECS" || log "c: repbench failed"
			[ "$r" = 1 ] && { repbench c "$P/c-qd1.json" --vol-size "$VOL" --record-size 4k \
				--qd 1 --seconds "$SECS" || log "c: repbench qd1 failed"; }
			stop "$HUB_PID"
		fi
		timeout 120 "$BIN/rf-fabric-bench" --url "tcp://127.0.0.1:$(free_port)" --dir "$W" \
			--seconds "$SECS" --record-size 65536 --json "$P/c-fabric.r$r.json" 2>>"$W/fb.log" ||
			log "c: rf-fabric-bench failed"
		if command -v iperf3 >/dev/null; then
			port=$(free_port)
			rm -f "$W/iperf3-server.log"
			spawn iperf3-server iperf3 -s -1 -p "$port" --forceflush
			ipid=$LAST_PID
			# not wait_port: a probe connection would use up the one-shot server
			for _ in $(seq 100); do
				grep -q 'Server listening' "$W/iperf3-server.log" 2>/dev/null && break
				sleep 0.1
			done
			timeout 60 iperf3 -c 127.0.0.1 -p "$port" -t "$IPERF_SECS" -l 65536 -J \
				>"$P/c-anchor.r$r.json" 2>>"$W/iperf3.log" || log "c: iperf3 failed"
			stop "$ipid"
		else
			skip_part c-anchor "iperf3 is not installed (Debian package iperf3, scripts/deps.sh)"
		fi
	done
fi

# d: shm -------------------------------------------------------------------
if want d; then
	for r in $(seq "$ROUNDS"); do
		log "d: round $r/$ROUNDS: shm 64 KiB: repbench, rf-fabric-bench + memcpy anchor"
		if start_hub d "shm://$W/d-hub.sock" 1 1 64M; then
			repbench d "$P/d-ours.r$r.json" --vol-size "$VOL" --record-size 64k --qd 16 \
				--threads 4 --seconds "$SECS" || log "d: repbench failed"
			[ "$r" = 1 ] && { repbench d "$P/d-qd1.json" --vol-size "$VOL" --record-size 4k \
				--qd 1 --seconds "$SECS" || log "d: repbench qd1 failed"; }
			stop "$HUB_PID"
		fi
		timeout 120 "$BIN/rf-fabric-bench" --url "shm://$W/fb.sock" --dir "$W" \
			--seconds "$SECS" --record-size 65536 --memcpy-anchor \
			--json "$P/d-fabric.r$r.json" 2>>"$W/fb.log" || log "d: rf-fabric-bench failed"
	done
fi

# e: fio through nbdkit ----------------------------------------------------
if want e; then
	filter=$LIB/nbdkit-repagent-filter.so
	if ! command -v nbdkit >/dev/null || ! command -v fio >/dev/null; then
		skip_part e "nbdkit or fio is not installed"
	elif [ ! -f "$filter" ]; then
		skip_part e "$filter is not built"
	else
		# Both servers run side by side (each on its own image); the fio
		# jobs alternate, plain then through the filter, ROUNDS times.
		log "e: fio nbd engine: plain nbdkit file vs nbdkit + repagent filter + hub"
		pdisk=$W/e-plain.img
		disk=$W/e-disk.img
		truncate -s "$VOL" "$pdisk" "$disk"
		fio_jobs() { # fio_jobs URI OUT
			timeout $((2 * FIO_SECS + 60)) fio --output="$2" --output-format=json --ioengine=nbd --uri="$1" \
				--size="$VOL" --offset=0 --time_based --runtime="$FIO_SECS" \
				--name=rand4k --rw=randwrite --bs=4k --iodepth=1 \
				--name=seq1m --stonewall --rw=write --bs=1M --iodepth=16 >/dev/null
		}
		psock=$W/e-plain.sock
		spawn e-nbdkit-plain nbdkit -f -U "$psock" file "$pdisk"
		ppid_=$LAST_PID
		for _ in $(seq 100); do [ -S "$psock" ] && break; sleep 0.1; done
		if start_hub e "tcp://127.0.0.1:$(free_port)" 1 1 64M; then
			sock=$W/e-rep.sock
			spawn e-nbdkit-rep nbdkit -f -U "$sock" --filter="$filter" file "$disk" \
				repagent-hub="$HUB_CTL" repagent-volume=e-a0-v0 \
				repagent-bitmap="$W/e/e-a0-v0.bitmap"
			npid=$LAST_PID
			for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
			# let the initial sync finish before measuring
			if timeout 120 "$BIN/repctl" --hub "$HUB_CTL" wait e-a0-v0 --synced --timeout 100 \
				>"$W/e-wait.log" 2>&1; then
				for r in $(seq "$ROUNDS"); do
					log "e: round $r/$ROUNDS: fio plain, then through the filter"
					fio_jobs "nbd+unix:///?socket=$psock" "$P/e-anchor.r$r.json" || log "e: fio plain failed"
					hcpu0=$(awk '{print $14 + $15}' "/proc/$HUB_PID/stat")
					fio_jobs "nbd+unix:///?socket=$sock" "$P/e-ours.r$r.json" || log "e: fio via filter failed"
					hcpu1=$(awk '{print $14 + $15}' "/proc/$HUB_PID/stat")
					echo "{\"hub_cpu_ticks\": $((hcpu1 - hcpu0)), \"clk_tck\": $(getconf CLK_TCK)," \
						"\"hub_rss_kb\": $(awk '/VmHWM/ {print $2}' "/proc/$HUB_PID/status")}" >"$P/e-hub.r$r.json"
				done
			else
				# measuring while the initial sync still runs would compare the wrong thing
				log "e: volume not synced (see $W/e-wait.log): failed"
				printf '{"error": %s}\n' "$(printf 'the volume behind the filter was not synced within 100 s: %s' \
					"$(tail -1 "$W/e-wait.log")" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
					>"$P/e-ours.json"
			fi
			stop "$npid"
			stop "$HUB_PID"
		fi
		stop "$ppid_"
	fi
fi

# f: initial sync of a volume ----------------------------------------------
if want f; then
	log "f: initial sync of ${SYNC_VOL_MB} MiB: repbench --sync-only, fio seq read, transport bw"
	img=$W/f-src.img
	# random data: a sync of zeroes could be optimised away
	head -c "$((SYNC_VOL_MB << 20))" /dev/urandom >"$img"
	if command -v fio >/dev/null; then
		timeout 120 fio --output="$P/f-anchor-read.json" --output-format=json --name=seqread \
			--filename="$img" --rw=read --bs=1M --iodepth=1 --ioengine=psync \
			--size="${SYNC_VOL_MB}M" >/dev/null || log "f: fio read failed"
	fi
	if start_hub f "tcp://127.0.0.1:$(free_port)" 1 1 64M; then
		repbench f "$P/f-ours.json" --disk "$img" --sync-only --sync-timeout 280 ||
			log "f: repbench --sync-only failed"
		stop "$HUB_PID"
	fi
	timeout 120 "$BIN/rf-fabric-bench" --url "tcp://127.0.0.1:$(free_port)" --dir "$W" \
		--seconds "$SECS" --ring-size 64M --record-size 1M --json "$P/f-anchor-fabric.json" \
		2>>"$W/fb.log" || log "f: rf-fabric-bench failed"
	rm -f "$img"
fi

# j: QEMU's block mirror ---------------------------------------------------
# qemu-storage-daemon holds the same kind of image as f (random data, tmpfs)
# as node src, exported writable over NBD (the guest's view), and mirrors it
# with blockdev-mirror sync=full to `nbdkit file` on a unix socket (the
# replica). Default mirror settings (buf-size, granularity, no speed
# limit): the hand measurement of #16 used them too. bench/qmp_mirror.py
# times start -> BLOCK_JOB_READY (the initial copy) and runs the e fio jobs
# against the export while the job mirrors.
if want j; then
	if ! command -v qemu-storage-daemon >/dev/null || ! command -v nbdkit >/dev/null ||
		! command -v fio >/dev/null; then
		skip_part j "qemu-storage-daemon, nbdkit or fio is not installed (qemu-system-x86, nbdkit, fio)"
	else
		src=$W/j-src.img
		head -c "$((SYNC_VOL_MB << 20))" /dev/urandom >"$src"
		for mode in background write-blocking; do
			log "j: QEMU mirror ($mode) of ${SYNC_VOL_MB} MiB to nbdkit, then fio through its export"
			rm -f "$W/j-tgt.img" "$W"/j-*.sock
			truncate -s "${SYNC_VOL_MB}M" "$W/j-tgt.img"
			spawn j-nbdkit-$mode nbdkit -f -U "$W/j-tgt.sock" file "$W/j-tgt.img"
			jn=$LAST_PID
			for _ in $(seq 100); do [ -S "$W/j-tgt.sock" ] && break; sleep 0.1; done
			spawn j-qsd-$mode qemu-storage-daemon \
				--blockdev "file,filename=$src,node-name=src-file,cache.direct=off" \
				--blockdev raw,file=src-file,node-name=src \
				--blockdev "nbd,server.type=unix,server.path=$W/j-tgt.sock,node-name=tgt" \
				--nbd-server "addr.type=unix,addr.path=$W/j-exp.sock" \
				--export nbd,id=exp0,node-name=src,writable=on,name= \
				--chardev "socket,path=$W/j-qmp.sock,server=on,wait=off,id=qmp0" \
				--monitor chardev=qmp0
			jq_=$LAST_PID
			for _ in $(seq 100); do [ -S "$W/j-qmp.sock" ] && [ -S "$W/j-exp.sock" ] && break; sleep 0.1; done
			timeout $((FIO_SECS * 4 + 400)) python3 "$SRC/bench/qmp_mirror.py" --qmp "$W/j-qmp.sock" \
				--mode "$mode" --json "$P/j-$mode.json" --uri "nbd+unix:///?socket=$W/j-exp.sock" \
				--fio-secs "$FIO_SECS" --size "$VOL" --timeout 300 ||
				log "j: $mode failed: $(cat "$P/j-$mode.json" 2>/dev/null)"
			stop "$jq_"
			stop "$jn"
		done
		rm -f "$src" "$W/j-tgt.img"
	fi
fi

# g: scaling ---------------------------------------------------------------
if want g; then
	for r in $(seq "$ROUNDS"); do
		for n in 1 2 4 8; do
			log "g: round $r/$ROUNDS: $n agent(s) on one hub (tcp, 64 KiB, qd 4 per agent)"
			if start_hub "g$n" "tcp://127.0.0.1:$(free_port)" "$n" 1 16M; then
				repbench "g$n" "$P/g-$n.r$r.json" --agents "$n" --vol-size "$GVOL" \
					--record-size 64k --qd 4 --threads 1 --seconds "$SECS" ||
					log "g: $n agents failed"
				stop "$HUB_PID"
			fi
		done
	done
	# agent memory per volume: 1 agent with 8 volumes (against g-1)
	if start_hub gv "tcp://127.0.0.1:$(free_port)" 1 8 16M; then
		repbench gv "$P/g-vols8.json" --volumes 8 --vol-size "$GVOL" --record-size 64k --qd 4 \
			--threads 1 --seconds "$SECS" || log "g: 8 volumes failed"
		stop "$HUB_PID"
	fi
fi

# a, b: the soft-RoCE VM, one boot -----------------------------------------
if want a || want b || want h; then
	if [ "$VM" = 0 ]; then
		skip_part a "no VM in this run (--short or --no-vm)"
		skip_part b "no VM in this run (--short or --no-vm)"
		skip_part h "no VM in this run (--short or --no-vm)"
	elif ! command -v qemu-system-x86_64 >/dev/null; then
		skip_part a "qemu-system-x86_64 is not installed"
		skip_part b "qemu-system-x86_64 is not installed"
		skip_part h "qemu-system-x86_64 is not installed"
	else
		log "a, b: soft-RoCE VM (one boot): repbench, rf-fabric-bench, ib_write_bw, ib_write_lat"
		vmout=$(mktemp -d "${TMPDIR:-/tmp}/rf-bench-vm.XXXX")
		vrc=0
		RF_BUILD_DIR=$BUILD "$SRC/tests/rxe-vm/run.sh" --timeout 600 --mem 2048 --share "$vmout" \
			--nvdimm "$W/nvdimm.img" \
			-- bash "$SRC/scripts/bench.sh" --build "$BUILD" --only "$ONLY" \
			$([ "$SHORT" = 1 ] && echo --short) --guest "$vmout" >"$W/vm.log" 2>&1 || vrc=$?
		echo "{\"exit\": $vrc}" >"$P/vm-exit.json"
		[ "$vrc" = 0 ] || log "a, b: the VM run exited $vrc (log: $W/vm.log)"
		cp -r "$vmout"/. "$P"/ 2>/dev/null || true
		rm -rf "$vmout"
	fi
fi

# i: peers across two guests on one wire ------------------------------------
if want i; then
	if [ "$VM" = 0 ]; then
		skip_part i "no VM in this run (--short or --no-vm)"
	elif ! command -v qemu-system-x86_64 >/dev/null || ! command -v drbdadm >/dev/null; then
		skip_part i "qemu-system-x86_64 or drbdadm is not installed (scripts/deps.sh)"
	else
		I_MB=${RF_BENCH_PEER_MB:-$([ "$SHORT" = 1 ] && echo 64 || echo 256)}
		I_SECS=${RF_BENCH_PEER_SECS:-$([ "$SHORT" = 1 ] && echo 2 || echo 10)}
		log "i: DRBD vs repfabric across two guests (${I_MB} MiB volume, ${I_SECS} s per fio job)"
		iout=$(mktemp -d "${TMPDIR:-/tmp}/rf-bench-pair.XXXX")
		# the guests' disks: files on the host's tmpfs; b's holds random data
		# (neither sync may skip zeroes)
		truncate -s "${I_MB}M" "$W/i-a.img"
		head -c "$((I_MB << 20))" /dev/urandom >"$W/i-b.img"
		irc=0
		"$SRC/tests/rxe-vm/run2.sh" --timeout 1500 --mem 1024 --share "$iout" \
			--drive-a "$W/i-a.img" --drive-b "$W/i-b.img" \
			-- bash "$SRC/bench/peers.sh" "$iout" "$I_SECS" "$I_MB" "$BUILD" >"$W/pair.log" 2>&1 || irc=$?
		echo "{\"exit\": $irc}" >"$P/i-exit.json"
		[ "$irc" = 0 ] || log "i: the pair exited $irc (log: $W/pair.log)"
		cp -r "$iout"/. "$P"/ 2>/dev/null || true
		cp "$W/pair.log" "$P/i-pair.log" 2>/dev/null || true
		rm -rf "$iout" "$W/i-a.img" "$W/i-b.img"
	fi
fi

T1=$(date +%s)
echo "{\"seconds\": $((T1 - T0)), \"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" \
	>"$P/end.json"
log "all comparisons done in $((T1 - T0)) s; writing $JSON_OUT and $MD_OUT"
python3 "$SRC/bench/report.py" --parts "$P" --json "$JSON_OUT" --md "$MD_OUT" \
	--plots "$PLOTS_OUT" --profile "$SRC/bench/profile.md" --src "$SRC"
log "done: $JSON_OUT, $MD_OUT, plots in $PLOTS_OUT"
