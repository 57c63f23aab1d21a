#!/usr/bin/env bash
# scripts/demo.sh, the README's first command, run as a test (small disk).
. "$(dirname "$0")/lib.sh"
rf_require nbdkit qemu-io
out=$RF_TMP/demo.out
"$RF_SOURCE_DIR/scripts/demo.sh" --size 64 2>&1 | tee "$out"
grep -q "the recovery image is byte-identical to the protected disk" "$out" ||
	rf_fail "demo did not verify the recovery image"
