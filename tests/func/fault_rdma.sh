#!/usr/bin/env bash
# Crash scenarios over rdma://, inside the soft-RoCE VM (tests/rxe-vm): the
# agent's records reach the hub's ring by one-sided RDMA WRITEs. Under
# random guest writes:
#   1. rephubd SIGKILLed at random moments and restarted, RF_FAULT_RDMA_KILLS
#      times (2);
#   2. the hub stopped (SIGSTOP) while RDMA writes keep landing in its ring,
#      SIGKILLed, the middle record of what landed torn (rf-ring-tear), the
#      hub restarted: it applies the valid prefix and stops at the tear;
#   3. the agent (nbdkit) SIGKILLed and restarted with its bitmap.
# After a quiesce the recovery image must equal the disk, and the bytes
# resent per outage must be far below the volume size.
#
# Usage: fault_rdma.sh   (boots the VM and runs itself inside it with --guest)
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" != --guest ]; then
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		rf_skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	rc=0
	"$RF_SOURCE_DIR/tests/rxe-vm/run.sh" --timeout 600 --mem 2048 -- bash "$0" --guest || rc=$?
	case $rc in
	0) rf_log "PASS: crash scenarios over rdma_rxe in the VM" ;;
	124) rf_fail "the VM timed out" ;;
	125) rf_fail "the VM failed to boot or the harness failed (see above)" ;;
	*) rf_fail "the crash scenarios failed inside the VM (exit $rc)" ;;
	esac
	exit 0
fi

# Everything is slow under TCG (the initial sync of 32 MiB takes seconds,
# a hub restart and rdma re-attach a few): a small disk and a light guest.
FL_SIZE_MB=${FL_SIZE_MB:-32}
FL_WRITE_RATE=${FL_WRITE_RATE:-128k}
FL_QW_PAUSE=${FL_QW_PAUSE:-1}
FL_SLOW=5
. "$(dirname "$0")/fault_lib.sh"
[ -x "$RF_BIN/rf-ring-tear" ] || rf_fail "rf-ring-tear not built"

kills=${RF_FAULT_RDMA_KILLS:-2}
fl_setup rdma
fl_start_hub
fl_start_nbdkit
"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout "$(fl_secs 120)" >/dev/null ||
	rf_fail "the initial sync did not finish"
attached() { [ "$(fl_agent attached)" = true ]; }
rf_log "initial sync over rdma done; $kills hub kills under random writes"

fl_writer_start 600
start=$(fl_now_ms)
for i in $(seq "$kills"); do
	fl_rsleep 500 2000
	rf_alive "$fl_fio_pid"
	state=$(fl_vol state)
	fl_kill_hub
	fl_rsleep 0 400
	fl_start_hub
	rf_log "  kill $i: hub killed while the volume was ${state:-?}, restarted"
done

rf_log "torn record: RDMA writes land in a stopped hub's ring"
rf_wait_for "$(fl_secs 60)" "the agent to attach" attached
sleep 1
kill -STOP "$fl_hub_pid"
sleep 2
fl_kill_hub
out=$("$RF_BIN/rf-ring-tear" --mode torn "$fl_ring_dir/vm1.ring") ||
	rf_fail "rf-ring-tear failed: $out"
rf_log "  $out"
seq=$(echo "$out" | sed -n 's/^tore record seq \([0-9]*\) .*/\1/p')
fl_start_hub
log=$RF_TMP/hub$fl_nhub.log
rf_wait_for "$(fl_secs 20)" "the hub to report the torn record" grep -q "its ring ends in a" "$log"
grep -q "its ring ends in a torn record at seq $seq " "$log" ||
	rf_fail "the hub did not stop at the torn record (seq $seq)"
rf_log "  hub: $(grep -o "[0-9]* record(s) applied from its ring at start-up" "$log"), then" \
	"$(grep -o "its ring ends in a .* record at seq [0-9]*" "$log")"

rf_log "agent killed under writes"
fl_writer_stop # fio hangs when its nbd server dies: qemu-io writes from here
fl_qwriter_start
rf_wait_for "$(fl_secs 60)" "the agent to attach" attached
sleep 2
fl_kill_nbdkit
fl_start_nbdkit
# (0 dirty chunks is possible when the slow VM wrote nothing in those 2 s:
# the line is printed either way, and the replica is compared at the end.)
rf_wait_for "$(fl_secs 20)" "the restarted agent to read its bitmap" \
	grep -q "dirty chunks from the last run to resend" "$fl_nbd_log"
rf_log "  $(grep -o "volume vm1-disk0: [0-9]* dirty chunks from the last run to resend" "$fl_nbd_log")"
sleep 2
fl_qwriter_stop
rf_log "guest writes stopped after $((($(fl_now_ms) - start) / 1000)) s; quiescing"
fl_quiesce "over rdma after $kills hub kills, a torn record and an agent kill"
fl_table
# Under TCG each outage lasts long in guest writes (a hub restart and an rdma
# re-attach take many guest seconds): bytes resent are judged per outage.
fl_report "rdma crashes" "$((kills + 2))" per-outage
