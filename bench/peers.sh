#!/usr/bin/env bash
# Part i of scripts/bench.sh (#16): DRBD 8.4 and repfabric side by side
# across two guests on one wire (tests/rxe-vm/run2.sh), in the same boots.
# Run by run2.sh in both guests; the role (a|b) is the last argument:
#
#   bench/peers.sh OUTDIR SECS VOL_MB BUILD a|b
#
# Host a (192.168.77.1) is the secondary / recovery host: DRBD secondary,
# rephubd (rdma://192.168.77.1, ring and recovery image on a's tmpfs).
# Host b (192.168.77.2) is the protected host: its virtio disk /dev/vda (a
# tmpfs file on the host) is DRBD's backing disk; repfabric's disk is a copy
# of it on b's tmpfs behind nbdkit + repagent (nbdkit's file plugin on the
# virtio disk itself crawled in this guest, see below). b writes with fio; every result is a JSON file
# in OUTDIR (a --share folder):
#
#   i-raw.json        fio libaio direct on /dev/vda, before DRBD is up
#   i-drbd-sync.json  DRBD's initial full sync of VOL_MB (seconds)
#   i-drbd-C.json, i-drbd-A.json   fio on /dev/drbd0, protocol C, then A
#   i-plain.json      fio (nbd engine) through plain `nbdkit file /dev/vda`
#   i-rf-sync.json    repfabric's initial sync of the same VOL_MB (seconds)
#   i-rf-async.json, i-rf-durable.json   fio through nbdkit + repagent
#   i-env.json        kernel, DRBD version, settings
#
# fio: 4 KiB randwrite QD1 (IOPS, p50/p99) then 1 MiB write QD16 (MB/s),
# SECS each, direct. Settings and why they are fair: docs/BENCHMARKS.md
# ("Peers").
set -uo pipefail
OUT=$1 SECS=$2 VOL_MB=$3 BUILD=$4 ROLE=$5
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$BUILD/bin
LIB=$BUILD/lib
export PATH=$PATH:/usr/sbin:/sbin
. "$SRC/tests/rxe-vm/pair.sh"
A=192.168.77.1 B=192.168.77.2
log() { echo "[peers $ROLE $(date +%H:%M:%S)] $*" >&2; }
err() {
	log "ERROR: $*"
	echo "$ROLE: $*" >>"$OUT/i-errors.txt"
}
w() { pair_wait "$1" "${2:-300}" || { err "no '$1' from the other host"; exit 1; }; }

# fio_pair TARGET-ARGS... > JSON: 4 KiB randwrite QD1, then 1 MiB write QD16
fio_pair() {
	local out=$1
	shift
	timeout $((4 * SECS + 120)) fio --output="$out" --output-format=json "$@" \
		--size="$((VOL_MB - 16))M" --offset=0 --time_based --runtime="$SECS" --direct=1 \
		--name=rand4k --rw=randwrite --bs=4k --iodepth=1 \
		--name=seq1m --stonewall --rw=write --bs=1M --iodepth=16 >/dev/null
}
drbd_conf() { # drbd_conf PROTOCOL
	mkdir -p /etc/drbd-bench /run/lock
	cat >/etc/drbd-bench/r0.conf <<EOF
resource r0 {
	protocol $1;
	net { max-buffers 8000; max-epoch-size 8000; sndbuf-size 0; }
	disk { c-plan-ahead 0; resync-rate 1000M; al-extents 6007; }
	on a { device /dev/drbd0; disk /dev/vda; address $A:7789; meta-disk internal; }
	on b { device /dev/drbd0; disk /dev/vda; address $B:7789; meta-disk internal; }
}
EOF
}
drbdadm() { command drbdadm -c /etc/drbd-bench/r0.conf "$@"; }
hostname "$ROLE"
mods=$(ls -d "$SRC"/tests/rxe-vm/cache/kernel-"$(uname -r)"/root 2>/dev/null | head -1)
[ -n "${RF_VM_CACHE:-}" ] && mods=$RF_VM_CACHE/kernel-$(uname -r)/root
modprobe -d "$mods" drbd 2>>"$OUT/i-errors.txt" || err "cannot load the drbd module from $mods"
command -v drbdadm >/dev/null || err "drbdadm not found (Debian package drbd-utils, scripts/deps.sh)"

if [ "$ROLE" = b ]; then
	w a-ready 120
	log "raw disk"
	fio_pair "$OUT/i-raw.json" --ioengine=libaio --filename=/dev/vda || err "fio on the raw disk failed"
	# DRBD protocol C: initial full sync, then fio (RF_PEERS_SKIP_DRBD=1: not)
	[ "${RF_PEERS_SKIP_DRBD:-0}" = 1 ] || {
	drbd_conf C
	drbdadm create-md --force r0 </dev/null >/dev/null 2>&1 || err "create-md failed"
	drbdadm up r0 || err "drbdadm up failed"
	pair_mark b-drbd-up
	w a-drbd-up
	for _ in $(seq 300); do grep -q 'cs:Connected' /proc/drbd && break; sleep 0.1; done
	t0=$(date +%s.%N)
	drbdadm primary --force r0 || err "primary --force failed"
	for _ in $(seq 6000); do
		grep -q 'ds:UpToDate/UpToDate' /proc/drbd && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	grep -q 'ds:UpToDate/UpToDate' /proc/drbd || err "DRBD did not sync within 600 s"
	echo "{\"seconds\": $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'), \"mb\": $VOL_MB}" >"$OUT/i-drbd-sync.json"
	cat /proc/drbd >"$OUT/i-drbd-proc.txt"
	log "DRBD sync: $(cat "$OUT/i-drbd-sync.json")"
	fio_pair "$OUT/i-drbd-C.json" --ioengine=libaio --filename=/dev/drbd0 || err "fio on DRBD C failed"
	drbd_conf A
	pair_mark b-proto-A
	w a-proto-A
	drbdadm adjust r0 || err "adjust to protocol A failed"
	sleep 2
	drbdsetup show r0 | grep -q 'protocol.*A' || command drbdsetup show r0 >>"$OUT/i-errors.txt" 2>&1
	fio_pair "$OUT/i-drbd-A.json" --ioengine=libaio --filename=/dev/drbd0 || err "fio on DRBD A failed"
	drbdadm down r0 || err "drbdadm down failed"
	}
	pair_mark b-drbd-down
	# repfabric: plain nbdkit, then the filter at async and durable
	w a-hub-up
	sock=/run/peers.sock
	# nbdkit's file plugin on the virtio disk itself crawled here (1 MiB QD16
	# at 17 MB/s without any filter, and a 64 MiB sync through the filter
	# not done after 240 s), so repfabric's disk is a copy of it on the
	# guest's tmpfs, and its own anchor is plain nbdkit on that same file.
	disk=/dev/shm/peer.img
	dd if=/dev/vda of=$disk bs=1M status=none || err "cannot copy /dev/vda to $disk"
	nbdkit -f -U "$sock" file $disk >/tmp/nbd-plain.log 2>&1 &
	npid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	fio_pair "$OUT/i-plain.json" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" ||
		err "fio on plain nbdkit failed"
	kill "$npid"
	wait "$npid"
	ulimit -l unlimited
	for lv in async durable; do
		rm -f "$sock"
		nbdkit -f -U "$sock" --filter="$LIB/nbdkit-repagent-filter.so" file $disk \
			repagent-hub=$A:7470 repagent-volume=peer repagent-agent-id=b \
			repagent-bitmap=/run/peer.bitmap repagent-ack=$lv >/tmp/nbd-$lv.log 2>&1 &
		npid=$!
		t0=$(date +%s.%N)
		for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
		if ! timeout 300 "$BIN/repctl" --hub $A:7470 wait peer --synced --timeout 240 >/tmp/wait-$lv.log 2>&1; then
			err "repfabric not synced ($lv): $(tail -1 /tmp/wait-$lv.log)"
			cp /tmp/nbd-$lv.log "$OUT/i-nbd-$lv.log"
			"$BIN/repctl" --hub $A:7470 status >>"$OUT/i-nbd-$lv.log" 2>&1
			kill "$npid"
			wait "$npid"
			continue
		fi
		t1=$(date +%s.%N)
		[ "$lv" = async ] && echo "{\"seconds\": $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'), \"mb\": $VOL_MB}" >"$OUT/i-rf-sync.json"
		fio_pair "$OUT/i-rf-$lv.json" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" ||
			err "fio through repagent ($lv) failed"
		"$BIN/repctl" --hub $A:7470 status --json >"$OUT/i-rf-$lv-status.json" 2>/dev/null
		kill "$npid"
		wait "$npid"
	done
	log "repfabric sync: $(cat "$OUT/i-rf-sync.json" 2>/dev/null)"
	printf '{"kernel": "%s", "drbd": "%s", "secs": %s, "vol_mb": %s, "loadavg": "%s"}\n' \
		"$(uname -r)" "$(head -1 /proc/drbd 2>/dev/null | sed 's/"//g')" "$SECS" "$VOL_MB" \
		"$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/i-env.json"
	pair_mark b-done
	exit 0
fi

# ---- host a
pair_mark a-ready
[ "${RF_PEERS_SKIP_DRBD:-0}" = 1 ] || {
w b-drbd-up
drbd_conf C
drbdadm create-md --force r0 </dev/null >/dev/null 2>&1 || err "create-md failed"
drbdadm up r0 || err "drbdadm up failed"
pair_mark a-drbd-up
w b-proto-A 900
drbd_conf A
drbdadm adjust r0 || err "adjust to protocol A failed"
pair_mark a-proto-A
w b-drbd-down 900
sleep 1
drbdadm down r0 || err "drbdadm down failed"
}
w b-drbd-down 900
# the hub: ring and recovery image on the guest's tmpfs (as b's disk)
mkdir -p /dev/shm/rings /dev/shm/srv/state
cat >/tmp/hub.conf <<EOF
[hub]
control = $A:7470
data = rdma://$A:7471
state_dir = /dev/shm/srv/state
ring_dir = /dev/shm/rings
ring_size = 64M
log_level = warn

[volume peer]
recovery = /dev/shm/srv/peer.img
agent = b
EOF
ulimit -l unlimited
"$BIN/rephubd" --config /tmp/hub.conf >/tmp/hub.log 2>&1 &
hpid=$!
for _ in $(seq 200); do (exec 3<>/dev/tcp/$A/7470) 2>/dev/null && break; sleep 0.1; done
pair_mark a-hub-up
w b-done 1200
kill "$hpid"
wait "$hpid"
cp /tmp/hub.log "$OUT/i-hub.log"
exit 0
