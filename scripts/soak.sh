#!/usr/bin/env bash
# The randomized fault soak (docs/SOAK.md): seeded faults under a stamped
# workload, a checker of every acknowledged write.
#
#   scripts/soak.sh --seed N --minutes M     (or --seconds S)
#
# Needs a build (cmake -S . -B build && cmake --build build; RF_BUILD_DIR
# for another one), nbdkit, jq and Debian's python3-libnbd (scripts/deps.sh).
# Prints a summary: faults injected by kind, writes and bytes checked,
# quiesces and crash checks, the hub's RSS and descriptors, and "lost = 0";
# or the first violation and the command that replays the seed. Exit 0 ok,
# 1 violation or failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export RF_SOURCE_DIR=$root
export RF_BUILD_DIR=${RF_BUILD_DIR:-$root/build}
[ -x "$RF_BUILD_DIR/bin/rephubd" ] || {
	echo "soak: no build in $RF_BUILD_DIR (cmake -S . -B build && cmake --build build)" >&2
	exit 1
}
exec bash "$root/tests/soak/soak.sh" "$@"
