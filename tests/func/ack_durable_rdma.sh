#!/usr/bin/env bash
# Acknowledgement level `durable` over rdma:// (issue #14, docs/DURABILITY.md),
# inside the soft-RoCE VM (tests/rxe-vm), one boot for two scenarios. The
# hub listens on a second address of eth0, 10.0.2.16, whose local route
# names 10.0.2.15 as its source: the agent's queue pair is 10.0.2.15 ->
# 10.0.2.16, and deleting 10.0.2.16 makes rxe drop every packet to the hub
# (its GID is gone) while the agent's side still sends: a cut link, seen by
# the agent only through missing ACKs. (Both ends are on rxe0, so packets
# never reach netfilter: rxe loops them back inside the driver.)
#   1. dead link: the agent writes at repagent-ack=durable; 10.0.2.16 is
#      removed. The agent must log its RDMA write completing with
#      "transport retry counter exceeded" (IBV_WC_RETRY_EXC_ERR: the RC
#      retry count is finite, rxe treats 7 as infinite) within a bounded
#      wait (the seconds it took are printed), the guest's writes must go
#      on completing without the hub, and the volume must show its fallback
#      to async. The address comes back:
#      the agent reconnects, the volume returns to durable, converges, and
#      the recovery image equals the disk.
#   2. hub SIGKILL under load: qemu-io writes 64 KiB to distinct slots,
#      one at a time, printing each completion; the hub is SIGKILLed in the
#      middle and then the agent too, with its bitmap deleted. Every write
#      printed before the kill is in the recovery image after the hub
#      restarts alone (ack_durable.sh scenario 1, over rdma).
#
# Usage: ack_durable_rdma.sh   (boots the VM and runs itself inside it with --guest)
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" != --guest ]; then
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		rf_skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	rc=0
	"$RF_SOURCE_DIR/tests/rxe-vm/run.sh" --timeout 700 --mem 1024 -- bash "$0" --guest || rc=$?
	case $rc in
	0) rf_log "PASS: durable acknowledgements over rdma_rxe (dead link, hub SIGKILL)" ;;
	124) rf_fail "the VM timed out" ;;
	125) rf_fail "the VM failed to boot or the harness failed (see above)" ;;
	*) rf_fail "the scenarios failed inside the VM (exit $rc)" ;;
	esac
	exit 0
fi

rf_require nbdkit qemu-io cmp stdbuf jq ip
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$filter" ] || rf_fail "$filter not built"

HUB_ADDR=10.0.2.16
link_up() {
	ip addr add "$HUB_ADDR/32" dev eth0 2>/dev/null || true
	ip route replace table local local "$HUB_ADDR" dev eth0 proto kernel scope host src 10.0.2.15
}
link_cut() { ip addr del "$HUB_ADDR/32" dev eth0; }
link_up
ip route get "$HUB_ADDR" | grep -q "src 10.0.2.15" ||
	rf_fail "the route to $HUB_ADDR does not use source 10.0.2.15: $(ip route get "$HUB_ADDR")"

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
disk=$RF_TMP/disk.img
state=$RF_TMP/state
recovery=$state/vm1-disk0.img
rings=/dev/shm/rf-ack-rings
sock=$RF_TMP/nbd.sock
uri="nbd+unix:///?socket=$sock"
RF_HUB="127.0.0.1:$ctl_port"
cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $RF_HUB
data = rdma://$HUB_ADDR:$data_port
state_dir = $state
ring_dir = $rings
ring_size = 8M

[volume vm1-disk0]
recovery = $recovery
CONF
head -c $((16 << 20)) /dev/urandom >"$disk"

fresh_state() {
	rm -rf "$state" "$rings"
	mkdir -p "$state"
}
nhub=0
start_hub() {
	nhub=$((nhub + 1))
	rf_spawn "hub$nhub" "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
	hub_pid=$RF_LAST_PID
	rf_wait_port "$ctl_port" 60
}
nnbd=0
# start_nbdkit ACK_TIMEOUT_MS
start_nbdkit() {
	nnbd=$((nnbd + 1))
	rm -f "$sock"
	rf_spawn "nbdkit$nnbd" nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
		repagent-hub="$RF_HUB" repagent-volume=vm1-disk0 repagent-bitmap="$RF_TMP/vm1.bitmap" \
		repagent-agent-id=vm1 repagent-ack=durable repagent-ack-timeout="$1"
	nbd_pid=$RF_LAST_PID
	nbd_log=$RF_TMP/nbdkit$nnbd.log
	rf_wait_for 60 "nbdkit socket" test -S "$sock"
}
synced() {
	"$RF_BIN/repctl" --hub "$RF_HUB" wait vm1-disk0 --synced --timeout 300 >/dev/null ||
		rf_fail "$1: not synced"
}
durable_again() {
	rf_wait_for 120 "the volume at durable acknowledgements" \
		rf_status_true '.volumes[0].ack == "durable" and .volumes[0].ack_fallback == false'
}
# cmds: qemu-io commands that write pattern (i % 250 + 1) to 64 KiB slot i,
# for i in [from, to). (No process substitution: the guest has no /dev/fd.)
slot_writes() {
	local i
	cmds=()
	for ((i = $1; i < $2; i++)); do
		cmds+=(-c "write -P $((i % 250 + 1)) $((i * 65536)) 64k")
	done
}
# A guest that keeps writing: one 4 KiB write at a random offset every
# 0.2 s, each its own qemu-io, one line in writes.ok per completed write (a
# write that fails is not an error here: the replica is compared with the
# disk at the end, whatever was written).
writer_loop() {
	while :; do
		if qemu-io -f raw -c "write -P $((RANDOM % 256)) $((RANDOM % 4096 * 4096)) 4k" "$uri" \
			>/dev/null 2>&1; then
			echo ok >>"$RF_TMP/writes.ok"
		fi
		sleep 0.2
	done
}
writes_ok() { if [ -f "$RF_TMP/writes.ok" ]; then wc -l <"$RF_TMP/writes.ok"; else echo 0; fi; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wall_wait SECONDS DESCRIPTION CMD...: like rf_wait_for, bounded by the
# clock rather than by a count of tries (each try is slow under TCG).
wall_wait() {
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || rf_fail "timed out waiting for $what"
		sleep 0.2
	done
}

rf_log "scenario 1: the link to the hub cut under writes at level durable"
fresh_state
start_hub
start_nbdkit 3000
synced "initial sync"
durable_again
rf_spawn writer writer_loop
writer_pid=$RF_LAST_PID
sleep 2
link_cut
t0=$(now_ms)
rf_log "  $HUB_ADDR removed: packets to the hub are dropped"
# Bounded by the clock: RC_RETRY_COUNT and RC_ACK_TIMEOUT make it seconds;
# with a retry count of 7 (infinite on rxe) it never comes.
wall_wait 60 "RDMA write failing with retry exceeded in the agent's log" \
	grep -q "connection lost: .*transport retry counter exceeded" "$nbd_log"
t1=$(now_ms)
rf_log "  the agent saw the dead link after $(((t1 - t0) / 100 / 10)).$(((t1 - t0) / 100 % 10)) s:" \
	"$(grep -o "connection lost: .*transport retry counter exceeded[^)]*)" "$nbd_log" | head -n 1)"
# The guest is not stuck: its writes complete without the hub (each waits
# at most repagent-ack-timeout, then the volume is async).
n=$(writes_ok)
rf_wait_for 120 "guest writes to complete while the link is down" \
	bash -c "[ \$(wc -l <'$RF_TMP/writes.ok') -ge $((n + 5)) ]"
rf_log "  guest writes go on without the hub ($(writes_ok) completed so far)"
link_up
rf_log "  $HUB_ADDR back"
rf_wait_for 120 "the agent to attach again over rdma" \
	bash -c "[ \$(grep -c 'connected to hub ' '$nbd_log') -ge 2 ]"
# The agent reports its fallback once its session is back.
rf_wait_for 60 "the hub to count the volume's fallback to async" \
	rf_status_true '.volumes[0].ack_fallbacks >= 1'
durable_again
kill -TERM "$writer_pid" 2>/dev/null || true
wait "$writer_pid" 2>/dev/null || true
synced "after the link came back"
cmp "$disk" "$recovery" || rf_fail "the recovery image differs from the disk after the dead link"
rf_log "  reconnected, back at durable, recovery image identical"
kill -TERM "$nbd_pid"
wait "$nbd_pid" 2>/dev/null || true
kill -TERM "$hub_pid"
wait "$hub_pid" 2>/dev/null || true

rf_log "scenario 2: hub SIGKILLed under writes at level durable; completed writes survive"
fresh_state
rm -f "$RF_TMP/vm1.bitmap"
start_hub
start_nbdkit 60000 # long: a slow hub under TCG must not make a write fall back
synced "scenario 2 initial sync"
durable_again
slot_writes 0 256
rf_spawn writer2 stdbuf -oL qemu-io -f raw "${cmds[@]}" "$uri"
writer_pid=$RF_LAST_PID
rf_wait_for 120 "40 writes to complete" \
	bash -c "[ \$(grep -c '^wrote' '$RF_TMP/writer2.log') -ge 40 ]"
# Freeze the agent, count, then kill the hub and the agent (ack_durable.sh).
kill -STOP "$nbd_pid"
completed=$(grep -c '^wrote' "$RF_TMP/writer2.log")
kill -KILL "$hub_pid"
wait "$hub_pid" 2>/dev/null || true
kill -KILL "$nbd_pid"
kill -CONT "$nbd_pid" 2>/dev/null || true
wait "$nbd_pid" 2>/dev/null || true
wait "$writer_pid" 2>/dev/null || true
rm -f "$RF_TMP/vm1.bitmap"
rf_log "  $completed writes completed before the hub was killed"
start_hub
kill -TERM "$hub_pid"
wait "$hub_pid" 2>/dev/null || true
python3 - "$recovery" "$completed" <<'PY' || rf_fail "a write that completed at level durable is missing"
import sys
img, n = open(sys.argv[1], "rb"), int(sys.argv[2])
missing = []
for i in range(n):
    img.seek(i * 65536)
    if img.read(65536) != bytes([i % 250 + 1]) * 65536:
        missing.append(i)
if missing:
    print(f"{len(missing)} of {n} completed writes missing, first slots {missing[:10]}")
    sys.exit(1)
print(f"all {n} completed writes are in the recovery image")
PY
rf_log "PASS: durable over rdma: dead link found and healed; nothing completed lost to a hub SIGKILL"
