#!/usr/bin/env bash
# Acknowledgement levels `durable` and `landed` (docs/DURABILITY.md), over
# tcp:// with nbdkit + the repagent filter (repagent-ack=LEVEL, the second
# argument, default durable; a third, POLL_US, sets the hub's poll_us and
# the filter's repagent-poll-us, default 0), under the hub's rule
# `apply` (argument apply, the default: durable once applied and synced) or
# `pmem` (argument pmem: durability = pmem on an ordinary ring file, durable
# once validated and flushed in the ring, replayed after the kill):
#   1. nothing completed is lost: qemu-io writes 64 KiB to distinct slots,
#      one at a time, and prints each write as it completes; the hub is
#      SIGKILLed in the middle and then the agent too, with its bitmap
#      deleted (the protected host is gone: nothing can be resent). Every
#      write printed before the hub was killed is in the recovery image
#      after the hub restarts alone. (With repagent-ack=async this check
#      fails: RF_ACK_LEVEL=async shows it.)
#      At level landed the same holds: a record that landed is in the
#      ring's file mapping, which outlives the hub's process, and the hub
#      replays it at restart (a power cut is another matter: powercut_pmem).
#   2. the hub stopped (SIGSTOP): guest writes keep completing (each waits
#      at most repagent-ack-timeout), the volume falls back to async, and
#      after SIGCONT it converges, returns to its level, and the replica is
#      identical. (Over tcp the hub's process reads the doorbell, so a
#      stopped hub answers no LANDED either.)
. "$(dirname "$0")/lib.sh"

rf_require nbdkit qemu-io cmp stdbuf jq
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$filter" ] || rf_fail "$filter not built"
rule=${1:-apply}
level=${RF_ACK_LEVEL:-${2:-durable}}
poll_us=${3:-0}
case $rule in
apply) ring_conf="" ;;
pmem)
	# Not persistent memory: forced, so a SIGKILL (not a power cut) is the
	# crash this variant survives; the page cache keeps the ring's file.
	ring_conf="ring_dir = $RF_TMP/rings
durability = pmem"
	;;
*) rf_fail "usage: ack_durable.sh [apply|pmem] [durable|landed|async] [POLL_US]" ;;
esac

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
disk=$RF_TMP/disk.img
recovery=$RF_TMP/state/vm1-disk0.img
sock=$RF_TMP/nbd.sock
uri="nbd+unix:///?socket=$sock"
RF_HUB="127.0.0.1:$ctl_port"
mkdir -p "$RF_TMP/state"
cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $RF_HUB
data = tcp://127.0.0.1:$data_port
state_dir = $RF_TMP/state
ring_size = 16M
poll_us = $poll_us
$ring_conf

[volume vm1-disk0]
recovery = $recovery
CONF
head -c $((64 << 20)) /dev/urandom >"$disk"

nhub=0
start_hub() {
	nhub=$((nhub + 1))
	rf_spawn "hub$nhub" "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
	hub_pid=$RF_LAST_PID
	rf_wait_port "$ctl_port" 20
}
nnbd=0
start_nbdkit() {
	nnbd=$((nnbd + 1))
	rm -f "$sock"
	rf_spawn "nbdkit$nnbd" nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
		repagent-hub="$RF_HUB" repagent-volume=vm1-disk0 repagent-bitmap="$RF_TMP/vm1.bitmap" \
		repagent-ack="$level" repagent-ack-timeout=1000 repagent-poll-us="$poll_us"
	nbd_pid=$RF_LAST_PID
	rf_wait_for 20 "nbdkit socket" test -S "$sock"
}
synced() {
	"$RF_BIN/repctl" --hub "$RF_HUB" wait vm1-disk0 --synced --timeout 90 >/dev/null ||
		rf_fail "$1: not synced"
}
# qemu-io commands: write pattern (i % 250 + 1) to 64 KiB slot i, for i in [from, to).
slot_writes() {
	local i
	for ((i = $1; i < $2; i++)); do
		printf -- '-c\0write -P %d %d 64k\0' $((i % 250 + 1)) $((i * 65536))
	done
}

rf_log "phase 1 ($level, rule $rule, poll ${poll_us} us): hub killed under writes, then the agent; completed writes survive"
start_hub
start_nbdkit
synced "initial sync"
[ "$(rf_agent_field "$(rf_status_get '.agents[0].id')" durability)" = "$rule" ] ||
	rf_fail "the ring does not use rule $rule: $(rf_status_get '.agents[0] | .durability, .durability_why')"
# --check-config says the same for the ring file, and why.
case $rule in
apply) why="not persistent memory" ;;
pmem) why="forced by durability = pmem" ;;
esac
"$RF_BIN/rephubd" --config "$RF_TMP/hub.conf" --check-config >"$RF_TMP/check.out" ||
	rf_fail "--check-config failed: $(cat "$RF_TMP/check.out")"
grep -qE "^ring .*/[^/]+\.ring: rule $rule \($why\)\$" "$RF_TMP/check.out" ||
	{ cat "$RF_TMP/check.out"; rf_fail "--check-config does not say the ring's rule"; }
rf_wait_for 10 "the hub to show the volume's acknowledgement level" \
	rf_status_true '.volumes[0].ack == "'"$level"'" and .volumes[0].ack_fallback == false'
mapfile -d '' cmds < <(slot_writes 0 1000)
rf_spawn writer stdbuf -oL qemu-io -f raw "${cmds[@]}" "$uri"
writer_pid=$RF_LAST_PID
rf_wait_for 30 "200 writes to complete" \
	bash -c "[ \$(grep -c '^wrote' '$RF_TMP/writer.log') -ge 200 ]"
# Freeze the agent, count, then kill the hub and the agent: every write
# printed by the count was acknowledged while the hub ran (a write whose
# acknowledgement failed when the hub died would complete too, as a
# fallback: the agent is stopped before that can happen). At level async
# writes never wait for the hub, so some of those are lost.
kill -STOP "$nbd_pid"
completed=$(grep -c '^wrote' "$RF_TMP/writer.log")
kill -KILL "$hub_pid"
wait "$hub_pid" 2>/dev/null || true
kill -KILL "$nbd_pid"
kill -CONT "$nbd_pid" 2>/dev/null || true
wait "$nbd_pid" 2>/dev/null || true
wait "$writer_pid" 2>/dev/null || true
rm -f "$RF_TMP/vm1.bitmap"
rf_log "$completed writes completed before the hub was killed"
# The hub alone: it applies what its ring holds, then stops cleanly.
start_hub
kill -TERM "$hub_pid"
wait "$hub_pid" 2>/dev/null || true
python3 - "$recovery" "$completed" <<'PY' || rf_fail "a write that completed at level $level is missing"
import sys
img, n = open(sys.argv[1], "rb"), int(sys.argv[2])
missing = []
for i in range(n):
    img.seek(i * 65536)
    if img.read(65536) != bytes([i % 250 + 1]) * 65536:
        missing.append(i)
if missing:
    print(f"{len(missing)} of {n} completed writes missing, first slots {missing[:10]}")
    sys.exit(1)
print(f"all {n} completed writes are in the recovery image")
PY

rf_log "phase 2: hub stopped under writes: fallback to async, then back to $level"
# The protected disk and the replica diverged in phase 1 (the agent's
# bitmap is gone): start over with a full sync.
rm -rf "$RF_TMP/state"
mkdir -p "$RF_TMP/state"
start_hub
start_nbdkit
synced "phase 2 initial sync"
kill -STOP "$hub_pid"
mapfile -d '' cmds < <(slot_writes 0 40)
# Each write waits at most the 1 s timeout; after the first fallback none waits.
qemu-io -f raw "${cmds[@]}" "$uri" >"$RF_TMP/qemu-io.log" || rf_fail "guest writes failed"
kill -CONT "$hub_pid"
rf_wait_for 30 "the hub to count the volume's fallback to async" \
	rf_status_true '.volumes[0].ack_fallbacks >= 1'
rf_wait_for 60 "the volume to return to $level acknowledgements" \
	rf_status_true '.volumes[0].ack == "'"$level"'" and .volumes[0].ack_fallback == false'
grep -q "falling back from $level to async" "$RF_TMP/nbdkit$nnbd.log" ||
	rf_fail "the agent did not log why it fell back"
mapfile -d '' cmds < <(slot_writes 100 140)
qemu-io -f raw "${cmds[@]}" "$uri" >"$RF_TMP/qemu-io.log" || rf_fail "guest writes failed"
synced "after SIGCONT"
cmp "$disk" "$recovery" || rf_fail "recovery image differs from the disk"
rf_log "PASS: $level acknowledgements (nothing completed lost; fallback and return)"
