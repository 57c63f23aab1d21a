#!/usr/bin/env bash
# The transport conformance suite (tests/fabric/conformance.c) against one
# provider. Usage: fabric_conformance.sh tcp|shm|rdma
#   tcp, shm: on this host.
#   rdma:     boots the soft-RoCE VM (tests/rxe-vm/run.sh) and runs the suite
#             there over rdma://10.0.2.15 (rdma_cm cannot use 127.0.0.1).
. "$(dirname "$0")/lib.sh"

scheme=${1:?usage: fabric_conformance.sh tcp|shm|rdma [--guest]}
case $scheme in
tcp) url="tcp://127.0.0.1:$(rf_free_port)" ;;
shm) url="shm://$RF_TMP/hub.sock" ;;
rdma) url="rdma://10.0.2.15:$(rf_free_port)" ;;
*) rf_fail "unknown scheme $scheme" ;;
esac

if [ "$scheme" = rdma ] && [ "${2:-}" != --guest ]; then
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		rf_skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	rc=0
	"$RF_SOURCE_DIR/tests/rxe-vm/run.sh" --timeout 900 -- bash "$0" rdma --guest || rc=$?
	case $rc in
	0) rf_log "PASS: conformance over rdma_rxe in the VM" ;;
	124) rf_fail "the VM timed out" ;;
	125) rf_fail "the VM failed to boot or the harness failed (see above)" ;;
	*) rf_fail "the conformance suite failed inside the VM (exit $rc)" ;;
	esac
	exit 0
fi

rf_log "running every case over $url"
"$RF_BIN/rf-fabric-conformance" run --url "$url" --dir "$RF_TMP"
