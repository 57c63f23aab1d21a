#!/usr/bin/env bash
# Per-agent ring isolation over rdma://, inside the soft-RoCE VM
# (tests/rxe-vm): rephubd registers each agent's ring as its own memory
# region, on a protection domain of that agent's connection only, with
# LOCAL_WRITE|REMOTE_WRITE, and deregisters it when the agent detaches
# (fabric/rdma_hub.c, peer_setup / peer_die). Two simulated agents
# (rf-hub-agent-sim); agent vmB aims raw RDMA WRITEs (256 bytes of 0xe5,
# through the TEST ONLY hook tests/fabric/rdma_test.h) at agent vmA's ring:
#   0. control: vmB's raw write into its own ring with its own rkey succeeds
#      and its bytes are in vmB's ring file (the hook really writes);
#   1. vmA's address with vmA's rkey, while vmA is attached;
#   2. vmA's address with vmB's own rkey;
#   3. vmA's old address and rkey after vmA detached (from a new connection).
# Each of 1-3 must complete with an error (vmB's simulator exits 4), vmA's
# ring file must be byte-identical to before, the hub must keep running
# and keep serving vmA (more writes applied; after 3, vmA attaches again
# and writes), and vmA's recovery image must equal vmA's disk.
#
# Usage: hub_isolation_rdma.sh   (boots the VM and runs itself inside it with --guest)
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" != --guest ]; then
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		rf_skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	rc=0
	"$RF_SOURCE_DIR/tests/rxe-vm/run.sh" --timeout 600 --mem 1024 -- bash "$0" --guest || rc=$?
	case $rc in
	0) rf_log "PASS: per-agent ring isolation over rdma_rxe in the VM" ;;
	124) rf_fail "the VM timed out" ;;
	125) rf_fail "the VM failed to boot or the harness failed (see above)" ;;
	*) rf_fail "the isolation scenarios failed inside the VM (exit $rc)" ;;
	esac
	exit 0
fi

rf_require jq cmp
hubd=$RF_BIN/rephubd
repctl=$RF_BIN/repctl
sim=$RF_BIN/rf-hub-agent-sim
for b in "$hubd" "$repctl" "$sim"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
hub=127.0.0.1:$ctl_port
state=$RF_TMP/state
rings=/dev/shm/rf-isolation-rings # registered memory: tmpfs (docs: README)
disk_a=$RF_TMP/a.img
disk_b=$RF_TMP/b.img
image_x=$state/vmA-disk0.img
ring_a=$rings/vmA.ring
ring_b=$rings/vmB.ring
rm -rf "$rings"
mkdir -p "$state"
cat >"$RF_TMP/hub.conf" <<EOF
[hub]
control = $hub
data = rdma://${RF_RDMA_ADDR:-10.0.2.15}:$data_port
state_dir = $state
ring_dir = $rings
ring_size = 4M

[volume vmA-disk0]
recovery = $image_x

[volume vmB-disk0]
recovery = $state/vmB-disk0.img
EOF
dd if=/dev/urandom of="$disk_a" bs=64K count=16 status=none # 1 MiB
dd if=/dev/urandom of="$disk_b" bs=64K count=8 status=none  # 512 KiB
head -c 256 /dev/zero | tr '\0' '\345' >"$RF_TMP/pattern"

rf_spawn hub "$hubd" --config "$RF_TMP/hub.conf" --log-level debug
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 60

RF_HUB=$hub # lib.sh's status helpers
a_detached() { [ "$(rf_agent_field vmA attached)" = false ]; }

rf_log "agent vmA protects vmA-disk0 over rdma and stays attached"
rf_spawn agentA "$sim" --hub "$hub" --agent vmA --volume vmA-disk0 --vol-id 7 --disk "$disk_a" \
	--expect-sync full --writes 20 --seed 1 --stay --print-remote
a_pid=$RF_LAST_PID
rf_wait_for 300 "vmA's writes to be durable" grep -q "writes durable" "$RF_TMP/agentA.log"
remote=$(grep -m1 '^remote addr ' "$RF_TMP/agentA.log") || rf_fail "vmA printed no remote ring"
a_addr=$(echo "$remote" | awk '{print $3}')
a_rkey=$(echo "$remote" | awk '{print $5}')
rf_log "  vmA's ring: address $a_addr rkey $a_rkey ($ring_a)"
cmp "$disk_a" "$image_x" || rf_fail "vmA-disk0's image differs from vmA's disk"

nb=0
# b_attack NAME TARGET EXPECTED_EXIT: vmB syncs its volume, writes, then one
# raw RDMA WRITE to TARGET (--attack of rf-hub-agent-sim).
b_attack() {
	local rc=0
	nb=$((nb + 1))
	"$sim" --hub "$hub" --agent vmB --volume vmB-disk0 --vol-id 1 --disk "$disk_b" \
		--bitmap-valid --writes 5 --seed "$((10 + nb))" --print-remote --attack "$2" \
		>"$RF_TMP/$1.log" 2>&1 || rc=$?
	[ "$rc" = "$3" ] ||
		{ cat "$RF_TMP/$1.log"; rf_fail "$1: vmB's simulator exited $rc, not $3"; }
	grep -q '^raw write to ' "$RF_TMP/$1.log" || rf_fail "$1: no raw write result"
	rf_log "  $1: $(grep '^raw write to ' "$RF_TMP/$1.log")"
}

# a_intact WHAT: vmA's ring unchanged, the hub alive.
a_intact() {
	rf_alive "$hub_pid"
	cmp "$RF_TMP/ring-a.snap" "$ring_a" || rf_fail "$1: vmA's ring changed"
	[ "$(rf_agent_field vmA invalid_records)" = 0 ] || rf_fail "$1: vmA counted invalid records"
}

rf_log "0. control: vmB writes its own ring with its own rkey"
b_attack self self 0
b_size=$(grep -m1 '^remote addr ' "$RF_TMP/self.log" | awk '{print $7}')
dd if="$ring_b" bs=256 skip=$(((4096 + b_size - 512) / 256)) count=1 status=none >"$RF_TMP/got"
cmp "$RF_TMP/pattern" "$RF_TMP/got" || rf_fail "the control write did not land in vmB's ring"
rf_log "  its 256 bytes are in $ring_b"

cp "$ring_a" "$RF_TMP/ring-a.snap"
rf_log "1. vmB writes to vmA's ring address with vmA's rkey (vmA attached)"
b_attack with-a-rkey "$a_addr:$a_rkey" 4
a_intact "vmA's rkey"
rf_alive "$a_pid"
[ "$(rf_agent_field vmA attached)" = true ] || rf_fail "vmA lost its data path"

rf_log "2. vmB writes to vmA's ring address with its own rkey"
b_attack with-own-rkey "own-rkey:$a_addr" 4
a_intact "vmB's rkey"
[ "$(rf_agent_field vmA attached)" = true ] || rf_fail "vmA lost its data path"

rf_log "the hub keeps serving vmA: 20 more writes"
kill -USR1 "$a_pid"
rf_wait_for 300 "vmA's extra writes to be durable" grep -q "extra 20 writes durable" \
	"$RF_TMP/agentA.log"
cmp "$disk_a" "$image_x" || rf_fail "vmA-disk0's image differs from vmA's disk"

rf_log "3. vmA detaches; vmB tries vmA's old address and rkey from a new connection"
kill -TERM "$a_pid"
rc=0
wait "$a_pid" || rc=$?
[ "$rc" = 0 ] || rf_fail "vmA exited $rc after SIGTERM"
rf_wait_for 120 "the hub to see vmA detached" a_detached
cp "$ring_a" "$RF_TMP/ring-a.snap"
b_attack stale-rkey "$a_addr:$a_rkey" 4
a_intact "vmA's old rkey"

rf_log "vmA attaches again and is served"
"$sim" --hub "$hub" --agent vmA --volume vmA-disk0 --vol-id 7 --disk "$disk_a" --bitmap-valid \
	--expect-sync none --writes 20 --seed 2 --print-remote >"$RF_TMP/agentA2.log" 2>&1 ||
	{ cat "$RF_TMP/agentA2.log"; rf_fail "vmA's second session failed"; }
rf_log "  vmA's new ring registration: $(grep -m1 '^remote addr ' "$RF_TMP/agentA2.log")"
cmp "$disk_a" "$image_x" || rf_fail "vmA-disk0's image differs from vmA's disk"
[ "$(rf_agent_field vmB invalid_records)" = 0 ] || rf_fail "vmB's raw writes reached its drain"

kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
[ "$rc" = 0 ] || rf_fail "rephubd exited $rc after SIGTERM"
rm -rf "$rings"
rf_log "all good"
