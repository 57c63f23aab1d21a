# Shared helpers of the fault tests (fault_*.sh), sourced after lib.sh:
# one hub (rephubd), one protected disk served by nbdkit with the repagent
# filter, a random-write load (fio, nbd engine), SIGKILLs, and the figures
# every scenario prints: bytes written, bytes resent, time to converge.
#
#   fl_setup TRANSPORT       tcp | shm | rdma (addresses, hub.conf, disk)
#     knobs (set before): FL_SIZE_MB (64), FL_RING (8M), FL_RESYNC_RATE (0),
#     FL_PROXY=1 (the agent talks to the hub through rf-fault-proxy, tcp),
#     FL_QUEUE_LIMIT (nbdkit's repagent-queue-limit, default the filter's)
#   fl_start_hub / fl_kill_hub / fl_start_nbdkit / fl_kill_nbdkit
#   fl_writer_start SECONDS [FIO ARGS...] / fl_writer_stop (fio)
#   fl_qwriter_start / fl_qwriter_stop (qemu-io batches: survives nbdkit kills)
#   fl_quiesce WHAT          wait --synced, then the image must equal the disk
#   fl_report WHAT ITERATIONS prints the figures, checks resent << size
rf_require nbdkit fio qemu-io jq cmp
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
[ -x "$RF_BIN/repctl" ] || rf_fail "repctl not built"
FL_FILTER=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$FL_FILTER" ] || rf_fail "$FL_FILTER not built"

FL_SIZE_MB=${FL_SIZE_MB:-64}
FL_RING=${FL_RING:-8M}
FL_RESYNC_RATE=${FL_RESYNC_RATE:-0}
FL_PROXY=${FL_PROXY:-0}
# Waits are multiplied by FL_SLOW: inside the TCG VM the guest's clock runs
# several times faster than its programs do.
FL_SLOW=${FL_SLOW:-1}
fl_secs() { echo $(($1 * FL_SLOW)); }
fl_nhub=0
fl_nnbd=0
fl_written=0

fl_now_ms() { echo $(($(date +%s%N) / 1000000)); }
# fl_rsleep MIN_MS MAX_MS: sleep a random time in [MIN, MAX] ms.
fl_rsleep() {
	local ms=$(($1 + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1)))
	sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}

fl_setup() {
	fl_transport=$1
	fl_ctl_port=$(rf_free_port)
	fl_hub=127.0.0.1:$fl_ctl_port # repctl always talks to the hub itself
	RF_HUB=$fl_hub                # lib.sh's status helpers
	fl_agent_hub=$fl_hub          # the agent may go through the proxy
	local ring_dir=""
	case $fl_transport in
	tcp)
		fl_data_port=$(rf_free_port)
		while [ "$fl_data_port" = "$fl_ctl_port" ]; do fl_data_port=$(rf_free_port); done
		fl_data=tcp://127.0.0.1:$fl_data_port
		;;
	shm) fl_data=shm://$RF_TMP/hub.sock ;;
	rdma)
		fl_data=rdma://${RF_RDMA_ADDR:-10.0.2.15}:$(rf_free_port)
		ring_dir="ring_dir = /dev/shm/rf-fault-rings"
		;;
	*) rf_fail "unknown transport $fl_transport" ;;
	esac
	fl_state=$RF_TMP/state
	fl_ring_dir=$fl_state/rings
	[ -n "$ring_dir" ] && fl_ring_dir=/dev/shm/rf-fault-rings
	fl_disk=$RF_TMP/disk.img
	fl_bitmap=$RF_TMP/vm1-disk0.bitmap
	fl_recovery=$fl_state/vm1-disk0.img
	fl_sock=$RF_TMP/nbd.sock
	fl_uri="nbd+unix:///?socket=$fl_sock"
	mkdir -p "$fl_state"
	cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $fl_hub
data = $fl_data
state_dir = $fl_state
$ring_dir
ring_size = $FL_RING
resync_rate = $FL_RESYNC_RATE

[volume vm1-disk0]
recovery = $fl_recovery
CONF
	head -c "$((FL_SIZE_MB << 20))" /dev/urandom >"$fl_disk"
	fl_size=$((FL_SIZE_MB << 20))
	if [ "$FL_PROXY" = 1 ]; then
		[ "$fl_transport" = tcp ] || rf_fail "the proxy needs tcp"
		[ -x "$RF_BIN/rf-fault-proxy" ] || rf_fail "rf-fault-proxy not built"
		local pc pd
		pc=$(rf_free_port)
		pd=$(rf_free_port)
		fl_fifo=$RF_TMP/proxy.cmd
		rf_spawn proxy "$RF_BIN/rf-fault-proxy" --ctl-listen "$pc" --ctl-to "$fl_hub" \
			--data-listen "$pd" --data-to "127.0.0.1:$fl_data_port" --cmd "$fl_fifo"
		fl_proxy_pid=$RF_LAST_PID
		rf_wait_for 10 "the proxy" grep -q '^listening' "$RF_TMP/proxy.log"
		fl_agent_hub=127.0.0.1:$pc
	fi
	rf_log "disk: $FL_SIZE_MB MiB of random data; data path $fl_data;" \
		"ring $FL_RING; resync_rate $FL_RESYNC_RATE$([ "$FL_PROXY" = 1 ] && echo "; through rf-fault-proxy")"
}

fl_start_hub() {
	fl_nhub=$((fl_nhub + 1))
	rf_spawn "hub$fl_nhub" "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
	fl_hub_pid=$RF_LAST_PID
	rf_wait_port "$fl_ctl_port" "$(fl_secs 20)"
}

fl_kill_hub() {
	kill -KILL "$fl_hub_pid" 2>/dev/null || true
	wait "$fl_hub_pid" 2>/dev/null || true
}

# fl_start_nbdkit [VOLUME [BITMAP]]: the protected disk, through the filter.
fl_start_nbdkit() {
	local vol=${1:-vm1-disk0} bm=${2:-$fl_bitmap} ql=()
	[ -n "${FL_QUEUE_LIMIT:-}" ] && ql=(repagent-queue-limit="$FL_QUEUE_LIMIT")
	fl_nnbd=$((fl_nnbd + 1))
	rm -f "$fl_sock"
	rf_spawn "nbdkit$fl_nnbd" nbdkit -f -v -U "$fl_sock" --filter="$FL_FILTER" file "$fl_disk" \
		repagent-hub="$fl_agent_hub" repagent-volume="$vol" repagent-bitmap="$bm" \
		repagent-agent-id=vm1 "${ql[@]}"
	fl_nbd_pid=$RF_LAST_PID
	fl_nbd_log=$RF_TMP/nbdkit$fl_nnbd.log
	rf_wait_for "$(fl_secs 20)" "nbdkit socket" test -S "$fl_sock"
}

fl_kill_nbdkit() {
	kill -KILL "$fl_nbd_pid" 2>/dev/null || true
	wait "$fl_nbd_pid" 2>/dev/null || true
}

fl_stop_nbdkit() {
	kill -TERM "$fl_nbd_pid" 2>/dev/null || true
	wait "$fl_nbd_pid" 2>/dev/null || true
}

# fl_writer_start SECONDS [FIO ARGS...]: random writes (4k..64k, 8 in flight,
# rate-capped so that a 2-core machine keeps its balance) until SECONDS pass
# or fl_writer_stop. A skewed (zipf) offset distribution, as real disks see.
fl_nwriter=0
fl_writer_start() {
	local secs=$1
	shift
	fl_nwriter=$((fl_nwriter + 1))
	fl_fio_json=$RF_TMP/fio$fl_nwriter.json
	rf_spawn "fio$fl_nwriter" fio --output="$fl_fio_json" --output-format=json \
		--ioengine=nbd --uri="$fl_uri" --name=guest --rw=randwrite --bsrange=4k-64k \
		--iodepth=8 --size="${FL_SIZE_MB}M" --random_distribution=zipf:1.1 \
		--rate="${FL_WRITE_RATE:-8m}" --time_based --runtime="$secs" "$@"
	fl_fio_pid=$RF_LAST_PID
}

# fl_fio_json FILE: fio's JSON (an interrupted fio prints a line before it).
fl_fio_json() { sed -n '/^{/,$p' "$1" 2>/dev/null; }
# Bytes fio wrote (also after it was interrupted).
fl_fio_bytes() { fl_fio_json "$1" | jq '[.jobs[].write.io_bytes] | add // 0' 2>/dev/null || echo 0; }

# fl_writer_stop [expect-failure]: interrupt fio (it exits 128 then), check
# that no write failed, count what it wrote.
fl_writer_stop() {
	local rc=0 b errs
	kill -INT "$fl_fio_pid" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$fl_fio_pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$fl_fio_pid" 2>/dev/null; then
		rf_log "fio did not stop within 15 s of SIGINT; killing it"
		kill -KILL "$fl_fio_pid" 2>/dev/null || true
	fi
	wait "$fl_fio_pid" 2>/dev/null || rc=$?
	errs=$(fl_fio_json "$fl_fio_json" | jq '[.jobs[].error] | add // 1' 2>/dev/null || echo 1)
	if { [ "$rc" -ne 0 ] && [ "$rc" -ne 128 ]; } || [ "$errs" != 0 ]; then
		[ "${1:-}" = expect-failure ] ||
			rf_fail "fio failed (exit $rc, job errors $errs): a guest write failed"
	fi
	b=$(fl_fio_bytes "$fl_fio_json")
	fl_written=$((fl_written + b))
}

# A guest whose writes die with nbdkit: fio's nbd engine hangs (and ignores
# SIGINT) when its server is SIGKILLed, so the agent-kill scenarios write
# with qemu-io instead: batches of 16 random writes (4..64 KiB, 3 of 4 in
# the first eighth of the disk: a hot spot), a pause of FL_QW_PAUSE (0.3 s)
# between batches. A batch that fails (nbdkit died under it) is not
# counted; the loop goes on with the next nbdkit.
fl_qwriter_loop() {
	local out=$1 hot=$((fl_size / 8)) off len n cmds
	while :; do
		cmds=()
		n=0
		for _ in $(seq 16); do
			len=$(((RANDOM % 16 + 1) * 4096))
			if [ $((RANDOM % 4)) -ne 0 ]; then
				off=$(((RANDOM * 32768 + RANDOM) % (hot - len) / 4096 * 4096))
			else
				off=$(((RANDOM * 32768 + RANDOM) % (fl_size - len) / 4096 * 4096))
			fi
			cmds+=(-c "write -P $((RANDOM % 256)) $off $len")
			n=$((n + len))
		done
		if qemu-io -f raw "${cmds[@]}" "$fl_uri" >/dev/null 2>&1; then
			echo "$n" >>"$out"
		fi
		sleep "${FL_QW_PAUSE:-0.3}"
	done
}
fl_nqw=0
fl_qwriter_start() {
	fl_nqw=$((fl_nqw + 1))
	fl_qw_bytes=$RF_TMP/qwriter$fl_nqw.bytes
	: >"$fl_qw_bytes"
	rf_spawn "qwriter$fl_nqw" fl_qwriter_loop "$fl_qw_bytes"
	fl_qw_pid=$RF_LAST_PID
}
fl_qwriter_stop() {
	local b
	kill -TERM "$fl_qw_pid" 2>/dev/null || true
	wait "$fl_qw_pid" 2>/dev/null || true
	b=$(awk '{s += $1} END {print s + 0}' "$fl_qw_bytes")
	fl_written=$((fl_written + b))
}

# fl_vol FIELD, fl_agent FIELD: a field of the volume, of agent vm1, in the
# hub's status ("" if unreachable).
fl_vol() { rf_status_get ".volumes[0].$1"; }
fl_agent() { rf_agent_field vm1 "$1"; }

# fl_quiesce WHAT: every fault healed, writes stopped: the volume converges
# and the recovery image equals the disk. Sets fl_converge_ms.
fl_quiesce() {
	local t0 t1
	t0=$(fl_now_ms)
	"$RF_BIN/repctl" --hub "$fl_hub" wait vm1-disk0 --synced --timeout "$(fl_secs 120)" ||
		rf_fail "$1: the volume did not converge"
	t1=$(fl_now_ms)
	fl_converge_ms=$((t1 - t0))
	cmp "$fl_disk" "$fl_recovery" || rf_fail "$1: the recovery image differs from the disk"
	rf_log "$1: recovery image byte-identical to the disk (converged in $fl_converge_ms ms)"
}

# fl_report WHAT ITERATIONS [no-size-check|per-outage]: the figures; bytes
# resent must stay far below the volume size (at most a quarter), where a
# full sync after each outage would have sent ITERATIONS times the volume.
# per-outage: the average per outage must (the VM, where TCG stretches an
# outage to many seconds of guest writes).
fl_report() {
	local what=$1 iters=$2 resent
	resent=$(fl_vol resent_bytes)
	rf_log "$what: $iters iterations, $fl_written bytes written by the guest," \
		"$resent bytes resent ($((resent * 100 / fl_size))% of the $fl_size-byte volume;" \
		"a full sync per outage: $((iters * fl_size)) bytes)," \
		"converged in $fl_converge_ms ms after the last fault"
	[ "$resent" -gt 0 ] || rf_fail "$what: nothing was resent: the faults did not bite"
	case ${3:-} in
	no-size-check) ;;
	per-outage)
		[ $((resent * 4 / iters)) -le "$fl_size" ] ||
			rf_fail "$what: $((resent / iters)) bytes resent per outage is not far below" \
				"the volume size $fl_size"
		;;
	*)
		[ $((resent * 4)) -le "$fl_size" ] ||
			rf_fail "$what: $resent bytes resent is not far below the volume size $fl_size"
		;;
	esac
}

# fl_table: repctl status, for the reader.
fl_table() { "$RF_BIN/repctl" --hub "$fl_hub" status | sed 's/^/    /'; }
