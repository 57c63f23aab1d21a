#!/usr/bin/env bash
# Run a host-built command inside a small qemu VM with real soft-RoCE
# (rdma_rxe bound to eth0 = 10.0.2.15), booting Debian's own kernel.
#
#   tests/rxe-vm/run.sh [--timeout S] [--share DIR]... [--mem M] [--drive D]...
#                       [--nvdimm FILE] [--pidfile FILE] [--smp N]
#                       [--wire SOCK --wire-role server|client --addr IP/NN]
#                       -- CMD [ARGS...]
#
# The guest sees the host's / read-only (with a throw-away tmpfs overlay on
# top) and runs CMD with the host's bash, in the same working directory and
# with the same exported environment.  Guest /run and /dev/shm are fresh
# tmpfs mounts; /tmp is the host's, read-only under the same overlay, so
# writes there stay in the guest.
#
# Options:
#   --timeout S  bound the whole boot + command + poweroff (default 300 s,
#                or $RF_VM_TIMEOUT)
#   --share DIR  make DIR read-write in the guest, at the same path (9p,
#                cache=mmap so MAP_SHARED works).  Repeatable.  Anything the
#                command writes elsewhere is lost at poweroff; the working
#                directory must be on the host's / or shared.
#   --mem M      guest memory in MiB (default 1024)
#   --drive D    attach a virtio disk (/dev/vda, /dev/vdb, ... in order): D
#                is a raw image file, or nbd+unix:///?socket=SOCK (an NBD
#                server on a unix socket, e.g. nbdkit).  Repeatable.
#   --nvdimm FILE  give the guest an emulated NVDIMM backed by the host file
#                FILE (created at 256 MiB when missing; a multiple of 2 MiB),
#                made a devdax namespace on first use: the guest has
#                /dev/dax0.0 (about 250 MiB), real persistent memory to
#                libpmem and registrable for RDMA.  The namespace mode is
#                stored on the NVDIMM, so a later boot on FILE finds its
#                data again (a power cut = SIGKILL of qemu, see --pidfile).
#   --pidfile FILE  qemu writes its pid there (to cut the power from the host)
#   --smp N      vCPUs (default 2; two guests on 2 host cores want 1 each)
#   --wire SOCK  eth0 is a virtio NIC on a point-to-point link to another
#                guest over the host unix socket SOCK (qemu -netdev stream)
#                instead of user networking; --wire-role server creates and
#                listens on SOCK (start it first), client connects to it.
#                --addr IP/NN is then eth0's address (the GID rxe0 waits
#                for).  run2.sh boots such a pair.
#   --addr IP/NN eth0's IPv4 address (default 10.0.2.15/24)
#
# Exit status: CMD's own exit status, or
#   124  the VM did not finish within --timeout (qemu killed)
#   125  harness error: bad usage, missing tool, cache preparation failed,
#        VM did not boot, or rxe/9p setup failed in the guest
#
# Environment: RF_VM_CACHE (see prepare.sh), RF_VM_ACCEL=kvm|tcg (default:
# kvm only if the CPU has vmx/svm and /dev/kvm is usable), RF_VM_KEEP=1 keeps
# the run folder (console.log, cmd.sh) for debugging.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIMEOUT=${RF_VM_TIMEOUT:-300}
MEM=1024
SHARES=()
DRIVES=()
NVDIMM=
PIDFILE=
SMP=2
WIRE=
WIRE_ROLE=
ADDR=10.0.2.15/24

log() { echo "[rxe-vm] $*" >&2; }
die() {
	echo "[rxe-vm] ERROR: $*" >&2
	exit 125
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 125
}

while [ $# -gt 0 ]; do
	case $1 in
	--timeout)
		[ $# -ge 2 ] || usage
		TIMEOUT=$2
		shift 2
		;;
	--share)
		[ $# -ge 2 ] || usage
		SHARES+=("$2")
		shift 2
		;;
	--mem)
		[ $# -ge 2 ] || usage
		MEM=$2
		shift 2
		;;
	--drive)
		[ $# -ge 2 ] || usage
		DRIVES+=("$2")
		shift 2
		;;
	--nvdimm)
		[ $# -ge 2 ] || usage
		NVDIMM=$2
		shift 2
		;;
	--pidfile)
		[ $# -ge 2 ] || usage
		PIDFILE=$2
		shift 2
		;;
	--smp)
		[ $# -ge 2 ] || usage
		SMP=$2
		shift 2
		;;
	--wire)
		[ $# -ge 2 ] || usage
		WIRE=$2
		shift 2
		;;
	--wire-role)
		[ $# -ge 2 ] || usage
		WIRE_ROLE=$2
		shift 2
		;;
	--addr)
		[ $# -ge 2 ] || usage
		ADDR=$2
		shift 2
		;;
	--)
		shift
		break
		;;
	-h | --help) usage ;;
	*)
		echo "run.sh: unknown argument '$1' (the command goes after --)" >&2
		usage
		;;
	esac
done
[ $# -gt 0 ] || usage
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout wants whole seconds, not '$TIMEOUT'"
if ! [[ $MEM =~ ^[1-9][0-9]*$ ]] || [ "$MEM" -lt 256 ]; then
	die "--mem wants MiB >= 256, not '$MEM'"
fi
[[ $SMP =~ ^[1-8]$ ]] || die "--smp wants 1..8 vCPUs, not '$SMP'"
[[ $ADDR =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]] || die "--addr wants IP/NN, not '$ADDR'"
if [ -n "$WIRE" ]; then
	case $WIRE in /*) ;; *) die "--wire wants an absolute socket path, not '$WIRE'" ;; esac
	[[ $WIRE != *,* ]] || die "--wire: no commas in the path, please: $WIRE"
	case $WIRE_ROLE in
	server) ;;
	client) [ -S "$WIRE" ] || die "--wire $WIRE: no socket there (start the server side first)" ;;
	*) die "--wire-role wants server or client, not '$WIRE_ROLE'" ;;
	esac
fi

# need CMD PACKAGE: fail with the Debian package that provides CMD.
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found: install the Debian package '$2' (apt-get install $2)"
}
need qemu-system-x86_64 qemu-system-x86
need timeout coreutils
need rdma iproute2 # run inside the guest, from the host's /

# Shares: absolute, existing, one 9p tag each.  Paths with a tab or a
# newline cannot be passed to the guest.
SHARE_PATHS=()
for s in "${SHARES[@]}"; do
	[ -d "$s" ] || die "--share $s: not a directory"
	s=$(cd "$s" && pwd -P)
	[ "$s" != / ] || die "--share /: share a folder, not the root"
	[[ $s != *$'\t'* && $s != *$'\n'* ]] || die "--share: path has a tab or newline: $s"
	SHARE_PATHS+=("$s")
done
[[ $PWD != *$'\n'* ]] || die "the working directory has a newline in its name"

# Kernel + initramfs (downloads on the first run, reuses the cache after).
prep=$("$HERE/prepare.sh" --print) || exit 125
RF_VM_KVER='' RF_VM_KERNEL='' RF_VM_INITRD=''
eval "$prep"
if [ ! -f "$RF_VM_KERNEL" ] || [ ! -f "$RF_VM_INITRD" ]; then
	die "prepare.sh gave no kernel/initramfs"
fi

# Accelerator: KVM needs hardware virtualisation in the CPU *and* a usable
# /dev/kvm (these machines have the device but no vmx/svm: kvm aborts).
accel=${RF_VM_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		accel=kvm
	fi
fi
case $accel in
kvm) accel_opts=(-accel kvm -cpu host) ;;
tcg) accel_opts=(-accel "tcg,thread=multi" -cpu max) ;;
*) die "RF_VM_ACCEL must be kvm or tcg, not '$accel'" ;;
esac

# The run folder: cmd.sh, shares, and what the guest reports back
# (status, or error).  Shared as 9p tag "rfrun".
RUN=$(mktemp -d "${TMPDIR:-/tmp}/rf-vm.XXXXXX")
QPID=
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
	local rc=$?
	if [ -n "$QPID" ]; then
		kill -TERM "$QPID" 2>/dev/null || true
		wait "$QPID" 2>/dev/null || true
	fi
	if [ "${RF_VM_KEEP:-0}" = 1 ]; then
		log "run folder kept: $RUN"
	else
		rm -rf "$RUN"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cmd.sh: the caller's exported environment, cwd, then exec CMD.
{
	echo "# generated by tests/rxe-vm/run.sh; runs in the guest's chroot"
	while read -r name; do
		case $name in
		_ | SHLVL | OLDPWD | PWD | BASH_* | SHELLOPTS | BASHOPTS) continue ;;
		esac
		printf 'export %s=%q\n' "$name" "${!name}"
	done < <(compgen -e)
	printf 'if ! cd -- %q; then\n' "$PWD"
	printf '\techo %q | tee /run/rf-vm/error\n' \
		"working directory $PWD is not visible in the guest"
	printf '\texit 125\nfi\n'
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$RUN/cmd.sh"

# eth0's address for init.sh (it binds rxe0 to eth0 and waits for this GID)
echo "$ADDR" >"$RUN/net"

virtfs=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
	-virtfs "local,path=${RUN//,/,,},mount_tag=rfrun,security_model=none,multidevs=remap")
: >"$RUN/shares"
for i in "${!SHARE_PATHS[@]}"; do
	s=${SHARE_PATHS[$i]}
	virtfs+=(-virtfs "local,path=${s//,/,,},mount_tag=rfshare$i,security_model=none,multidevs=remap")
	printf 'rfshare%d\t%s\n' "$i" "$s" >>"$RUN/shares"
done

# Drives: raw files or NBD over a unix socket, as virtio disks.
drives=()
for d in "${DRIVES[@]}"; do
	case $d in
	nbd+unix:///\?socket=*)
		sock=${d#nbd+unix:///?socket=}
		[ -S "$sock" ] || die "--drive $d: $sock is not a socket"
		drives+=(-drive "file=nbd:unix:${sock//,/,,},format=raw,if=virtio")
		;;
	/*)
		[ -f "$d" ] || die "--drive $d: not a file"
		drives+=(-drive "file=${d//,/,,},format=raw,if=virtio")
		;;
	*) die "--drive wants an absolute image path or nbd+unix:///?socket=SOCK, not '$d'" ;;
	esac
done

# Emulated persistent memory: a file-backed NVDIMM (docs/DURABILITY.md).
machine=q35
mem_opts=(-m "$MEM")
nvdimm=()
if [ -n "$NVDIMM" ]; then
	case $NVDIMM in /*) ;; *) die "--nvdimm wants an absolute path, not '$NVDIMM'" ;; esac
	[[ $NVDIMM != *,* ]] || die "--nvdimm: no commas in the path, please: $NVDIMM"
	if [ ! -e "$NVDIMM" ]; then
		truncate -s 256M "$NVDIMM" || die "--nvdimm: cannot create $NVDIMM"
	fi
	[ -f "$NVDIMM" ] || die "--nvdimm $NVDIMM: not a regular file"
	nv_size=$(stat -c %s "$NVDIMM")
	[ $((nv_size % (2 << 20))) = 0 ] && [ "$nv_size" -ge $((64 << 20)) ] ||
		die "--nvdimm $NVDIMM: $nv_size bytes is not a multiple of 2 MiB of at least 64 MiB"
	machine=q35,nvdimm=on
	mem_opts=(-m "$MEM,slots=2,maxmem=$((MEM + nv_size / 1048576 + 1024))M")
	nvdimm=(-object "memory-backend-file,id=pm0,share=on,mem-path=$NVDIMM,size=$nv_size,align=2M"
		-device nvdimm,id=nv0,memdev=pm0)
fi
pidfile=()
[ -z "$PIDFILE" ] || pidfile=(-pidfile "$PIDFILE")

# eth0: user networking (one guest alone), or a point-to-point wire to
# another guest over a host unix socket (a MAC per side, from the address)
# shellcheck disable=SC2054 # commas belong to qemu's option values
netdev=(-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0)
if [ -n "$WIRE" ]; then
	IFS=. read -r _ o2 o3 o4 <<<"${ADDR%/*}"
	mac=$(printf '52:54:00:%02x:%02x:%02x' "$o2" "$o3" "$o4")
	netdev=(-netdev "stream,id=n0,server=$([ "$WIRE_ROLE" = server ] && echo on || echo off),addr.type=unix,addr.path=$WIRE"
		-device "virtio-net-pci,netdev=n0,mac=$mac")
fi

cmdline="console=ttyS0 quiet panic=-1 cryptomgr.notests"
cmdline+=" no_timer_check tsc=reliable random.trust_cpu=on 8250.nr_uarts=1"
cmdline+=" i8042.noaux i8042.nokbd i8042.nopnp"

log "booting kernel $RF_VM_KVER ($(basename "$RF_VM_KERNEL"), $accel, $SMP vCPUs, ${MEM} MiB, eth0 $ADDR${WIRE:+ on wire $WIRE ($WIRE_ROLE)}, timeout ${TIMEOUT}s)"
t0=${EPOCHREALTIME/,/.}
# stdin is /dev/null: qemu then leaves the terminal alone, and the guest's
# console (kernel messages, rxe device, CMD's output) streams to stdout.
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 \
	-nodefaults -no-user-config -display none -no-reboot \
	-machine "$machine" "${accel_opts[@]}" -smp "$SMP" "${mem_opts[@]}" \
	-kernel "$RF_VM_KERNEL" -initrd "$RF_VM_INITRD" -append "$cmdline" \
	-chardev "stdio,id=con0,signal=off,logfile=${RUN//,/,,}/console.log" -serial chardev:con0 \
	"${netdev[@]}" \
	"${virtfs[@]}" ${drives[@]+"${drives[@]}"} ${nvdimm[@]+"${nvdimm[@]}"} \
	${pidfile[@]+"${pidfile[@]}"} </dev/null &
QPID=$!
qrc=0
wait "$QPID" || qrc=$?
QPID=
elapsed=$(awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f", b - a }')

if [ -f "$RUN/error" ]; then
	die "guest harness error after ${elapsed}s: $(cat "$RUN/error")"
fi
if [ -f "$RUN/status" ]; then
	rc=$(tr -dc '0-9' <"$RUN/status")
	[ -n "$rc" ] || die "guest wrote an empty status"
	mtu=$(sed -n '/^RF_VM_MTU=/{s///;s/[^0-9].*//;p;q}' "$RUN/console.log" 2>/dev/null || true)
	log "VM done in ${elapsed}s (eth0 mtu ${mtu:-?}): command exited $rc"
	exit "$rc"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	log "TIMEOUT: the VM did not finish within ${TIMEOUT}s; qemu was killed"
	exit 124
fi
die "the VM stopped after ${elapsed}s without reporting a status (qemu exit $qrc): it failed to boot or crashed; see the console output above"
