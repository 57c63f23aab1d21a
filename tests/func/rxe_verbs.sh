#!/usr/bin/env bash
# func/rxe_verbs: RDMA WRITE WITH IMM over real soft-RoCE (rdma_rxe).
#
# On the host (as ctest runs it) this boots the test VM once with
# tests/rxe-vm/run.sh and runs itself again inside it with --guest.  In the
# guest, rf-verbs-check moves 64 buffers of 64 KiB twice:
#   good:    server and client must both succeed, the server verifying
#            every immediate and every byte;
#   corrupt: the client flips one byte (--corrupt); the server must exit 1
#            naming exactly that byte.
# Skips (77) only when qemu is missing; a VM that does not boot is a FAIL.
. "$(dirname "$0")/lib.sh"

COUNT=64
SIZE=65536
ADDR=10.0.2.15 # eth0 in the VM; rdma_cm cannot use 127.0.0.1
VERBS_CHECK=$RF_BIN/rf-verbs-check

# run_pair NAME PORT [CLIENT FLAGS...]: run a server in the background and a
# client against it; sets SERVER_RC and CLIENT_RC, logs in $RF_TMP/NAME-*.log.
run_pair() {
	local name=$1 port=$2 spid
	shift 2
	rf_spawn "$name-server" "$VERBS_CHECK" server --addr "$ADDR" --port "$port" \
		--count "$COUNT" --size "$SIZE" --timeout 60
	spid=$RF_LAST_PID
	rf_wait_for 30 "the $name server to listen" grep -q 'listening on' "$RF_TMP/$name-server.log"
	CLIENT_RC=0
	timeout 90 "$VERBS_CHECK" client --addr "$ADDR" --port "$port" --count "$COUNT" --size "$SIZE" \
		--timeout 60 "$@" >"$RF_TMP/$name-client.log" 2>&1 || CLIENT_RC=$?
	# The server bounds its own waits (--timeout 60); this bounds the rest.
	rf_wait_for 90 "the $name server to exit" eval "! kill -0 $spid"
	SERVER_RC=0
	wait "$spid" || SERVER_RC=$?
	sed "s/^/[$name server] /" "$RF_TMP/$name-server.log"
	sed "s/^/[$name client] /" "$RF_TMP/$name-client.log"
	rf_log "$name: server exit $SERVER_RC, client exit $CLIENT_RC"
}

guest_main() {
	local line
	[ -x "$VERBS_CHECK" ] || rf_fail "$VERBS_CHECK is not visible in the guest"
	rf_log "guest kernel $(uname -r); $(rdma dev show rxe0 2>&1)"

	run_pair good 18515
	if [ "$SERVER_RC" != 0 ] || [ "$CLIENT_RC" != 0 ]; then
		rf_fail "good transfer failed"
	fi
	line=$(grep "^verified $COUNT buffers, $SIZE bytes each, 0 mismatches, device rxe0\$" \
		"$RF_TMP/good-server.log") || rf_fail "good transfer: no 'verified' report from the server"
	echo "RXE_VERBS good: $line"

	run_pair corrupt 18516 --corrupt
	[ "$CLIENT_RC" = 0 ] || rf_fail "corrupt transfer: the client failed (exit $CLIENT_RC)"
	[ "$SERVER_RC" = 1 ] || rf_fail "corrupt transfer: the server exited $SERVER_RC, expected 1 (mismatch)"
	# The client flips buffer COUNT/2 at offset SIZE/2, and nothing else.
	line=$(grep "^verify FAILED: .* 1 mismatches (first: buffer $((COUNT / 2)) offset $((SIZE / 2)): " \
		"$RF_TMP/corrupt-server.log") ||
		rf_fail "corrupt transfer: the server did not report the flipped byte"
	echo "RXE_VERBS corrupt detected: $line"
}

host_main() {
	local rc=0 t0=$SECONDS
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		rf_skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	[ -x "$VERBS_CHECK" ] || rf_fail "$VERBS_CHECK is missing: build the project first"

	# Console output goes to vm.out (not *.log: lib.sh would print it twice).
	"$RF_SOURCE_DIR/tests/rxe-vm/run.sh" --timeout 300 -- bash "$0" --guest 2>&1 |
		tee "$RF_TMP/vm.out" || rc=$?
	case $rc in
	0) ;;
	124) rf_fail "the VM timed out" ;;
	125) rf_fail "the VM failed to boot or the harness failed (see above)" ;;
	*) rf_fail "the checks inside the VM failed (exit $rc)" ;;
	esac
	grep -q "^RXE_VERBS good: verified $COUNT buffers" "$RF_TMP/vm.out" ||
		rf_fail "the guest did not report the good transfer"
	grep -q "^RXE_VERBS corrupt detected: verify FAILED" "$RF_TMP/vm.out" ||
		rf_fail "the guest did not report the detected corruption"
	rf_log "PASS: good transfer verified, corruption detected ($((SECONDS - t0)) s)"
}

if [ "${1:-}" = --guest ]; then
	guest_main
else
	host_main
fi
