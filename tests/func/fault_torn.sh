#!/usr/bin/env bash
# A torn record in a ring, under random guest writes (shm://, where the
# agent's records land in the ring file by themselves): the hub is stopped
# (SIGSTOP) so records pile up in its ring, then SIGKILLed, and rf-ring-tear
# damages the record in the middle of what landed: its trailer ("torn", a
# write cut short), then in a second round a payload byte ("crc"). The
# restarted hub applies the valid prefix, says where and why the ring ends,
# discards the rest; the agent resends every write the hub did not make
# durable. The recovery image must equal the disk after each round.
. "$(dirname "$0")/lib.sh"
FL_SIZE_MB=${FL_SIZE_MB:-128}
FL_WRITE_RATE=${FL_WRITE_RATE:-4m}
. "$(dirname "$0")/fault_lib.sh"
[ -x "$RF_BIN/rf-ring-tear" ] || rf_fail "rf-ring-tear not built"

fl_setup shm
fl_start_hub
fl_start_nbdkit
"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout 60 >/dev/null ||
	rf_fail "the initial sync did not finish"
attached() { [ "$(fl_agent attached)" = true ]; }

round=0
for mode in torn crc; do
	round=$((round + 1))
	rf_log "round $round: a $mode record in the ring"
	fl_writer_start 60
	rf_wait_for 30 "the agent to attach" attached
	sleep 1
	kill -STOP "$fl_hub_pid"
	# The guest writes; the records land in the stopped hub's ring. Wait
	# (bounded) until there are a few to tear one in the middle of.
	sleep 1.5
	for _ in $(seq 40); do
		[ "$("$RF_BIN/rf-ring-tear" --mode count "$fl_ring_dir/vm1.ring")" -ge 4 ] && break
		sleep 0.25
	done
	fl_kill_hub
	out=$("$RF_BIN/rf-ring-tear" --mode "$mode" "$fl_ring_dir/vm1.ring") ||
		rf_fail "round $round: rf-ring-tear failed: $out"
	rf_log "  $out"
	seq=$(echo "$out" | sed -n 's/^tore record seq \([0-9]*\) .*/\1/p')
	fl_start_hub
	log=$RF_TMP/hub$fl_nhub.log
	rf_wait_for 10 "the hub to report the damaged record" grep -q "its ring ends in a" "$log"
	rf_log "  hub: $(grep -o "[0-9]* record(s) applied from its ring at start-up" "$log")"
	rf_log "  hub: $(grep -o "its ring ends in a .* record at seq [0-9]*" "$log")"
	grep -q "its ring ends in a .* record at seq $seq " "$log" ||
		rf_fail "round $round: the hub did not stop at the damaged record (seq $seq)"
	sleep 1
	fl_writer_stop
	fl_quiesce "round $round ($mode)"
	rf_log "  resent so far: $(fl_vol resent_bytes) bytes"
done
fl_table
fl_report "torn records" "$round"
rf_log "PASS: a torn and a corrupt record in the ring, nothing acknowledged was lost"
