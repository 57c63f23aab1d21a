#!/usr/bin/env bash
# A hub that dies with records in an agent's ring finds and applies them
# when it starts again, before any agent reconnects. shm:// lets the
# simulated agent put records into the ring file while the hub is stopped
# (SIGSTOP), then the hub is killed (SIGKILL) and restarted.
. "$(dirname "$0")/lib.sh"

hubd=$RF_BIN/rephubd
repctl=$RF_BIN/repctl
sim=$RF_BIN/rf-hub-agent-sim
for b in "$hubd" "$repctl" "$sim"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done

ctl_port=$(rf_free_port)
hub=127.0.0.1:$ctl_port
state=$RF_TMP/state
disk=$RF_TMP/disk.img
image=$state/vm1-disk0.img
cat >"$RF_TMP/hub.conf" <<EOC
[hub]
control = $hub
data = shm://$RF_TMP/hub.sock
state_dir = $state
ring_size = 16M

[volume vm1-disk0]
recovery = $image
EOC
dd if=/dev/urandom of="$disk" bs=1M count=8 status=none

rf_spawn hub1 "$hubd" --config "$RF_TMP/hub.conf" --log-level debug
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port"

rf_log "sync, then stop the hub and post 150 writes into the ring"
"$sim" --hub "$hub" --agent vm1 --volume vm1-disk0 --vol-id 1 --disk "$disk" \
	--expect-sync full --writes 150 --seed 11 --pause-ms 1500 --hold-ms 60000 \
	>"$RF_TMP/sim1.log" 2>&1 &
sim_pid=$!
rf_wait_for 30 "the agent to finish its sync" grep -q "^paused" "$RF_TMP/sim1.log"
kill -STOP "$hub_pid"
rf_wait_for 30 "the agent to post its writes" grep -q "^posted 150 writes" "$RF_TMP/sim1.log"
rf_log "  $(grep '^posted' "$RF_TMP/sim1.log"); killing the hub"
kill -KILL "$hub_pid"
wait "$hub_pid" 2>/dev/null || true
kill -KILL "$sim_pid"
wait "$sim_pid" 2>/dev/null || true
if cmp -s "$disk" "$image"; then
	rf_fail "the recovery image already has the writes: the hub was not stopped in time"
fi

rf_log "restart: the ring is drained at start-up"
rf_spawn hub2 "$hubd" --config "$RF_TMP/hub.conf" --log-level debug
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port"
# (the 8 writes that raced the sync were applied before the stop)
n=$(sed -n 's/.*agent vm1: \([0-9]*\) record(s) applied from its ring at start-up.*/\1/p' \
	"$RF_TMP/hub2.log")
[ "${n:-0}" -ge 100 ] || rf_fail "the start-up drain applied ${n:-no} records, expected 142"
rf_log "  $n records applied at start-up"
cmp "$disk" "$image" || rf_fail "the recovery image differs from the disk after the restart"
rf_log "  recovery image identical to the disk"

rf_log "the agent comes back with a valid bitmap: no sync, and mirroring goes on"
"$sim" --hub "$hub" --agent vm1 --volume vm1-disk0 --vol-id 1 --disk "$disk" \
	--bitmap-valid --expect-sync none --writes 40 --seed 12 >"$RF_TMP/sim2.log" 2>&1 ||
	{ cat "$RF_TMP/sim2.log"; rf_fail "the second session failed"; }
cmp "$disk" "$image" || rf_fail "the recovery image differs after the second session"
"$repctl" --hub "$hub" status
kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
[ "$rc" = 0 ] || rf_fail "rephubd exited $rc after SIGTERM"
rf_log "all good"
