#!/usr/bin/env bash
# Two machines on one wire: boot two soft-RoCE guests (run.sh each) joined by
# a point-to-point link that exists only on this host (qemu -netdev stream
# over a host unix socket; never qemu's TCP netdevs: they leave Nagle on),
# and run one command in both, with the guest's role as its last argument.
#
#   tests/rxe-vm/run2.sh [--timeout S] [--mem M] [--mem-a M] [--mem-b M]
#                        [--share DIR]... [--drive-a D]... [--drive-b D]...
#                        [--nvdimm-a FILE] [--smp N] -- CMD [ARGS...]
#
#   host a: eth0 192.168.77.1/24, rxe0 on it; runs CMD ARGS... a
#   host b: eth0 192.168.77.2/24, rxe0 on it; runs CMD ARGS... b
#
# Each guest gets 1 vCPU (--smp; two guests on 2 host cores starve with 2
# each), the host's / read-only as run.sh gives it, every --share, and a
# fresh coordination folder shared read-write by both (9p, cache=mmap).  In
# the guests the environment has RF_PAIR_ROLE (a|b), RF_PAIR_ADDR (own
# address), RF_PAIR_PEER (the other's), RF_PAIR_SYNC (the coordination
# folder); `. tests/rxe-vm/pair.sh` gives pair_mark/pair_wait on it (marker
# files, bounded polling).  When one guest's command fails, the harness
# writes failed-a / failed-b there, so the other's pair_wait gives up at
# once; the other guest then gets 60 s to finish before it is killed.
#
# Options:
#   --timeout S    bounds each guest (boot + command + poweroff; default 300,
#                  or $RF_VM_TIMEOUT); the pair as a whole gets S + 30
#   --mem M        guest memory in MiB, both (default 1024); --mem-a/--mem-b
#   --share DIR    shared read-write with both guests, at the same path
#   --drive-a D, --drive-b D   a virtio disk for one guest (run.sh --drive)
#   --nvdimm-a FILE            an emulated NVDIMM for host a (run.sh --nvdimm)
#   --smp N        vCPUs per guest (default 1)
#
# Exit status:
#   0    both commands exited 0
#   1    a's command failed, b's succeeded    2  b's failed, a's succeeded
#   3    both commands failed
#   124  a guest did not finish within --timeout (or the pair within S + 30)
#   125  harness error (usage, missing tool, a guest did not boot, the wire
#        did not come up); run.sh's message says which
# The log shows each guest's own status ("[pair] a: ... exited N").
# Environment: as run.sh (RF_VM_CACHE, RF_VM_ACCEL, RF_VM_KEEP).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIMEOUT=${RF_VM_TIMEOUT:-300}
MEM_A=1024 MEM_B=1024 SMP=1
SHARES=() DRIVES_A=() DRIVES_B=() NVDIMM_A=()

log() { echo "[pair] $*" >&2; }
die() {
	echo "[pair] ERROR: $*" >&2
	exit 125
}
usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 125
}

while [ $# -gt 0 ]; do
	case $1 in
	--timeout | --mem | --mem-a | --mem-b | --share | --drive-a | --drive-b | --nvdimm-a | --smp)
		[ $# -ge 2 ] || usage
		case $1 in
		--timeout) TIMEOUT=$2 ;;
		--mem) MEM_A=$2 MEM_B=$2 ;;
		--mem-a) MEM_A=$2 ;;
		--mem-b) MEM_B=$2 ;;
		--share) SHARES+=(--share "$2") ;;
		--drive-a) DRIVES_A+=(--drive "$2") ;;
		--drive-b) DRIVES_B+=(--drive "$2") ;;
		--nvdimm-a) NVDIMM_A=(--nvdimm "$2") ;;
		--smp) SMP=$2 ;;
		esac
		shift 2
		;;
	--)
		shift
		break
		;;
	-h | --help) usage ;;
	*)
		echo "run2.sh: unknown argument '$1' (the command goes after --)" >&2
		usage
		;;
	esac
done
[ $# -gt 0 ] || usage
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout wants whole seconds, not '$TIMEOUT'"
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	die "'qemu-system-x86_64' not found: install the Debian package 'qemu-system-x86'"

# Warm the cache once (both guests would wait on its lock otherwise).
"$HERE/prepare.sh" || exit 125

PAIR=$(mktemp -d "${TMPDIR:-/tmp}/rf-pair.XXXXXX")
SYNC=$PAIR/sync
WIRE=$PAIR/wire.sock
mkdir -p "$SYNC"
PID_A='' PID_B=''
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	local rc=$? p
	for p in $PID_A $PID_B; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $PID_A $PID_B; do wait "$p" 2>/dev/null || true; done
	if [ "${RF_VM_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
		log "pair folder kept: $PAIR"
	else
		rm -rf "$PAIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# guest ROLE ADDR PEER MEM RUN.SH-OPTIONS...: one run.sh in the background
# (GPID is its pid), its output prefixed with the role, on stderr.
guest() {
	local role=$1 addr=$2 peer=$3 mem=$4
	shift 4
	env RF_PAIR_ROLE="$role" RF_PAIR_ADDR="$addr" RF_PAIR_PEER="$peer" RF_PAIR_SYNC="$SYNC" \
		"$HERE/run.sh" --timeout "$TIMEOUT" --smp "$SMP" --mem "$mem" --share "$SYNC" \
		--addr "$addr/24" --wire "$WIRE" "$@" -- "${CMD[@]}" "$role" \
		> >(sed -u "s/^/[$role] /" >&2) 2>&1 &
	GPID=$!
}
# reap ROLE PID: if PID has ended, note its status in $PAIR/rc-ROLE (and
# failed-ROLE in the coordination folder when it is not 0).
reap() {
	local rc=0
	[ ! -e "$PAIR/rc-$1" ] || return 0
	! kill -0 "$2" 2>/dev/null || return 0
	wait "$2" || rc=$?
	echo "$rc" >"$PAIR/rc-$1"
	[ "$rc" = 0 ] || : >"$SYNC/failed-$1"
}
CMD=("$@")

t0=$SECONDS
log "booting a (192.168.77.1, wire server) and b (192.168.77.2), $SMP vCPU each, timeout ${TIMEOUT}s"
guest a 192.168.77.1 192.168.77.2 "$MEM_A" --wire-role server "${NVDIMM_A[@]}" "${SHARES[@]}" "${DRIVES_A[@]}"
PID_A=$GPID
# qemu a creates the socket before it boots; b connects to it.
for _ in $(seq 300); do
	[ -S "$WIRE" ] && break
	kill -0 "$PID_A" 2>/dev/null || break
	sleep 0.1
done
[ -S "$WIRE" ] || die "guest a did not create the wire $WIRE within 30 s"
guest b 192.168.77.2 192.168.77.1 "$MEM_B" --wire-role client "${SHARES[@]}" "${DRIVES_B[@]}"
PID_B=$GPID

# Wait for both; once one has failed, the other gets 60 s more.  The pair
# as a whole is bounded by TIMEOUT + 30 s (each run.sh by TIMEOUT).
deadline=$((SECONDS + TIMEOUT + 30))
grace=
while reap a "$PID_A" && reap b "$PID_B" && { [ ! -e "$PAIR/rc-a" ] || [ ! -e "$PAIR/rc-b" ]; }; do
	if [ -z "$grace" ] && { [ -e "$SYNC/failed-a" ] || [ -e "$SYNC/failed-b" ]; }; then
		grace=$((SECONDS + 60))
		[ "$grace" -lt "$deadline" ] && deadline=$grace
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		log "TIMEOUT: killing what is left after $((SECONDS - t0)) s"
		for r in a b; do [ -e "$PAIR/rc-$r" ] || echo 124 >"$PAIR/rc-$r"; done
		break
	fi
	sleep 0.2
done
kill -TERM $PID_A $PID_B 2>/dev/null || true
wait $PID_A 2>/dev/null || true
wait $PID_B 2>/dev/null || true
PID_A='' PID_B=''
ra=$(cat "$PAIR/rc-a") rb=$(cat "$PAIR/rc-b")
log "a: command exited $ra, b: command exited $rb, $((SECONDS - t0)) s in all"
if [ "$ra" = 125 ] || [ "$rb" = 125 ]; then exit 125; fi
if [ "$ra" = 124 ] || [ "$rb" = 124 ]; then exit 124; fi
if [ "$ra" != 0 ] && [ "$rb" != 0 ]; then exit 3; fi
[ "$ra" = 0 ] || exit 1
[ "$rb" = 0 ] || exit 2
exit 0
