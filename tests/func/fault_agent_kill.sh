#!/usr/bin/env bash
# Agent crash recovery: nbdkit (the repagent filter, the agent) is SIGKILLed
# while a guest writes at random, RF_FAULT_AGENT_KILLS times (5), and
# started again with the same bitmap file: it finds the dirty bits of the
# killed run and resends those chunks only. Then the three bitmap files an
# agent cannot trust, each after a SIGKILL under writes: missing, truncated,
# and another volume's. The agent says why and falls back to a full sync.
# After every phase the recovery image must equal the disk; the bytes resent
# must be far below the volume size.
. "$(dirname "$0")/lib.sh"
FL_SIZE_MB=${FL_SIZE_MB:-256}
. "$(dirname "$0")/fault_lib.sh"

kills=${RF_FAULT_AGENT_KILLS:-5}
fl_setup tcp
fl_start_hub
fl_start_nbdkit
"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout 60 >/dev/null ||
	rf_fail "the initial sync did not finish"
rf_log "initial sync done; $kills agent kills under random writes"

fl_qwriter_start
for i in $(seq "$kills"); do
	fl_rsleep 1000 2500
	rf_alive "$fl_qw_pid"
	fl_kill_nbdkit # writes in flight die with it
	fl_start_nbdkit
	rf_wait_for 10 "the restarted agent to read its bitmap" \
		grep -q "dirty chunks from the last run to resend\|bitmap .*: valid" "$fl_nbd_log"
	n=$(sed -n 's/.*volume vm1-disk0: \([0-9]*\) dirty chunks from the last run to resend.*/\1/p' \
		"$fl_nbd_log")
	[ -n "$n" ] && [ "$n" -gt 0 ] ||
		rf_fail "kill $i: the restarted agent found no dirty chunks in its bitmap"
	rf_log "  kill $i: agent killed under writes; its bitmap kept $n dirty chunks" \
		"($((n * 65536)) bytes) to resend"
done
fl_qwriter_stop
fl_quiesce "after $kills agent kills"
fl_report "agent kills" "$kills"
resent_kills=$(fl_vol resent_bytes)

# The bitmap cannot be trusted: the agent must say why and the hub must do a
# full sync (no "resent" bytes: the sync reads the whole volume).
untrusted() { # WHAT REASON-REGEX
	local what=$1 reason=$2 full0 full1
	full0=$(grep -h -c "full sync (the agent's bitmap is not valid)" "$RF_TMP"/hub*.log |
		awk '{s += $1} END {print s}')
	fl_start_nbdkit
	rf_wait_for 10 "the agent to say why its bitmap is not usable" grep -q "$reason" "$fl_nbd_log"
	rf_log "  agent: $(grep -o "bitmap [^ ]*: $reason.*" "$fl_nbd_log" | head -n1 | sed "s|$RF_TMP/||")"
	fl_quiesce "bitmap $what"
	full1=$(grep -h -c "full sync (the agent's bitmap is not valid)" "$RF_TMP"/hub*.log |
		awk '{s += $1} END {print s}')
	[ "$full1" -gt "$full0" ] || rf_fail "bitmap $what: the hub did not do a full sync"
}
kill_under_writes() {
	fl_qwriter_start
	sleep 1.5
	fl_kill_nbdkit
	fl_qwriter_stop
}

rf_log "bitmap missing after a crash"
kill_under_writes
rm -f "$fl_bitmap"
untrusted missing "missing, creating it (volume vm1-disk0: full sync)"

rf_log "bitmap truncated after a crash"
kill_under_writes
truncate -s 6000 "$fl_bitmap"
untrusted truncated "file is 6000 bytes, expected [0-9]* (truncated?); recreating it"

rf_log "bitmap of another volume"
kill_under_writes
# A bitmap made by an agent for volume vm1-other (the hub does not know
# that volume and refuses it; the bitmap is written anyway).
fl_start_nbdkit vm1-other "$RF_TMP/other.bitmap"
rf_wait_for 10 "the other volume's bitmap" test -s "$RF_TMP/other.bitmap"
fl_stop_nbdkit
cp "$RF_TMP/other.bitmap" "$fl_bitmap"
untrusted "of another volume" "belongs to volume 'vm1-other'; recreating it"

resent=$(fl_vol resent_bytes)
[ "$resent" -ge "$resent_kills" ] || rf_fail "the hub's resent counter went backwards"
fl_table
rf_log "PASS: $kills agent SIGKILLs and 3 untrusted bitmaps, nothing lost"
