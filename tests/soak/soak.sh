#!/usr/bin/env bash
# The randomized fault soak (issue #15, docs/SOAK.md): one hub (rephubd,
# tcp://, a journal so that failover tests run), one protected disk served
# by nbdkit with the repagent filter at acknowledgement level durable, the
# agent talking to the hub through rf-fault-proxy; a writer (soak.py) that
# stamps every 4 KiB block it writes with its block number and a version;
# a fault scheduler driven by the seed; and a checker:
#   - after each quiesce the recovery image equals the protected disk, and
#     the disk holds exactly what the completed writes say (soak.py check);
#   - at a crash check (hub and agent SIGKILLed, the agent's bitmap deleted:
#     the protected host is gone) the hub, restarted alone, holds every write
#     acknowledged durable, or a later one, in its image or journal;
#   - the hub's RSS and open descriptors, sampled at each quiesce, stay
#     within a bound of the first samples.
#
# Usage: soak.sh --seed N (--minutes M | --seconds S)
# Environment: RF_SOAK_SIZE_MB (32), RF_SOAK_ACK (durable; "async" is the
# control: crash checks then must be able to fail).
# The same seed gives the same fault schedule and the same workload (the
# sequence of requests); how far the writer gets between two faults
# depends on the machine's speed.
. "$(dirname "$0")/../func/lib.sh"

seed=""
secs=""
while [ $# -gt 0 ]; do
	case $1 in
	--seed) seed=$2; shift 2 ;;
	--minutes) secs=$(($2 * 60)); shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	*) rf_fail "usage: soak.sh --seed N (--minutes M | --seconds S)" ;;
	esac
done
[[ $seed =~ ^[0-9]+$ ]] || rf_fail "--seed N (a non-negative integer) is required"
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || rf_fail "--minutes M or --seconds S is required"
minutes_arg=$([ $((secs % 60)) = 0 ] && echo "--minutes $((secs / 60))" || echo "--seconds $secs")
replay="scripts/soak.sh --seed $seed $minutes_arg"

# Debian's python3 (python3-libnbd), not whichever python3 is first in PATH.
PY=${RF_SOAK_PYTHON:-/usr/bin/python3}
rf_require nbdkit jq cmp fallocate
[ -x "$PY" ] && "$PY" -c 'import nbd' 2>/dev/null ||
	rf_fail "$PY cannot import nbd: install the Debian package python3-libnbd (scripts/deps.sh)"
for b in rephubd repctl rf-fault-proxy rf-ring-tear; do
	[ -x "$RF_BIN/$b" ] || rf_fail "$b not built"
done
filter=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$filter" ] || rf_fail "$filter not built"
soakpy=$RF_SOURCE_DIR/tests/soak/soak.py

size=$((${RF_SOAK_SIZE_MB:-32} << 20))
ack=${RF_SOAK_ACK:-durable}

# ---- the seeded generator (a 64-bit LCG; bash's RANDOM is also used by
# lib.sh's port picker, so it cannot be the schedule's source) ------------
rng=$((seed * 2862933555777941757 + 3037000493))
# rnd N: R = a number in [0, N)
rnd() {
	rng=$((rng * 6364136223846793005 + 1442695040888963407))
	R=$((((rng >> 33) & 0x7fffffff) % $1))
}
# rsleep MIN_MS MAX_MS: sleep a seeded random time
rsleep() {
	rnd $(($2 - $1 + 1))
	local ms=$(($1 + R))
	sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}

# ---- set-up --------------------------------------------------------------
ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
RF_HUB=127.0.0.1:$ctl_port
state=$RF_TMP/state
rings=$RF_TMP/rings
disk=$RF_TMP/disk.img
recovery=$state/vm1-disk0.img
bitmap=$RF_TMP/vm1-disk0.bitmap
sock=$RF_TMP/nbd.sock
uri="nbd+unix:///?socket=$sock"
wlog=$RF_TMP/writes.log
mstate=$RF_TMP/model.json
wctl=$RF_TMP/writer
mkdir -p "$state" "$rings" "$wctl"

# The hub's image file system: a size-limited tmpfs, so that "file system
# full" can be injected (needs the right to mount: root, outside a
# restricted container). The rings are elsewhere (a ring is mmap'ed).
fs_full=0
fs_why=""
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=$((size * 2 + (1024 << 20))) rf-soak "$state" 2>"$RF_TMP/mount.err"; then
	fs_full=1
else
	fs_why="cannot mount a tmpfs for the hub's state_dir: $(cat "$RF_TMP/mount.err" 2>/dev/null || echo "not root")"
	rf_log "NOT COVERED: file system full and torn ring records ($fs_why)"
fi
soak_cleanup() {
	local rc=$? pid
	set +e
	for pid in "${RF_PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null; done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		echo "[soak] FAILED (exit $rc): replay with: $replay" >&2
	fi
	if [ "$fs_full" = 1 ]; then
		for pid in "${RF_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
		for pid in "${RF_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
		[ "$rc" -ne 0 ] && cp -a "$state" "$RF_TMP/state.kept" 2>/dev/null
		umount "$state" 2>/dev/null || umount -l "$state"
	fi
	(exit "$rc")
	rf_cleanup
}
trap soak_cleanup EXIT

resync_rate=0
write_conf() {
	cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $RF_HUB
data = tcp://127.0.0.1:$data_port
state_dir = $state
ring_dir = $rings
ring_size = 8M
resync_rate = $resync_rate

[volume vm1-disk0]
recovery = $recovery
journal_time = 2s
journal_size = 64M
CONF
}
write_conf

proxy_ctl=$(rf_free_port)
proxy_data=$(rf_free_port)
fifo=$RF_TMP/proxy.cmd
rf_spawn proxy "$RF_BIN/rf-fault-proxy" --ctl-listen "$proxy_ctl" --ctl-to "$RF_HUB" \
	--data-listen "$proxy_data" --data-to "127.0.0.1:$data_port" --cmd "$fifo"
proxy_pid=$RF_LAST_PID
rf_wait_for 10 "the proxy" grep -q '^listening' "$RF_TMP/proxy.log"
nproxy=0
# proxy CMD: send a command, wait for the proxy to say it did it
proxy() {
	nproxy=$((nproxy + 1))
	echo "$1" >"$fifo"
	rf_wait_for 10 "the proxy to do '$1'" \
		bash -c "[ \$(grep -c '^\\(cut\\|cut-data\\|stall\\|up\\):' '$RF_TMP/proxy.log') -ge $nproxy ]"
}

nhub=0
start_hub() {
	nhub=$((nhub + 1))
	rf_spawn "hub$nhub" "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
	hub_pid=$RF_LAST_PID
	hub_log=$RF_TMP/hub$nhub.log
	rf_wait_port "$ctl_port" 30
}
kill_hub() {
	kill -KILL "$hub_pid" 2>/dev/null || true
	wait "$hub_pid" 2>/dev/null || true
}
nnbd=0
start_nbdkit() {
	nnbd=$((nnbd + 1))
	rm -f "$sock"
	rf_spawn "nbdkit$nnbd" nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
		repagent-hub="127.0.0.1:$proxy_ctl" repagent-volume=vm1-disk0 \
		repagent-bitmap="$bitmap" repagent-agent-id=vm1 \
		repagent-ack="$ack" repagent-ack-timeout=30000
	nbd_pid=$RF_LAST_PID
	nbd_log=$RF_TMP/nbdkit$nnbd.log
	rf_wait_for 30 "nbdkit socket" test -S "$sock"
}
kill_nbdkit() {
	kill -KILL "$nbd_pid" 2>/dev/null || true
	kill -CONT "$nbd_pid" 2>/dev/null || true
	wait "$nbd_pid" 2>/dev/null || true
}
synced() {
	"$RF_BIN/repctl" --hub "$RF_HUB" wait vm1-disk0 --synced --timeout 180 >/dev/null ||
		rf_fail "$1: the volume did not converge within 180 s"
}
journal_empty() { rf_status_true '.volumes[0].journal.entries == 0'; }
# fallback lines and caught-up lines in the running agent's log
fallbacks() { grep -c "falling back from durable to async" "$nbd_log" || true; }
catchups() { grep -c "caught up: durable acknowledgements again" "$nbd_log" || true; }
agent_durable() { [ "$(fallbacks)" = "$(catchups)" ]; }

"$PY" "$soakpy" init --disk "$disk" --size "$size" --seed "$seed"
start_hub
start_nbdkit
synced "initial sync"
rf_spawn writer "$PY" "$soakpy" writer --uri "$uri" --size "$size" --seed "$seed" \
	--log "$wlog" --ctl "$wctl"
writer_pid=$RF_LAST_PID
rf_log "seed $seed, ${secs}s; $((size >> 20)) MiB volume, ack $ack, tcp:// through the" \
	"fault proxy, journal 2s; $([ $fs_full = 1 ] && echo "state_dir on a $((size * 2 / 1048576 + 1024)) MiB tmpfs" || echo "no tmpfs")"

# ---- faults --------------------------------------------------------------
declare -A nfault=()
count() { nfault[$1]=$((${nfault[$1]:-0} + 1)); }
note() { echo "$(date +%H:%M:%S.%N | cut -c1-12) $*" >>"$RF_TMP/faults.log"; }

f_hub_kill() {
	kill_hub
	rsleep 0 1000
	start_hub
	count hub-kill
}
f_agent_kill() {
	kill_nbdkit
	rsleep 0 1000
	start_nbdkit
	count agent-kill
}
f_hub_pause() {
	kill -STOP "$hub_pid"
	rsleep 200 2500
	kill -CONT "$hub_pid"
	count hub-pause
}
f_agent_pause() {
	kill -STOP "$nbd_pid"
	rsleep 200 2500
	kill -CONT "$nbd_pid"
	count agent-pause
}
f_net_cut() {
	proxy cut
	rsleep 200 1500
	proxy up
	count net-cut
}
f_net_cut_data() {
	proxy cut-data
	count net-cut-data
}
f_net_stall() {
	proxy stall
	rsleep 300 2500
	proxy up
	count net-stall
}
f_sighup() {
	local before
	before=$(rf_hub_field reloads)
	[ -n "$before" ] || before=0
	# a reloadable setting changes each time
	resync_rate=$([ "$resync_rate" = 0 ] && echo 256M || echo 0)
	write_conf
	kill -HUP "$hub_pid"
	rf_wait_for 15 "the hub to reload" rf_status_true --argjson n "$before" '.hub.reloads > $n'
	count sighup
}
# Fill the hub's file system: the drain's journal appends fail with ENOSPC
# and replication stalls (writes wait, at most the ack timeout); nothing is
# lost when space returns.
ballast=$state/ballast
fill_fs() {
	local avail
	avail=$(df --output=avail -B1 "$state" | tail -n1 | tr -d ' ')
	fallocate -l "$avail" "$ballast" 2>/dev/null || true
	# whatever is left (tmpfs rounds): fill it with zeros
	dd if=/dev/zero of="$state/ballast2" bs=4k 2>/dev/null || true
}
unfill_fs() { rm -f "$ballast" "$state/ballast2"; }
enospc_seen() { grep -q "No space left on device" "$hub_log"; }
enospc_lines() { cat "$RF_TMP"/hub*.log | grep -c "No space left on device" || true; }
f_fs_full() {
	local n0
	n0=$(enospc_lines)
	fill_fs
	# the next record the drain applies hits ENOSPC (the writer keeps writing)
	for _ in $(seq 100); do [ "$(enospc_lines)" -gt "$n0" ] && break; sleep 0.1; done
	rsleep 500 3000
	unfill_fs
	if [ "$(enospc_lines)" -gt "$n0" ]; then count fs-full; else count fs-full-unnoticed; fi
}
# A torn (or corrupt) record in the hub's ring: the file system is full, so
# records land in the ring but are not applied; the hub is SIGKILLed,
# rf-ring-tear damages the record in the middle of what landed, space
# returns and the hub restarts: it applies the valid prefix and the agent
# resends what was not made durable.
f_torn() {
	local mode n out
	rnd 2
	mode=$([ "$R" = 0 ] && echo torn || echo crc)
	fill_fs
	for _ in $(seq 100); do
		n=$("$RF_BIN/rf-ring-tear" --mode count "$rings/vm1.ring" 2>/dev/null || echo 0)
		[ "$n" -ge 4 ] && break
		sleep 0.1
	done
	kill_hub
	if out=$("$RF_BIN/rf-ring-tear" --mode "$mode" "$rings/vm1.ring" 2>&1); then
		note "  $out"
		count "torn-ring($mode)"
	else
		note "  no record to tear: $out"
		count torn-ring-nothing-landed
	fi
	unfill_fs
	start_hub
	if [[ $out == tore* ]]; then
		rf_wait_for 15 "the hub to report the damaged record" grep -q "its ring ends in a" "$hub_log"
	fi
}
# A failover test (journal view at the newest point) and the hub SIGKILLed
# while it runs: the restarted hub has no test (the scratch is not durable),
# the journal is applied again, replication goes on.
f_failover_test() {
	local out
	if ! out=$("$RF_BIN/repctl" --hub "$RF_HUB" test-failover start vm1-disk0 --at latest 2>&1); then
		note "  test-failover start refused: $out"
		count failover-test-refused
		return 0
	fi
	rsleep 200 1500
	rf_status_true '.volumes[0].journal.paused == true' ||
		rf_fail "a failover test runs but the journal is not paused"
	kill_hub
	rsleep 0 500
	start_hub
	if "$RF_BIN/repctl" --hub "$RF_HUB" test-failover stop vm1-disk0 >"$RF_TMP/ft.out" 2>&1; then
		rf_fail "the failover test survived a hub restart"
	fi
	grep -q "no failover test is running" "$RF_TMP/ft.out" ||
		rf_fail "test-failover stop after the restart: $(cat "$RF_TMP/ft.out")"
	count failover-test-hub-restart
}

kinds_all=(hub-kill agent-kill hub-pause agent-pause net-cut net-cut-data net-stall sighup failover-test)
# faults after which every completion is still a durable acknowledgement
# (nothing breaks the link; each lasts far less than the 30 s ack timeout)
kinds_safe=(hub-pause agent-pause net-stall sighup)
if [ "$fs_full" = 1 ]; then
	kinds_all+=(fs-full torn-ring)
	kinds_safe+=(fs-full)
fi

inject() {
	note "fault $1 (hub pid $hub_pid, nbdkit pid $nbd_pid)"
	case $1 in
	hub-kill) f_hub_kill ;;
	agent-kill) f_agent_kill ;;
	hub-pause) f_hub_pause ;;
	agent-pause) f_agent_pause ;;
	net-cut) f_net_cut ;;
	net-cut-data) f_net_cut_data ;;
	net-stall) f_net_stall ;;
	sighup) f_sighup ;;
	fs-full) f_fs_full ;;
	torn-ring) f_torn ;;
	failover-test) f_failover_test ;;
	*) rf_fail "unknown fault $1" ;;
	esac
}

# ---- checks --------------------------------------------------------------
writer_pause() {
	touch "$wctl/pause"
	for _ in $(seq 1200); do
		[ -f "$wctl/paused" ] && return 0
		kill -0 "$writer_pid" 2>/dev/null || rf_fail "the writer died"
		sleep 0.1
	done
	rf_fail "the writer did not pause within 120 s"
}
writer_resume() { rm -f "$wctl/pause"; }

nquiesce=0
samples=$RF_TMP/samples.txt
: >"$samples"
t0=$(date +%s)
quiesce() {
	local out rss fds
	writer_pause
	synced "quiesce $((nquiesce + 1))"
	rf_wait_for 60 "the journal to be applied to the image" journal_empty
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$hub_pid/status")
	fds=$(find "/proc/$hub_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
	echo "$(($(date +%s) - t0)) $nhub $rss $fds" >>"$samples"
	out=$("$PY" "$soakpy" check --log "$wlog" --state "$mstate" --seed "$seed" --size "$size" \
		--disk "$disk" --image "$recovery") || {
		echo "$out"
		rf_fail "quiesce $((nquiesce + 1)): VIOLATION: $out"
	}
	nquiesce=$((nquiesce + 1))
	note "quiesce $nquiesce: $out (hub RSS ${rss} kB, $fds fds)"
	writer_resume
	# After a fallback the agent returns to durable acknowledgements only
	# once a write queued after it is durable: the writer writes (those
	# completions are not claimed durable), then the window of the next
	# crash check starts at the log's length once the agent says so.
	rf_wait_for 60 "the agent to acknowledge at durable again" agent_durable
	claim_from=$(stat -c %s "$wlog")
	fb0=$(fallbacks)
}

# The protected host is lost: the agent is frozen (no write completes from
# here on), the log's length is taken, the hub and the agent are SIGKILLed,
# the bitmap is deleted. The hub restarts alone and applies its ring and its
# journal; every write completed before the freeze must be in its image.
# The crash comes at a quiet moment, or while replication is held up (the
# hub stopped, the network stalled, the hub's file system full): what the
# agent acknowledges then without the hub would be lost.
ncrash=0
ncrash_noclaim=0
crash_check() {
	local upto out during kind=host-crash
	rnd 4
	during=$R
	[ "$during" = 3 ] && [ "$fs_full" = 0 ] && during=0
	case $during in
	1) kill -STOP "$hub_pid"; kind=host-crash-during-hub-pause ;;
	2) proxy stall; kind=host-crash-during-net-stall ;;
	3) fill_fs; kind=host-crash-during-fs-full ;;
	esac
	[ "$during" = 0 ] || rsleep 300 1500
	kill -STOP "$nbd_pid"
	upto=$(stat -c %s "$wlog")
	if [ "$ack" = durable ] && [ "$(fallbacks)" != "$fb0" ]; then
		# a completion since the last quiesce may have been a fallback:
		# no durable claim to check (the 30 s timeout makes this rare)
		upto=""
	fi
	note "$kind: log cut at byte $upto, durable claims from byte $claim_from"
	kill_hub
	kill_nbdkit
	case $during in
	2) proxy up ;;
	3) unfill_fs ;;
	esac
	writer_pause
	rm -f "$bitmap"
	start_hub
	rf_wait_for 60 "the restarted hub to apply its journal" journal_empty
	if [ -n "$upto" ]; then
		out=$("$PY" "$soakpy" check --log "$wlog" --state "$mstate" --seed "$seed" \
			--size "$size" --image "$recovery" --upto "$upto" --from "$claim_from") || {
			echo "$out"
			rf_fail "crash check $((ncrash + 1)): VIOLATION: $out"
		}
		ncrash=$((ncrash + 1))
		note "crash check $ncrash: $out"
	else
		ncrash_noclaim=$((ncrash_noclaim + 1))
		note "crash without a durable claim (the agent fell back since the last quiesce)"
	fi
	# a new protected host with the same disk: no bitmap, a full sync
	start_nbdkit
	synced "the full sync after crash check $ncrash"
	writer_resume
	count "$kind"
}

# ---- the run -------------------------------------------------------------
quiesce
end=$((t0 + secs))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	rnd 4
	nf=$((3 + R))
	rnd 3
	crash=$([ "$R" = 0 ] && echo 1 || echo 0)
	note "round $round: $nf faults$([ "$crash" = 1 ] && echo ", then a crash check")"
	for _ in $(seq "$nf"); do
		rsleep 300 2500
		rf_alive "$writer_pid"
		if [ "$crash" = 1 ]; then
			rnd ${#kinds_safe[@]}
			inject "${kinds_safe[$R]}"
		else
			rnd ${#kinds_all[@]}
			inject "${kinds_all[$R]}"
		fi
		[ "$(date +%s)" -lt "$end" ] || break
	done
	if [ "$crash" = 1 ]; then
		rsleep 300 1500
		crash_check
	fi
	quiesce
done

touch "$wctl/stop"
writer_resume
for _ in $(seq 300); do kill -0 "$writer_pid" 2>/dev/null || break; sleep 0.1; done
wait "$writer_pid" 2>/dev/null || rf_fail "the writer failed: $(tail -n 3 "$RF_TMP/writer.log")"
wsum=$(tail -n 1 "$RF_TMP/writer.log")
stats=$("$PY" "$soakpy" stats --state "$mstate")

# The hub's memory and descriptors: flat. The first three samples set the
# bound (taken after the initial sync and the first faults); every sample
# must stay under 1.5x their largest RSS + 16 MiB, and their largest fd
# count + 16.
read -r rss_base fds_base < <(head -n 3 "$samples" | awk 'BEGIN {r = 0; f = 0}
	{if ($3 > r) r = $3; if ($4 > f) f = $4} END {print r, f}')
read -r rss_max fds_max rss_min fds_min < <(awk 'NR == 1 {r = $3; f = $4; rm = $3; fm = $4}
	{if ($3 > r) r = $3; if ($4 > f) f = $4; if ($3 < rm) rm = $3; if ($4 < fm) fm = $4}
	END {print r, f, rm, fm}' "$samples")
rss_bound=$((rss_base * 3 / 2 + 16384))
fds_bound=$((fds_base + 16))

total=0
for k in "${!nfault[@]}"; do total=$((total + nfault[$k])); done
{
	echo "soak summary: seed $seed, $((secs / 60)) min $((secs % 60)) s, $((size >> 20)) MiB volume, ack $ack"
	echo "  faults injected: $total in $round rounds (at least one every 2.5 s of writing)"
	for k in $(printf '%s\n' "${!nfault[@]}" | sort); do
		printf '    %-28s %d\n' "$k" "${nfault[$k]}"
	done
	[ "$fs_full" = 1 ] || echo "    NOT COVERED: fs-full, torn-ring ($fs_why)"
	echo "  workload: $wsum"
	echo "  checked: $(jq -r '"\(.writes) completed writes and zeroes, \(.bytes) bytes (trims: old data or zeros allowed); \(.quiesces) quiesces (image == disk == the writes); \(.crash_checks) crash checks over \(.acked_in_crash_checks) durable-acknowledged requests"' <<<"$stats")"
	echo "  crashes without a durable claim (the agent had fallen back): $ncrash_noclaim"
	echo "  hub RSS kB: first $rss_base, min $rss_min, max $rss_max (bound $rss_bound); fds: first $fds_base, min $fds_min, max $fds_max (bound $fds_bound); $(wc -l <"$samples") samples, $nhub hub processes"
} | tee "$RF_TMP/summary.txt"
[ "$rss_max" -le "$rss_bound" ] || rf_fail "the hub's RSS grew: max $rss_max kB > $rss_bound kB (samples: $(tr '\n' ';' <"$samples"))"
[ "$fds_max" -le "$fds_bound" ] || rf_fail "the hub's descriptors grew: max $fds_max > $fds_bound (samples: $(tr '\n' ';' <"$samples"))"
[ "$(jq .quiesces <<<"$stats")" -ge 2 ] || rf_fail "fewer than 2 quiesces were checked"
[ "$total" -gt 0 ] || rf_fail "no fault was injected"
if [ -n "${RF_SOAK_SUMMARY:-}" ]; then cp "$RF_TMP/summary.txt" "$RF_SOAK_SUMMARY"; fi
echo "  lost = 0"
