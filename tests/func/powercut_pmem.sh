#!/usr/bin/env bash
# Power cut with the ring on persistent memory (issue #14, docs/DURABILITY.md).
# In the soft-RoCE VM with an emulated NVDIMM (tests/rxe-vm/run.sh --nvdimm)
# made a devdax device, the hub's ring lives on /dev/dax0.0 (rule pmem:
# durable once validated and flushed in the ring), the agent (nbdkit + the
# repagent filter, repagent-ack=durable) writes over rdma://, and qemu-io
# prints each write as it completes. The host then kills qemu outright (the
# power cut: no shutdown), boots the VM again on the same NVDIMM file, and
# the hub alone replays its ring into the recovery image. Every write that
# completed before the cut must be in the image. The recovery image is a
# virtio disk (a host file) behind device-mapper's delay target (20 ms per
# write), so the hub's apply lags the acknowledgements and the ring holds
# durable records that were never applied when the power goes: the replay
# after the cut is what puts them in the image.
#
# The guest side is this same script with "guest run" or "guest replay".
. "$(dirname "$0")/lib.sh"

level=${RF_ACK_LEVEL:-durable}

# spawn_to LOG CMD...: like rf_spawn, output to LOG (on the shared folder, so
# the host can read it even after the power cut).
spawn_to() {
	local log=$1; shift
	"$@" >"$log" 2>&1 &
	RF_LAST_PID=$!
	RF_PIDS+=("$RF_LAST_PID")
}

guest_setup() {
	mkdir -p /run/rings
	ln -sf /dev/dax0.0 /run/rings/vm1.ring
	# The recovery image: /dev/vda (the host's recovery.raw), writes delayed.
	dmsetup create slow --noudevsync \
		--table "0 $(blockdev --getsz /dev/vda) delay /dev/vda 0 0 /dev/vda 0 20" ||
		rf_fail "dmsetup could not make the slow disk"
	dmsetup mknodes slow # no udev in the VM: make /dev/mapper/slow ourselves
	test -b /dev/mapper/slow || rf_fail "no /dev/mapper/slow after dmsetup mknodes"
	cat >/run/hub.conf <<CONF
[hub]
control = 127.0.0.1:7470
data = rdma://10.0.2.15:7471
state_dir = $SHARE/state
ring_dir = /run/rings
ring_size = 64M
durability = auto

[volume vm1-disk0]
recovery = /dev/mapper/slow
agent = vm1
CONF
	spawn_to "$SHARE/$1-hub.log" "$RF_BIN/rephubd" --config /run/hub.conf
	hub_pid=$RF_LAST_PID
	rf_wait_port 7470 60
}

if [ "${1:-}" = guest ]; then
	SHARE=$2 # the host's scratch folder, shared read-write (RF_TMP is the guest's own)
	case $3 in
	run)
		guest_setup run
		head -c $((32 << 20)) /dev/urandom >/dev/shm/disk.img
		spawn_to "$SHARE/run-nbdkit.log" nbdkit -f -v -U /run/nbd.sock \
			--filter="$RF_LIB/nbdkit-repagent-filter.so" file /dev/shm/disk.img \
			repagent-hub=127.0.0.1:7470 repagent-volume=vm1-disk0 \
			repagent-bitmap=/run/vm1.bitmap repagent-agent-id=vm1 \
			repagent-ack="$level" repagent-ack-timeout=60000
		rf_wait_for 60 "nbdkit socket" test -S /run/nbd.sock
		"$RF_BIN/repctl" --hub 127.0.0.1:7470 wait vm1-disk0 --synced --timeout 240 ||
			rf_fail "initial sync"
		echo synced >"$SHARE/guest-synced"
		# Asynchronous writes, many in flight: records land faster than the
		# hub applies them, so the ring holds durable records at the cut.
		args=()
		for ((i = 0; i < 4000; i++)); do
			args+=(-c "aio_write -P $((i % 250 + 1)) $((i * 4096)) 4k")
		done
		args+=(-c aio_flush)
		stdbuf -oL qemu-io -f raw "${args[@]}" 'nbd+unix:///?socket=/run/nbd.sock' \
			>"$SHARE/writer.log" 2>&1
		sleep 600 # the host cuts the power before this ends
		;;
	replay)
		guest_setup replay
		# The hub replayed the ring before listening; stop it cleanly.
		kill -TERM "$hub_pid"
		wait "$hub_pid" || rf_fail "the hub did not stop cleanly after the replay"
		;;
	esac
	exit 0
fi

vm=$RF_SOURCE_DIR/tests/rxe-vm/run.sh
nv=$RF_TMP/nvdimm.img
mkdir -p "$RF_TMP/state"
truncate -s 32M "$RF_TMP/recovery.raw"
export RF_BIN RF_LIB RF_ACK_LEVEL=$level

rf_log "boot 1: hub with its ring on /dev/dax0.0, agent writing at level $level"
rf_spawn vm1 "$vm" --timeout 600 --nvdimm "$nv" --pidfile "$RF_TMP/qemu.pid" --share "$RF_TMP" \
	--drive "$RF_TMP/recovery.raw" \
	-- bash "$0" guest "$RF_TMP" run
vm_pid=$RF_LAST_PID
rf_wait_for 400 "the guest's initial sync" test -f "$RF_TMP/guest-synced"
rf_wait_for 120 "500 writes to complete in the guest" \
	bash -c "[ \$(grep -c '^wrote' '$RF_TMP/writer.log' 2>/dev/null) -ge 500 ]"
kill -KILL "$(cat "$RF_TMP/qemu.pid")"
completed=$(grep -c '^wrote' "$RF_TMP/writer.log")
wait "$vm_pid" 2>/dev/null || true
grep -q "rule pmem" "$RF_TMP/run-hub.log" || rf_fail "the ring did not use rule pmem (see run-hub.log)"
rf_log "power cut after $completed completed writes"

rf_log "boot 2: the same NVDIMM; the hub replays its ring"
"$vm" --timeout 300 --nvdimm "$nv" --share "$RF_TMP" --drive "$RF_TMP/recovery.raw" \
	-- bash "$0" guest "$RF_TMP" replay \
	>"$RF_TMP/vm2.log" 2>&1 || { tail -n 40 "$RF_TMP/vm2.log"; rf_fail "the replay boot failed"; }
replayed=$(sed -n 's/.* \([0-9]*\) record(s) applied from its ring at start-up/\1/p' "$RF_TMP/replay-hub.log")
rf_log "the hub replayed ${replayed:-no} record(s) from its ring after the cut"
[ "${replayed:-0}" -gt 0 ] || rf_fail "nothing was left to replay: the test did not cut the power under load"
grep -q "acknowledged durable but are not valid" "$RF_TMP/replay-hub.log" &&
	rf_fail "the hub found acknowledged records lost in its ring"
# Each completed write printed its offset: slot = offset / 4096.
python3 - "$RF_TMP/recovery.raw" "$RF_TMP/writer.log" <<'PY' || rf_fail "a write completed at level $level is missing after the power cut"
import re, sys
img = open(sys.argv[1], "rb")
done = [int(m.group(1)) // 4096 for m in re.finditer(r"^wrote 4096/4096 bytes at offset (\d+)", open(sys.argv[2]).read(), re.M)]
missing = [i for i in done if (img.seek(i * 4096), img.read(4096))[1] != bytes([i % 250 + 1]) * 4096]
if missing:
    print(f"{len(missing)} of {len(done)} completed writes missing, first slots {missing[:10]}")
    sys.exit(1)
print(f"all {len(done)} completed writes are in the recovery image")
PY
rf_log "PASS: power cut with the ring on pmem: nothing completed at level $level was lost"
