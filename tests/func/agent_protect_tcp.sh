#!/usr/bin/env bash
# The agent's side of the protect flow over tcp://, end to end with rephubd
# and nbdkit + the repagent filter, checking after each phase that the
# recovery image is byte-identical to the disk:
#   1. initial full sync + a guest write (the smoke from the agent brief);
#   2. the hub is SIGKILLed: guest writes keep succeeding (tracked in the
#      dirty bitmap), the agent reconnects with backoff when the hub is
#      back and resends the dirty chunks;
#   3. hub down, writes, nbdkit SIGKILLed: the dirty bits are on disk; the
#      restarted agent reports a valid bitmap and resends only those;
#   4. hub down, writes, clean nbdkit stop, bitmap header corrupted: the
#      agent recreates it, reports it invalid, the hub does a full sync.
# The ring is small (4 MiB) so that ring-full back-pressure happens.
. "$(dirname "$0")/lib.sh"

rf_require nbdkit qemu-io fio cmp
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
[ -x "$RF_BIN/repctl" ] || rf_fail "repctl not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$filter" ] || rf_fail "$filter not built"

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
disk=$RF_TMP/disk.img
bitmap=$RF_TMP/vm1-disk0.bitmap
recovery=$RF_TMP/state/vm1-disk0.img
sock=$RF_TMP/nbd.sock
uri="nbd+unix:///?socket=$sock"
hub="127.0.0.1:$ctl_port"
mkdir -p "$RF_TMP/state"
cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $hub
data = tcp://127.0.0.1:$data_port
state_dir = $RF_TMP/state
ring_size = 4M

[volume vm1-disk0]
recovery = $recovery
CONF
head -c $((64 << 20)) /dev/urandom >"$disk"

nhub=0
start_hub() {
	nhub=$((nhub + 1))
	rf_spawn "hub$nhub" "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
	hub_pid=$RF_LAST_PID
	rf_wait_port "$ctl_port" 20
}
nnbd=0
start_nbdkit() {
	nnbd=$((nnbd + 1))
	rm -f "$sock"
	rf_spawn "nbdkit$nnbd" nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
		repagent-hub="$hub" repagent-volume=vm1-disk0 repagent-bitmap="$bitmap"
	nbd_pid=$RF_LAST_PID
	rf_wait_for 20 "nbdkit socket" test -S "$sock"
}
kill9() { kill -KILL "$1"; wait "$1" 2>/dev/null || true; }
wait_synced() {
	"$RF_BIN/repctl" --hub "$hub" wait vm1-disk0 --synced --timeout "${RF_AGENT_WAIT:-90}" ||
		rf_fail "$1: not synced"
	cmp "$disk" "$recovery" || rf_fail "$1: recovery image differs from the disk"
	rf_log "$1: recovery image byte-identical"
}
# Guest writes that must succeed whatever the hub does.
guest_writes() {
	qemu-io -f raw -c "write -P $1 $2 2M" -c "write -P $1 10M 64k" -c 'write -z 20M 1M' \
		-c 'discard 30M 1M' -c "write -P $1 63M 1M" "$uri" >"$RF_TMP/qemu-io.log" ||
		rf_fail "a guest write failed (see qemu-io.log)"
}

rf_log "phase 1: initial sync, then a guest write"
start_hub
start_nbdkit
qemu-io -f raw -c 'write -P 0xab 0 1M' "$uri" >/dev/null || rf_fail "qemu-io write failed"
wait_synced "phase 1"

rf_log "phase 2: hub killed; writes continue; hub restarted"
kill9 "$hub_pid"
guest_writes 0x22 1M
fio --ioengine=nbd --uri="$uri" --name=outage --rw=randwrite --bsrange=512-128k --size=64M \
	--iodepth=8 --runtime=2 --time_based --output="$RF_TMP/fio.json" >/dev/null ||
	rf_fail "fio failed while the hub was down"
rf_alive "$nbd_pid"
start_hub
wait_synced "phase 2"
grep -q "disconnected from hub" "$RF_TMP/nbdkit1.log" || rf_fail "the agent never noticed the hub died"

rf_log "phase 3: hub down, writes, nbdkit SIGKILLed, both restarted"
kill9 "$hub_pid"
guest_writes 0x33 40M
kill9 "$nbd_pid"
start_hub
start_nbdkit
rf_wait_for 10 "the restarted agent to find dirty chunks in its bitmap" \
	grep -q " [1-9][0-9]* dirty chunks from the last run to resend" "$RF_TMP/nbdkit$nnbd.log"
wait_synced "phase 3"

rf_log "phase 4: hub down, writes, clean stop, bitmap corrupted"
kill9 "$hub_pid"
guest_writes 0x44 50M
kill -TERM "$nbd_pid"
wait "$nbd_pid" 2>/dev/null || true
printf 'XXXX' | dd of="$bitmap" bs=1 seek=60 conv=notrunc status=none
start_hub
start_nbdkit
rf_wait_for 10 "the agent to detect the corrupt bitmap" \
	grep -q "header CRC mismatch; recreating it" "$RF_TMP/nbdkit$nnbd.log"
wait_synced "phase 4"

rf_log "PASS: agent protect flow over tcp (sync, outage, crash, corrupt bitmap)"
