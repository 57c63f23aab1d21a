#!/usr/bin/env bash
# Network outages between the agent and the hub, under random guest writes:
# rf-fault-proxy sits on both of the agent's connections (control, and data
# through the rewritten data URL) and, RF_FAULT_NET_CUTS times (6), resets
# them all and refuses new ones for a while ("cut"), or resets only the data
# connection ("cut-data"); then it stops forwarding for 3 s without closing
# anything ("stall": the queue and the ring fill, the guest goes on). The
# agent resends what its bitmap says the hub does not have. After the last
# fault and a quiesce the recovery image must equal the disk, and the bytes
# resent must be far below the volume size.
. "$(dirname "$0")/lib.sh"
FL_SIZE_MB=${FL_SIZE_MB:-256}
FL_WRITE_RATE=${FL_WRITE_RATE:-2m}
FL_PROXY=1
FL_QUEUE_LIMIT=2M
. "$(dirname "$0")/fault_lib.sh"

cuts=${RF_FAULT_NET_CUTS:-6}
fl_setup tcp
fl_start_hub
fl_start_nbdkit
"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout 60 >/dev/null ||
	rf_fail "the initial sync did not finish"
rf_log "initial sync done through the proxy; $cuts cuts under random writes"

# proxy CMD: send a command and wait for the proxy to say it did it.
nproxy=0
proxy() {
	nproxy=$((nproxy + 1))
	echo "$1" >"$fl_fifo"
	rf_wait_for 10 "the proxy to do '$1'" \
		bash -c "[ \$(grep -c '^\\(cut\\|cut-data\\|stall\\|up\\):' '$RF_TMP/proxy.log') -ge $nproxy ]"
	tail -n1 "$RF_TMP/proxy.log"
}

fl_writer_start 300
start=$(fl_now_ms)
attached() { [ "$(fl_agent attached)" = true ]; }
for i in $(seq "$cuts"); do
	# at a random moment once the agent is back (resyncing or mirroring)
	rf_wait_for 30 "the agent to attach again" attached
	fl_rsleep 300 1500
	rf_alive "$fl_fio_pid"
	state=$(fl_vol state)
	if [ $((i % 3)) = 0 ]; then
		what=$(proxy cut-data)
	else
		what=$(proxy cut)
		fl_rsleep 200 900 # the link stays down, the guest writes
		proxy up >/dev/null
	fi
	case $what in
	*": 0 "*) rf_fail "cut $i: the proxy had no connection to cut ($what)" ;;
	esac
	rf_log "  cut $i (volume $state): $what"
done
rf_wait_for 30 "the agent to attach again" attached
sleep 1
what=$(proxy stall)
rf_log "  stall: $what; 3 s without forwarding a byte"
sleep 3
proxy up >/dev/null
rf_alive "$fl_fio_pid"
rf_alive "$fl_nbd_pid"
rf_alive "$fl_proxy_pid"
sleep 1
fl_writer_stop
rf_log "guest writes stopped after $((($(fl_now_ms) - start) / 1000)) s; quiescing"
fl_quiesce "after $cuts cuts and a stall"
fl_table
fl_report "network cuts" "$((cuts + 1))"
reconnects=$(grep -c "disconnected from hub" "$fl_nbd_log" || true)
[ "$reconnects" -ge "$cuts" ] || rf_fail "the agent noticed $reconnects of $cuts cuts"
rf_log "PASS: $cuts network cuts and a stall, the agent reconnected $reconnects times, nothing lost"
