#!/usr/bin/env bash
# rephubd end to end with a simulated agent (rf-hub-agent-sim: the real
# control protocol, a real transport, real ring records) over tcp:// or
# shm://: full sync with guest writes racing it, the recovery image
# byte-identical to the disk afterwards; a reconnect with a valid bitmap
# needs no sync; another agent taking the volume over syncs in full; an
# invalid record is refused with a fence while the hub keeps serving;
# repctl wait --synced; sync_rate pacing. Usage: hub_sync.sh tcp|shm
. "$(dirname "$0")/lib.sh"
rf_require jq

scheme=${1:-tcp}
hubd=$RF_BIN/rephubd
repctl=$RF_BIN/repctl
sim=$RF_BIN/rf-hub-agent-sim
for b in "$hubd" "$repctl" "$sim"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done

ctl_port=$(rf_free_port)
case $scheme in
tcp)
	data_port=$(rf_free_port)
	while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
	data=tcp://127.0.0.1:$data_port
	;;
shm) data=shm://$RF_TMP/hub.sock ;;
*) rf_fail "unknown scheme $scheme" ;;
esac
hub=127.0.0.1:$ctl_port
state=$RF_TMP/state
disk=$RF_TMP/disk.img
image=$state/vm1-disk0.img
log=$RF_TMP/hub.log

write_conf() { # SYNC_RATE
	cat >"$RF_TMP/hub.conf" <<EOF
[hub]
control = $hub
data = $data
state_dir = $state
ring_size = 1M        ; small: records wrap, sync reads shrink to 256 KiB
sync_rate = $1

[volume vm1-disk0]
recovery = $image
EOF
}

start_hub() {
	rf_spawn hub "$hubd" --config "$RF_TMP/hub.conf" --log-level debug
	hub_pid=$RF_LAST_PID
	rf_wait_port "$ctl_port"
}

stop_hub() {
	kill -TERM "$hub_pid"
	local rc=0
	wait "$hub_pid" || rc=$?
	[ "$rc" = 0 ] || rf_fail "rephubd exited $rc after SIGTERM"
}

run_sim() { # NAME ARGS... (fails unless the simulator exits 0)
	local name=$1
	shift
	"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" "$@" >"$RF_TMP/$name.log" 2>&1 ||
		{ cat "$RF_TMP/$name.log"; rf_fail "$name: the simulated agent failed"; }
	rf_log "  $name: $(tail -n1 "$RF_TMP/$name.log")"
}

same() { # WHAT
	cmp "$disk" "$image" || rf_fail "$1: the recovery image differs from the disk"
	rf_log "  $1: recovery image identical to the disk"
}

RF_HUB=$hub # lib.sh's status helpers

dd if=/dev/urandom of="$disk" bs=1M count=12 status=none
write_conf 0
start_hub

rf_log "full sync with guest writes racing it ($scheme)"
run_sim first --agent vm1 --vol-id 1 --expect-sync full --writes 400 --seed 1
grep -q "VOLUME_STATE protected" "$RF_TMP/first.log" || rf_fail "no VOLUME_STATE protected"
same "after the full sync"
grep -q '^synced=1$' "$state/volumes/vm1-disk0.state" || rf_fail "state file does not say synced"

rf_log "reconnect with a valid bitmap: no sync"
run_sim second --agent vm1 --vol-id 1 --bitmap-valid --expect-sync none --writes 200 --seed 2
same "after the second session"

rf_log "reconnect without a valid bitmap: full sync"
run_sim third --agent vm1 --vol-id 4 --expect-sync full --writes 50 --seed 3
same "after the third session"

rf_log "another agent takes the volume over: full sync"
run_sim other --agent vm1-moved --vol-id 2 --bitmap-valid --expect-sync full --writes 50 --seed 4
same "after the move"

rf_log "an invalid record (unknown vol_id) is fenced; the hub keeps serving"
rc=0
"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" --agent vm1-moved --vol-id 2 \
	--bitmap-valid --writes 20 --seed 5 --bad vol >"$RF_TMP/bad.log" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$RF_TMP/bad.log"; rf_fail "bad-vol: the simulator exited $rc, not 3"; }
rf_alive "$hub_pid"
grep -q "invalid record seq .*vol_id 102 is not a volume this agent reported" "$log" ||
	rf_fail "the log does not give the invalid record's reason"
[ "$(rf_agent_field vm1-moved invalid_records) $(rf_agent_field vm1-moved fences)" = "1 1" ] ||
	{ rf_status; rf_fail "invalid record / fence not counted"; }
same "after the invalid record (everything before it applied)"

rf_log "an out-of-bounds record is fenced too"
rc=0
"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" --agent vm1-moved --vol-id 2 \
	--bitmap-valid --writes 5 --seed 6 --bad range >"$RF_TMP/range.log" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$RF_TMP/range.log"; rf_fail "bad-range: the simulator exited $rc"; }
grep -q "is outside volume vm1-disk0" "$log" || rf_fail "no out-of-bounds reason in the log"

rf_log "the next session works (the invalid record was skipped for good)"
run_sim after-bad --agent vm1-moved --vol-id 2 --bitmap-valid --expect-sync none --writes 30 --seed 7
same "after the session following the invalid records"

rf_log "repctl wait --synced"
"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" --agent vm1-moved --vol-id 2 \
	--bitmap-valid --writes 30 --seed 8 --stay >"$RF_TMP/stay.log" 2>&1 &
stay_pid=$!
"$repctl" --hub "$hub" wait vm1-disk0 --synced --timeout 30 >"$RF_TMP/wait.out" 2>&1 ||
	{ cat "$RF_TMP/wait.out" "$RF_TMP/stay.log"; rf_fail "repctl wait --synced failed"; }
rf_log "  $(cat "$RF_TMP/wait.out")"
"$repctl" --hub "$hub" status
kill -TERM "$stay_pid"
wait "$stay_pid" || rf_fail "the staying agent failed"
same "after the wait"

rf_log "sync_rate paces the full sync"
stop_hub
write_conf 4M
start_hub
t0=$(date +%s%N)
run_sim paced --agent vm1-paced --vol-id 1 --expect-sync full --seed 9
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
rf_log "  12 MiB at 4 MiB/s took $ms ms"
[ "$ms" -ge 2000 ] || rf_fail "the sync was not paced (12 MiB in $ms ms at 4 MiB/s)"
same "after the paced sync"
stop_hub
grep -q "stopped" "$log" || rf_fail "no 'stopped' in the log"
rf_log "all good"
