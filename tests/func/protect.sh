#!/usr/bin/env bash
# Protect flow end to end: rephubd + nbdkit with the repagent filter over a
# non-empty disk; qemu-io and fio (nbd engine: several jobs, random
# overlapping writes of mixed sizes, trims) write while the initial sync
# runs, and hostile control clients (bad magic, wrong version, oversized
# frame, unknown volume) hit the same hub; after `repctl wait --synced` the
# recovery image must be byte-identical to the disk.
#
# Usage: protect.sh tcp|shm|rdma   (rdma boots the soft-RoCE VM and runs the
# whole scenario inside it, over rdma://10.0.2.15)
. "$(dirname "$0")/lib.sh"

transport=${1:?usage: protect.sh tcp|shm|rdma}
if [ "$transport" = rdma ] && [ "${2:-}" != --guest ]; then
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		rf_skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	rc=0
	"$RF_SOURCE_DIR/tests/rxe-vm/run.sh" --timeout 900 --mem 2048 -- bash "$0" rdma --guest || rc=$?
	case $rc in
	0) rf_log "PASS: protect flow over rdma_rxe in the VM" ;;
	124) rf_fail "the VM timed out" ;;
	125) rf_fail "the VM failed to boot or the harness failed (see above)" ;;
	*) rf_fail "the protect flow failed inside the VM (exit $rc)" ;;
	esac
	exit 0
fi
rf_require nbdkit qemu-io fio
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$filter" ] || rf_fail "$filter not built"

size_mb=${RF_PROTECT_SIZE_MB:-64}
ctl_port=$(rf_free_port)
case $transport in
tcp) data="tcp://127.0.0.1:$(rf_free_port)" ;;
shm) data="shm://$RF_TMP/hub.data" ;;
rdma) data="rdma://${RF_RDMA_ADDR:-10.0.2.15}:$(rf_free_port)" ;;
*) rf_fail "unknown transport $transport" ;;
esac
# Rings that are RDMA memory regions belong on tmpfs/hugetlbfs/devdax
# (docs/CONFIG.md, ring_dir); the VM is thrown away afterwards.
ring_dir=""
[ "$transport" = rdma ] && ring_dir="ring_dir = /dev/shm/rf-protect-rings"

disk=$RF_TMP/disk.img
recovery=$RF_TMP/state/vm1-disk0.img
sock=$RF_TMP/nbd.sock
mkdir -p "$RF_TMP/state"
cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = 127.0.0.1:$ctl_port
data = $data
state_dir = $RF_TMP/state
$ring_dir
ring_size = 32M

[volume vm1-disk0]
recovery = $recovery
CONF

rf_log "disk: $size_mb MiB of random data; transport $data"
head -c "$((size_mb << 20))" /dev/urandom >"$disk"

rf_spawn hub "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 20

rf_spawn nbdkit nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
	repagent-hub="127.0.0.1:$ctl_port" repagent-volume=vm1-disk0 \
	repagent-bitmap="$RF_TMP/vm1-disk0.bitmap"
nbd_pid=$RF_LAST_PID
rf_wait_for 20 "nbdkit socket" test -S "$sock"
uri="nbd+unix:///?socket=$sock"

start_ns=$(date +%s%N)
rf_log "writing with qemu-io and fio while the initial sync runs"
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 512k 4k' \
	-c 'write -z 8M 1M' -c 'discard 16M 1M' "$uri" >"$RF_TMP/qemu-io.log"
fio --output="$RF_TMP/fio.json" --output-format=json --ioengine=nbd --uri="$uri" \
	--size="${size_mb}M" --offset=0 --time_based --runtime="${RF_PROTECT_FIO_SECONDS:-8}" \
	--group_reporting \
	--name=mixed --rw=randwrite --bsrange=512-256k --numjobs=3 --iodepth=8 \
	--name=small --rw=randwrite --bs=4k --iodepth=16 \
	--name=trim --rw=randtrim --bsrange=4k-64k --iodepth=2 >/dev/null
rf_alive "$hub_pid"
rf_alive "$nbd_pid"
# While this agent replicates, hostile clients hit the same hub: each gets
# its error and is closed, and the protection below must not notice.
poke=$RF_BIN/rf-ctl-poke
"$poke" "127.0.0.1:$ctl_port" raw 0x12345678 1 9 0 0 0 expect ERROR EPROTO expect-close
"$poke" "127.0.0.1:$ctl_port" raw 0x54434652 2 2 0 0 0 expect ERROR EPROTONOSUPPORT expect-close
"$poke" "127.0.0.1:$ctl_port" raw 0x54434652 1 9 0x200000 0 0 expect ERROR EPROTO expect-close
"$poke" "127.0.0.1:$ctl_port" hello intruder expect HELLO_OK \
	report no-such-volume 1 1048576 expect ERROR ENOENT
rf_log "malformed frame, wrong version, oversized length, unknown volume: each refused"
written=$(grep -o '"io_bytes" : [0-9]*' "$RF_TMP/fio.json" | awk '{s += $3} END {print s + 0}')
rf_log "fio done: $written bytes of IO"

"$RF_BIN/repctl" --hub "127.0.0.1:$ctl_port" wait vm1-disk0 --synced \
	--timeout "${RF_PROTECT_WAIT:-180}"
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
"$RF_BIN/repctl" --hub "127.0.0.1:$ctl_port" status

a=$(sha256sum <"$disk" | cut -d' ' -f1)
b=$(sha256sum <"$recovery" | cut -d' ' -f1)
rf_log "disk     sha256 $a"
rf_log "recovery sha256 $b"
cmp "$disk" "$recovery" || rf_fail "recovery image differs from the disk"
rf_log "PASS: recovery image is byte-identical after ${elapsed_ms} ms ($transport)"
