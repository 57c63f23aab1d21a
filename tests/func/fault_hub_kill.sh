#!/usr/bin/env bash
# Hub crash recovery under load: while a guest keeps writing at random
# (fio through nbdkit + the repagent filter), rephubd is SIGKILLed at random
# moments and restarted from its state_dir, RF_FAULT_HUB_KILLS times (20).
# Each restart replays the ring (torn tails discarded) and the agent resends
# only what its bitmap says the hub has not made durable. After the last
# restart and a quiesce the recovery image must equal the disk, and the
# bytes resent must be far below the volume size.
#
# Usage: fault_hub_kill.sh tcp|shm
. "$(dirname "$0")/lib.sh"
# A 256 MiB disk written at 2 MiB/s: a light guest on a big-enough disk, so
# that bytes resent after 20 outages are still far below its size.
FL_SIZE_MB=${FL_SIZE_MB:-256}
FL_WRITE_RATE=${FL_WRITE_RATE:-2m}
. "$(dirname "$0")/fault_lib.sh"

kills=${RF_FAULT_HUB_KILLS:-20}
fl_setup "${1:-tcp}"
fl_start_hub
fl_start_nbdkit
"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout 60 >/dev/null ||
	rf_fail "the initial sync did not finish"
rf_log "initial sync done; $kills hub kills under random writes"

fl_writer_start 300
start=$(fl_now_ms)
deadline=$((start + 120000))
for i in $(seq "$kills"); do
	fl_rsleep 200 1100 # up: reconnecting, resyncing, draining: any moment
	rf_alive "$fl_fio_pid"
	rf_alive "$fl_nbd_pid"
	state=$(fl_vol state)
	fl_kill_hub
	fl_rsleep 0 400 # down while the guest goes on writing
	fl_start_hub
	rf_log "  kill $i: hub killed while the volume was ${state:-?}, restarted"
	[ "$(fl_now_ms)" -lt "$deadline" ] || rf_fail "the kill loop overran 120 s"
done
rf_alive "$fl_nbd_pid"
fl_writer_stop
rf_log "guest writes stopped after $((($(fl_now_ms) - start) / 1000)) s; quiescing"
fl_quiesce "after $kills hub kills"
fl_table
fl_report "hub kills" "$kills"
grep -q "record(s) applied from its ring at start-up" "$RF_TMP"/hub*.log ||
	rf_fail "no hub replayed its ring at start-up"
rf_log "PASS: $kills hub SIGKILLs under writes, nothing lost"
