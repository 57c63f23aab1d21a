#!/usr/bin/env bash
# Journal, failover test and failover end to end over tcp (issue #6):
# rephubd with a journal (journal_time = 1h) + nbdkit with the repagent
# filter. Pattern A is written and its point noted, pattern B overwrites
# part of it; a failover test at the point of A is served by the plugin in
# redirect mode: the whole view equals the disk as it was after A, writes
# through the plugin stay in the scratch, the recovery image and the
# journal do not change, and production keeps replicating meanwhile.
# Failover is refused while the test runs; after the stop, a failover at
# latest leaves a recovery image byte-identical to the disk, and the
# fenced agent's later writes are refused.
. "$(dirname "$0")/lib.sh"

rf_require nbdkit qemu-io qemu-img cmp sha256sum
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
plugin=$RF_LIB/nbdkit-repagent-plugin.so
[ -f "$filter" ] || rf_fail "$filter not built"
[ -f "$plugin" ] || rf_fail "$plugin not built"

ctl_port=$(rf_free_port)
hub="127.0.0.1:$ctl_port"
disk=$RF_TMP/disk.img
recovery=$RF_TMP/state/vm1-disk0.img
sock=$RF_TMP/nbd.sock
tsock=$RF_TMP/test.sock
mkdir -p "$RF_TMP/state"
cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $hub
data = tcp://127.0.0.1:$(rf_free_port)
state_dir = $RF_TMP/state
ring_size = 16M

[volume vm1-disk0]
recovery = $recovery
journal_time = 1h
journal_size = 1G

[volume other]
recovery = $RF_TMP/state/other.img
CONF
repctl() { "$RF_BIN/repctl" --hub "$hub" "$@"; }
prod() { qemu-io -f raw "$@" "nbd+unix:///?socket=$sock" >>"$RF_TMP/qemu-io.log"; }
view() { qemu-io -f raw "$@" "nbd+unix:///?socket=$tsock" >>"$RF_TMP/qemu-io.log"; }
newest_seq() { repctl points vm1-disk0 | awk '/^newest:/ {print $3}'; }
newest_time() { repctl points vm1-disk0 | awk '/^newest:/ {print $5}'; }
step() { rf_log "step: $*"; }

step "16 MiB disk of random data; hub with a 1h journal"
head -c $((16 << 20)) /dev/urandom >"$disk"
rf_spawn hub "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 20
step "refusals, each with its reason"
refused() { # WHAT REASON-PATTERN CMD...
	local what=$1 pat=$2 rc=0
	shift 2
	repctl "$@" >/dev/null 2>"$RF_TMP/refused.txt" || rc=$?
	[ $rc -eq 2 ] || rf_fail "$what: exit $rc, want 2"
	grep -q "$pat" "$RF_TMP/refused.txt" || rf_fail "$what: $(cat "$RF_TMP/refused.txt")"
	rf_log "  $what: $(cat "$RF_TMP/refused.txt")"
}
refused "points of an unknown volume" "no volume named" points nosuch
refused "a test without a journal" "has no journal" test-failover start other
refused "failover of a volume never protected" "never protected" failover vm1-disk0
refused "stop with no test" "no failover test is running" test-failover stop vm1-disk0
repctl points other | grep -q "no journal" || rf_fail "points of a volume without a journal"
"$RF_BIN/repctl" --hub "$hub" failover vm1-disk0 --at yesterday 2>/dev/null && rf_fail "--at yesterday accepted"
rf_spawn nbdkit nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
	repagent-hub="$hub" repagent-volume=vm1-disk0 repagent-bitmap="$RF_TMP/vm1-disk0.bitmap"
rf_wait_for 20 "nbdkit socket" test -S "$sock"
repctl wait vm1-disk0 --synced --timeout 60

step "pattern A"
prod -c 'write -P 0xaa 0 1M' -c 'write -P 0xa1 6M 64k' -c 'write -z 9M 128k'
repctl wait vm1-disk0 --synced --timeout 60
cp "$disk" "$RF_TMP/disk-A.img"
seq_a=$(newest_seq)
time_a=$(newest_time)
rf_log "  point of A: seq $seq_a, $time_a"
repctl points vm1-disk0 | sed 's/^/    /'
sleep 0.2

step "pattern B (overlaps A)"
prod -c 'write -P 0xbb 512k 1M' -c 'write -P 0xb1 6M 4k' -c 'discard 12M 1M'
repctl wait vm1-disk0 --synced --timeout 60
seq_b=$(newest_seq)
[ "$seq_b" -gt "$seq_a" ] || rf_fail "no newer point after B ($seq_a -> $seq_b)"
cmp -s "$disk" "$RF_TMP/disk-A.img" && rf_fail "pattern B changed nothing"
# Nothing is old enough to leave the journal: the recovery image is the
# oldest retained point, not the disk.
cmp -s "$disk" "$recovery" && rf_fail "the recovery image already holds B: no journal?"

step "hub SIGKILLed and restarted: the journal is rebuilt from its segments"
kill -KILL "$hub_pid"
wait "$hub_pid" 2>/dev/null || true
rf_spawn hub2 "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 20
repctl points vm1-disk0 | sed 's/^/    /'
[ "$(newest_seq)" -ge "$seq_b" ] || rf_fail "the journal lost entries in the restart"
repctl wait vm1-disk0 --synced --timeout 60

step "failover test at the time of A ($time_a)"
out=$(repctl test-failover start vm1-disk0 --at "$time_a")
echo "$out" | sed 's/^/    /'
echo "$out" | grep -q "^point: seq $seq_a " || rf_fail "the test is not at seq $seq_a"
rec_sum=$(sha256sum <"$recovery")
jdir=$RF_TMP/state/journal/vm1-disk0
mkdir -p "$RF_TMP/journal-before"
cp "$jdir"/*.seg "$RF_TMP/journal-before/"
rf_spawn plugin nbdkit -f -v -U "$tsock" "$plugin" hub="$hub" volume=vm1-disk0
rf_wait_for 20 "plugin socket" test -S "$tsock"
view -r -c 'read -P 0xaa 0 1M' -c 'read -P 0xa1 6M 64k' -c 'read -P 0 9M 128k'
qemu-img convert -f raw -O raw "nbd+unix:///?socket=$tsock" "$RF_TMP/view.img"
cmp "$RF_TMP/view.img" "$RF_TMP/disk-A.img" || rf_fail "the test view differs from the disk after A"
rf_log "  the whole view equals the disk after A"

step "writes through the plugin go to the scratch only"
view -c 'write -P 0xcc 100k 8k' -c 'write -P 0xcd 6M 1000' -c 'flush'
view -r -c 'read -P 0xcc 100k 8k' -c 'read -P 0xcd 6M 1000' -c 'read -P 0xa1 6292456 64536'

step "production keeps replicating during the test"
prod -c 'write -P 0xdd 2M 1M'
repctl wait vm1-disk0 --synced --timeout 60
[ "$(newest_seq)" -gt "$seq_b" ] || rf_fail "no new journal entries during the test"
view -r -c 'read -P 0xaa 0 100k' -c 'read -P 0xcc 100k 8k' # the view did not move

step "failover is refused while the test runs"
if repctl failover vm1-disk0 2>"$RF_TMP/refused.txt"; then
	rf_fail "failover accepted during a test"
fi
grep -q "failover test is running" "$RF_TMP/refused.txt" || rf_fail "no reason: $(cat "$RF_TMP/refused.txt")"
rf_log "  refused: $(cat "$RF_TMP/refused.txt")"
[ "$(sha256sum <"$recovery")" = "$rec_sum" ] || rf_fail "the test modified the recovery image"
for f in "$RF_TMP"/journal-before/*.seg; do
	# Segments only grow at their end while production goes on.
	cmp -n "$(stat -c %s "$f")" "$f" "$jdir/$(basename "$f")" ||
		rf_fail "the test modified journal segment $(basename "$f")"
done
rf_log "  recovery image and journal unchanged by the test"

step "stop the test"
refused "a second test" "already running" test-failover start vm1-disk0
repctl test-failover stop vm1-disk0 | sed 's/^/    /'
if view -r -c 'read 0 4k' 2>/dev/null; then rf_fail "the view still serves after stop"; fi
[ ! -e "$RF_TMP/state/tests/vm1-disk0.scratch" ] || rf_fail "the scratch was not discarded"

refused "a point older than the journal" "before the oldest retained point" \
	test-failover start vm1-disk0 --at 2000-01-01T00:00:00Z
refused "a sequence outside the journal" "outside the retained points" \
	test-failover start vm1-disk0 --at seq:1

step "failover --force at latest while a second test runs"
prod -c 'write -P 0xee 3M 1M'
repctl wait vm1-disk0 --synced --timeout 60
repctl test-failover start vm1-disk0 --at latest | sed 's/^/    /'
view -r -c 'read -P 0xee 3M 1M'
repctl failover vm1-disk0 --at latest --force | tee "$RF_TMP/failover.txt" | sed 's/^/    /'
if view -r -c 'read 0 4k' 2>/dev/null; then rf_fail "the view still serves after a forced failover"; fi
grep -q "recovery image: $recovery" "$RF_TMP/failover.txt" || rf_fail "no image path printed"
cmp "$disk" "$recovery" || rf_fail "the recovery image differs from the disk after failover"
rf_log "  recovery image byte-identical to the disk"
cp "$disk" "$RF_TMP/disk-failover.img"

step "the fenced agent's later writes are refused"
prod -c 'write -P 0x11 0 64k'
cmp -s "$disk" "$RF_TMP/disk-failover.img" &&
	rf_fail "the guest's write did not reach the protected disk (nothing was tested)"
# The agent reconnects and reports the volume again: the hub must refuse it
# with the reason (the agent logs it through nbdkit).
rf_wait_for 30 "the hub to refuse the fenced agent's volume report" \
	grep -q "was failed over at seq" "$RF_TMP/nbdkit.log"
sleep 1
cmp "$recovery" "$RF_TMP/disk-failover.img" || rf_fail "a write after the failover reached the image"
repctl points vm1-disk0 | grep -q "failed over: yes" || rf_fail "points does not say failed over"
rf_alive "$hub_pid"
grep -E "failed over|fenc|refus|invalid" "$RF_TMP/hub2.log" | sed "s/^/    hub: /"
rf_log "PASS: journal, failover test and failover over tcp"
