#!/usr/bin/env bash
# Congestion and resync pacing.
#   1. The hub falls behind (SIGSTOP for 2 s) while the guest writes fast:
#      the ring fills, the agent's queue (1 MiB) overflows and it switches
#      to bitmap tracking; no guest write waits or fails. When the hub runs
#      again the agent catches up by resending; status shows the congestion
#      (agent "congestions", volume "resyncing" with cause "congestion")
#      and the return to "protected".
#   2. resync_rate (8 MiB/s here) paces the agent's resends: after an
#      outage that dirtied 24 MiB, the resync cannot take less time than
#      the rate allows (the bucket holds at most 1 MiB, plus one 1 MiB run
#      of debt).
# After each phase the recovery image must equal the disk.
. "$(dirname "$0")/lib.sh"
FL_SIZE_MB=${FL_SIZE_MB:-128}
FL_RING=4M
FL_QUEUE_LIMIT=1M
FL_RESYNC_RATE=8M
. "$(dirname "$0")/fault_lib.sh"
rate=$((8 << 20))

fl_setup tcp
fl_start_hub
fl_start_nbdkit
"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout 60 >/dev/null ||
	rf_fail "the initial sync did not finish"

# watch SECONDS: print each change of the volume's state (and what status
# says with it) until it is protected and caught up, for at most SECONDS.
watch() {
	local last="" now line t0
	t0=$(fl_now_ms)
	for _ in $(seq $(($1 * 10))); do
		line=$(rf_status_get '.volumes[0] as $v | .agents[0] as $a |
			"\($v.state) cause=\($v.resync_cause) resend=\($v.resend_bytes) resent=\($v.resent_bytes) congestions=\($a.congestions) congested=\($a.congested)"')
		now=${line%% *}
		if [ -n "$now" ] && [ "$now" != "$last" ]; then
			rf_log "    +$(($(fl_now_ms) - t0)) ms: $line"
			last=$now
		fi
		[ "$now" = protected ] && [ "$(fl_vol caught_up)" = true ] && return 0
		sleep 0.1
	done
	rf_fail "the volume was not protected and caught up within $1 s"
}

rf_log "phase 1: the hub falls behind; the agent's queue overflows"
[ "$(fl_agent congestions) $(fl_vol resyncs)" = "0 0" ] ||
	rf_fail "congestions or resyncs before any congestion: $(fl_agent congestions) $(fl_vol resyncs)"
FL_WRITE_RATE=16m fl_writer_start 60 --bs=64k --iodepth=16
sleep 1
kill -STOP "$fl_hub_pid"
sleep 2
kill -CONT "$fl_hub_pid"
rf_log "  hub stopped 2 s and resumed; the guest kept writing"
rf_wait_for 20 "the hub to see the congestion" rf_status_true '.agents[] | select(.id == "vm1") | .congestions >= 1'
fl_writer_stop
watch 60
fl_quiesce "phase 1 (congestion)"
congestions=$(fl_agent congestions)
[ "$congestions" -ge 1 ] || rf_fail "status shows no congestion"
# "congestion" is a resync begun from protected; last_ once it is done.
[ "$(fl_vol resyncs)" -ge 1 ] || rf_fail "the hub never showed the volume resyncing"
[ "$(fl_vol last_resync_cause)" = congestion ] ||
	rf_fail "no resync after congestion completed (last: $(fl_vol last_resync_cause))"
rf_log "  $(grep -o "the write queue is full.*" "$fl_nbd_log" | head -n1)"
rf_log "  $(grep -o "caught up after congestion.*" "$fl_nbd_log" | tail -n1)"
rf_log "  agent congestions: $congestions; writes left to the bitmap and resent:" \
	"$(fl_vol resent_bytes) bytes"
fl_table

rf_log "phase 2: resync_rate paces the resends"
fl_kill_hub
# 24 MiB in 1 MiB writes, 2 MiB apart: 24 MiB of dirty chunks
cmds=()
for k in $(seq 0 23); do cmds+=(-c "write -P $((k + 1)) $((k * 2 + 1))M 1M"); done
qemu-io -f raw "${cmds[@]}" "$fl_uri" >"$RF_TMP/qemu-io.log" || rf_fail "a guest write failed"
fl_start_hub
rf_wait_for 30 "the resync to start" rf_status_true '.volumes[0].resyncs >= 1'
if [ "$(fl_vol state)" = resyncing ]; then
	rf_log "  repctl status while resyncing:"
	fl_table
fi
watch 60
rf_log "  repctl status once protected again:"
fl_table
ms=$(fl_vol last_resync_ms)
bytes=$(fl_vol last_resync_bytes)
rf_log "  resync after the outage: $bytes bytes resent in $ms ms" \
	"($((bytes * 1000 / (ms > 0 ? ms : 1) / 1024)) KiB/s; resync_rate $((rate >> 10)) KiB/s)"
[ "$bytes" -ge $((24 << 20)) ] || rf_fail "only $bytes bytes were resent, 24 MiB are dirty"
# the bucket's 1 MiB, one run of debt, and a MiB of slack for the clocks
min_ms=$(((bytes - (3 << 20)) * 1000 / rate))
[ "$ms" -ge "$min_ms" ] || rf_fail "the resync took $ms ms, faster than resync_rate allows ($min_ms ms)"
fl_quiesce "phase 2 (paced resync)"
# What is resent here is what overflowed (phase 1) and the 24 MiB written
# on purpose (phase 2): no comparison with the volume size.
fl_report "congestion and paced resync" 2 no-size-check
rf_log "PASS: congestion switched to the bitmap and caught up; resync_rate paced the resends"
