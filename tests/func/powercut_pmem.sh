#!/usr/bin/env bash
# Power cut with the ring on persistent memory (issue #14, docs/DURABILITY.md).
# In the soft-RoCE VM with an emulated NVDIMM (tests/rxe-vm/run.sh --nvdimm)
# made a devdax device, the hub's ring lives on /dev/dax0.0 (rule pmem:
# durable once validated and flushed in the ring), the agent (nbdkit + the
# repagent filter, repagent-ack=LEVEL) writes over rdma://, and qemu-io
# prints each write as it completes. The host then kills qemu outright (the
# power cut: no shutdown), boots the VM again on the same NVDIMM file, and
# the hub replays its ring into the recovery image (then, below durable,
# the agent comes back; see Usage for what is asserted). The recovery image is a
# virtio disk (a host file) behind device-mapper's delay target (20 ms per
# write), so the hub's apply lags the acknowledgements and the ring holds
# durable records that were never applied when the power goes: the replay
# after the cut is what puts them in the image.
#
# Below durable the protected disk and the agent's bitmap live on the
# shared folder (a host file through 9p: they survive the cut like a real
# disk), so the agent can come back after it.
#
# Usage: powercut_pmem.sh [LEVEL]   (repagent-ack level, default durable;
# $RF_ACK_LEVEL also sets it). What is asserted is what LEVEL promises:
#   durable          every write that completed before the cut is in the
#                    recovery image after the replay (RPO 0);
#   async (landed)   a completed write may be missing after the cut, so
#                    only: nothing the hub had acknowledged durable is lost
#                    (rings_lost_acked = 0 after the replay), and once the
#                    agent is back with its bitmap the replica converges
#                    and equals the disk. To make that bite, the guest
#                    SIGSTOPs the hub after 250 writes (records still land
#                    in its ring; none is made durable) and the power goes
#                    100 completed writes after the agent gave up on the
#                    silent hub: the ring has records to replay, and the
#                    image must differ from the disk until the agent
#                    resends from its bitmap. `landed` promises no more
#                    than that across a power cut (docs/DURABILITY.md) and
#                    takes this path too, once the filter accepts it.
#
# The guest side is this same script with "guest run", "guest replay" or
# "guest converge".
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" = guest ]; then
	level=${RF_ACK_LEVEL:-durable} # the host exports it
else
	level=${1:-${RF_ACK_LEVEL:-durable}}
fi
case $level in
durable | async | landed) ;;
*) rf_fail "usage: powercut_pmem.sh [durable|async|landed]" ;;
esac

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

# The agent: nbdkit + the filter. Below durable the agent comes back after
# the cut: its disk and bitmap are on the shared folder, and a write waits
# at most 3 s for the stopped hub. At durable nothing of the agent is used
# after the cut: the disk is in guest memory (faster writes keep the ring
# ahead of the slow apply), and the timeout is long (a slow hub under TCG
# must not make a write fall back). (agent_disk etc. are set in the guest.)
start_agent() {
	spawn_to "$SHARE/$1-nbdkit.log" nbdkit -f -v -U /run/nbd.sock \
		--filter="$RF_LIB/nbdkit-repagent-filter.so" file "$agent_disk" \
		repagent-hub=127.0.0.1:7470 repagent-volume=vm1-disk0 \
		repagent-bitmap="$agent_bitmap" repagent-agent-id=vm1 \
		repagent-ack="$level" repagent-ack-timeout=$ack_timeout
	rf_wait_for 60 "nbdkit socket" test -S /run/nbd.sock
}

if [ "${1:-}" = guest ]; then
	SHARE=$2 # the host's scratch folder, shared read-write (RF_TMP is the guest's own)
	agent_disk=$SHARE/disk.img agent_bitmap=$SHARE/vm1.bitmap ack_timeout=3000
	if [ "$level" = durable ]; then
		agent_disk=/dev/shm/disk.img agent_bitmap=/run/vm1.bitmap ack_timeout=60000
	fi
	case $3 in
	run)
		guest_setup run
		if [ "$level" = durable ]; then
			head -c $((32 << 20)) /dev/urandom >"$agent_disk"
		fi
		start_agent run
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
		spawn_to "$SHARE/writer.log" stdbuf -oL qemu-io -f raw "${args[@]}" \
			'nbd+unix:///?socket=/run/nbd.sock'
		if [ "$level" != durable ]; then
			# Below durable a completed write need not be at the hub. Stop
			# the hub under the writes: records keep landing in its ring
			# (rxe answers for it) but none becomes durable or applied,
			# and once the agent gives up on the silent hub (3 heartbeats)
			# its writes go to the bitmap only. When the power goes, the
			# ring holds records to replay and the disk holds writes the
			# hub never saw: only the agent's bitmap can bring them.
			rf_wait_for 120 "250 writes to complete" \
				bash -c "[ \$(grep -c '^wrote' '$SHARE/writer.log') -ge 250 ]"
			kill -STOP "$hub_pid"
			rf_wait_for 300 "the agent to give up on the stopped hub" \
				grep -q "disconnected from hub" "$SHARE/run-nbdkit.log"
			grep -c '^wrote' "$SHARE/writer.log" >"$SHARE/hub-given-up"
		fi
		sleep 600 # the host cuts the power before this ends
		;;
	replay | converge)
		guest_setup "$3"
		# The hub replayed the ring before listening: nothing it had
		# acknowledged durable may be missing from the ring.
		lost=$(RF_HUB=127.0.0.1:7470 rf_hub_field rings_lost_acked)
		echo "rings_lost_acked=$lost" >"$SHARE/$3-status"
		[ "$lost" = 0 ] || rf_fail "rings_lost_acked is '$lost' after the replay"
		if [ "$3" = converge ]; then
			# The agent comes back with its bitmap: what was not durable
			# at the cut is resent, and the replica equals the disk.
			if cmp -s "$SHARE/disk.img" /dev/mapper/slow; then
				echo "before the agent: the image already equals the disk" >"$SHARE/converge-why"
			else
				echo "before the agent: the image differs from the disk" >"$SHARE/converge-why"
			fi
			start_agent converge
			"$RF_BIN/repctl" --hub 127.0.0.1:7470 wait vm1-disk0 --synced --timeout 400 ||
				rf_fail "the volume did not converge after the power cut"
			cmp "$SHARE/disk.img" /dev/mapper/slow ||
				rf_fail "the recovery image differs from the disk after the power cut"
			echo identical >>"$SHARE/$3-status"
			kill -TERM "$RF_LAST_PID"
			wait "$RF_LAST_PID" || true
		fi
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
[ "$level" = durable ] || head -c $((32 << 20)) /dev/urandom >"$RF_TMP/disk.img"
export RF_BIN RF_LIB RF_ACK_LEVEL=$level

rf_log "boot 1: hub with its ring on /dev/dax0.0, agent writing at level $level"
rf_spawn vm1 "$vm" --timeout 600 --nvdimm "$nv" --pidfile "$RF_TMP/qemu.pid" --share "$RF_TMP" \
	--drive "$RF_TMP/recovery.raw" \
	-- bash "$0" guest "$RF_TMP" run
vm_pid=$RF_LAST_PID
rf_wait_for 400 "the guest's initial sync" test -f "$RF_TMP/guest-synced"
if [ "$level" = durable ]; then
	rf_wait_for 120 "500 writes to complete in the guest" \
		bash -c "[ \$(grep -c '^wrote' '$RF_TMP/writer.log' 2>/dev/null) -ge 500 ]"
else
	rf_wait_for 600 "the guest to stop the hub and the agent to give up on it" \
		test -s "$RF_TMP/hub-given-up"
	n=$(cat "$RF_TMP/hub-given-up")
	rf_log "hub stopped after 250 writes; the agent gave up on it after $n"
	rf_wait_for 120 "100 more writes to complete without the hub" \
		bash -c "[ \$(grep -c '^wrote' '$RF_TMP/writer.log') -ge $((n + 100)) ]"
fi
kill -KILL "$(cat "$RF_TMP/qemu.pid")"
completed=$(grep -c '^wrote' "$RF_TMP/writer.log")
wait "$vm_pid" 2>/dev/null || true
grep -q "rule pmem" "$RF_TMP/run-hub.log" || rf_fail "the ring did not use rule pmem (see run-hub.log)"
rf_log "power cut after $completed completed writes"

step=replay
[ "$level" = durable ] || step=converge
rf_log "boot 2: the same NVDIMM; the hub replays its ring$([ $step = converge ] && echo ", then the agent comes back")"
"$vm" --timeout 600 --nvdimm "$nv" --share "$RF_TMP" --drive "$RF_TMP/recovery.raw" \
	-- bash "$0" guest "$RF_TMP" $step \
	>"$RF_TMP/vm2.log" 2>&1 || { tail -n 40 "$RF_TMP/vm2.log"; rf_fail "the $step boot failed"; }
replayed=$(sed -n 's/.* \([0-9]*\) record(s) applied from its ring at start-up/\1/p' "$RF_TMP/$step-hub.log")
rf_log "the hub replayed ${replayed:-no} record(s) from its ring after the cut"
[ "${replayed:-0}" -gt 0 ] || rf_fail "nothing was left to replay: the test did not cut the power under load"
grep -q "acknowledged durable but are not valid" "$RF_TMP/$step-hub.log" &&
	rf_fail "the hub found acknowledged records lost in its ring"
grep -q "^rings_lost_acked=0$" "$RF_TMP/$step-status" ||
	rf_fail "the hub's status does not show rings_lost_acked = 0 after the replay"
if [ $step = converge ]; then
	grep -q "^identical$" "$RF_TMP/$step-status" || rf_fail "the replica did not converge"
	grep -q "differs" "$RF_TMP/converge-why" ||
		rf_fail "the image equalled the disk before the agent came back: the cut did not bite"
	rf_log "$(cat "$RF_TMP/converge-why"); agent:" \
		"$(grep -o "[0-9]* dirty chunks from the last run to resend" "$RF_TMP/converge-nbdkit.log" || echo "no resend line")"
	rf_log "PASS: power cut at level $level: nothing acknowledged durable lost" \
		"(rings_lost_acked = 0); the agent resent from its bitmap, the replica equals the disk"
	exit 0
fi
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
