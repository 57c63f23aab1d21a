#!/usr/bin/env bash
# The main job of repfabric, end to end on one machine:
#   installs what is missing, builds, starts rephubd, creates a disk with
#   data on it, serves it through nbdkit with the repagent filter, writes to
#   it with qemu-io while the initial sync runs, waits until the replica is
#   synced, shows that the recovery image is byte-identical (checksums), and
#   stops everything cleanly.
#
# The data transport is rdma:// when this host has an RDMA device with an
# IPv4 address, tcp:// otherwise (these build machines have none: run the
# rdma variant inside the soft-RoCE VM with `tests/func/protect.sh` via
# ctest -R protect_rdma). Override with RF_DEMO_TRANSPORT=tcp|shm|rdma.
#
# Options: --size MB (default 256), --keep (keep the work folder).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/deps.sh

size_mb=256
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--size) size_mb=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h|--help) sed -n '2,15p' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
	esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "dependencies"
rf_install_deps

say "build"
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "built: $(ls build/bin | tr '\n' ' ')"

work=$(mktemp -d "${TMPDIR:-/tmp}/repfabric-demo.XXXXXX")
pids=()
cleanup() {
	local rc=$? p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$rc" -ne 0 ]; then
		echo "demo failed (exit $rc); logs:" >&2
		tail -n 20 "$work"/*.log >&2 || true
	fi
	[ "$keep" = 1 ] || [ "$rc" -ne 0 ] || rm -rf "$work"
	[ "$keep" = 1 ] && echo "work folder kept: $work"
	exit "$rc"
}
trap cleanup EXIT

# A port nothing listens on, below the ephemeral range.
free_port() {
	local p lo
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
	for _ in $(seq 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
	echo "no free port" >&2; return 1
}

rdma_addr() {
	# An IPv4 address on a netdev that has an RDMA link.
	local nd
	command -v rdma >/dev/null || return 1
	nd=$(rdma link show 2>/dev/null | awk '/netdev/ {for (i=1;i<=NF;i++) if ($i=="netdev") print $(i+1)}' | head -n1)
	[ -n "$nd" ] || return 1
	ip -4 -o addr show dev "$nd" | awk '{print $4}' | cut -d/ -f1 | head -n1
}

transport=${RF_DEMO_TRANSPORT:-}
if [ -z "$transport" ]; then
	if addr=$(rdma_addr) && [ -n "$addr" ]; then transport=rdma; else transport=tcp; fi
fi
ctl=127.0.0.1:$(free_port)
case $transport in
rdma) data="rdma://${addr:-$(rdma_addr)}:$(free_port)" ;;
tcp) data="tcp://127.0.0.1:$(free_port)" ;;
shm) data="shm://$work/hub.data" ;;
*) echo "RF_DEMO_TRANSPORT must be tcp, shm or rdma" >&2; exit 2 ;;
esac

mkdir -p "$work/state"
say "keys: the agent vm1 and the administrator ops authenticate (psk_file)"
(
	umask 077
	build/bin/repctl genkey vm1 agent >"$work/vm1.psk"
	build/bin/repctl genkey ops admin >"$work/ops.psk"
	cat "$work/vm1.psk" "$work/ops.psk" >"$work/hub.psk"
)
cat >"$work/hub.conf" <<CONF
[hub]
control = $ctl
data = $data
state_dir = $work/state
ring_size = 64M
psk_file = $work/hub.psk

[volume vm1-disk0]
recovery = $work/state/vm1-disk0.img
agent = vm1
CONF
repctl() { build/bin/repctl --hub "$ctl" --psk-file "$work/ops.psk" "$@"; }

say "hub: rephubd on $ctl, data $data"
build/bin/rephubd --config "$work/hub.conf" >"$work/rephubd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/${ctl%:*}/${ctl##*:}") 2>/dev/null && break
	sleep 0.1
done

say "protected disk: $size_mb MiB with data on it"
disk=$work/vm1-disk0.img
head -c "$((size_mb << 20))" /dev/urandom >"$disk"
sock=$work/nbd.sock
nbdkit -f -U "$sock" --filter="$top/build/lib/nbdkit-repagent-filter.so" file "$disk" \
	repagent-hub="$ctl" repagent-volume=vm1-disk0 repagent-bitmap="$work/vm1-disk0.bitmap" \
	repagent-agent-id=vm1 repagent-psk-file="$work/vm1.psk" >"$work/nbdkit.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
uri="nbd+unix:///?socket=$sock"

say "guest writes with qemu-io while the initial sync runs"
qemu-io -f raw -c 'write -P 0x11 0 4M' -c 'write -P 0x22 1M 64k' -c 'write -z 8M 2M' \
	-c "write -P 0x33 $((size_mb - 4))M 4M" "$uri"
repctl status

say "waiting until vm1-disk0 is synced"
t0=$(date +%s%N)
repctl wait vm1-disk0 --synced --timeout 300
echo "synced in $((($(date +%s%N) - t0) / 1000000)) ms"
repctl status

say "verify"
a=$(sha256sum "$disk" | cut -d' ' -f1)
b=$(sha256sum "$work/state/vm1-disk0.img" | cut -d' ' -f1)
echo "protected disk  sha256 $a"
echo "recovery image  sha256 $b"
if [ "$a" != "$b" ]; then
	echo "MISMATCH: the recovery image differs from the protected disk" >&2
	exit 1
fi
echo "the recovery image is byte-identical to the protected disk"

say "stop"
kill -TERM "${pids[1]}" && wait "${pids[1]}" || true
kill -TERM "${pids[0]}" && wait "${pids[0]}" || true
pids=()
echo "rephubd and nbdkit stopped; demo complete"
