#!/bin/sh
# /init of the soft-RoCE test VM (busybox ash; prepare.sh copies this file
# into the initramfs, run.sh boots it).  It:
#   1. loads the modules listed in /modules.list (dependency order),
#   2. mounts the host's / (9p tag "hostroot", read-only) under an overlay
#      with a tmpfs upper layer (the host's /tmp shows through it, so a
#      checkout under /tmp works), plus proc, sys, dev and /dev/shm,
#   3. mounts run.sh's run folder (tag "rfrun") at /run/rf-vm and each
#      --share folder (tags listed in /run/rf-vm/shares) at its host path,
#   4. brings up eth0 (10.0.2.15/24, or the address in /rfrun/net: run.sh
#      --addr) and binds rxe0 to it,
#   5. chroots into the overlay and runs /run/rf-vm/cmd.sh with the host's
#      bash, writes its exit status to /run/rf-vm/status, prints
#      RF_VM_EXIT=<n> and powers off.
# A harness failure writes /run/rf-vm/error instead (run.sh returns 125).
# The run folder is mounted at /rfrun in the initramfs and bound into the
# new root.

PATH=/bin:/sbin
export PATH
NEWROOT=/newroot
RUNDIR=$NEWROOT/run/rf-vm
# 9p options: large messages; cache=mmap keeps MAP_SHARED working on the
# read-write shares, cache=loose lets the read-only root use the page cache.
P9="trans=virtio,version=9p2000.L,msize=512000"

/bin/busybox --install -s /bin

say() { echo "[rxe-vm guest] $*"; }

# fail MESSAGE: harness error; tell the host if the run folder is mounted.
fail() {
	echo "RF_VM_ERROR: $*"
	if [ -n "$RFRUN_MOUNTED" ]; then
		echo "$*" >/rfrun/error
		sync
	fi
	poweroff -f
	sleep 10
}
RFRUN_MOUNTED=

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Plain \n line ends for everything userspace prints on the console (the
# host reads it as a log file, not as a terminal).
stty -onlcr 2>/dev/null

while read -r mod; do
	insmod "/lib/modules/$mod" || fail "insmod $mod failed"
done </modules.list

mount -t 9p -o "$P9,cache=mmap" rfrun /rfrun || fail "cannot mount the run folder (9p tag rfrun)"
RFRUN_MOUNTED=1
mount -t 9p -o "$P9,cache=loose,ro" hostroot /lower || fail "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work $NEWROOT ||
	fail "cannot mount the overlay root"

mount -t proc proc $NEWROOT/proc
mount -t sysfs sysfs $NEWROOT/sys
mount -t devtmpfs devtmpfs $NEWROOT/dev
mkdir -p $NEWROOT/dev/shm $NEWROOT/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $NEWROOT/dev/shm
mount -t devpts devpts $NEWROOT/dev/pts 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs $NEWROOT/run
mkdir -p $RUNDIR
mount --bind /rfrun $RUNDIR || fail "cannot bind the run folder into the new root"

# Shares: "<tag> <path>" per line (tab-separated), mounted read-write at the
# same path as on the host.
if [ -f $RUNDIR/shares ]; then
	while IFS='	' read -r tag path; do
		[ -n "$tag" ] || continue
		if ! mkdir -p "$NEWROOT$path" ||
			! mount -t 9p -o "$P9,cache=mmap" "$tag" "$NEWROOT$path"; then
			fail "cannot mount share $path (9p tag $tag)"
		fi
	done <$RUNDIR/shares
fi

# Network: lo, and eth0 (virtio-net on qemu user networking, or a wire to
# another guest) with jumbo frames if the NIC takes them.  run.sh writes
# eth0's address (IP/NN) to the run folder's "net".
addr=10.0.2.15/24
[ ! -s /rfrun/net ] || read -r addr </rfrun/net
ip=${addr%/*}
# the RoCEv2 IPv4-mapped GID ends in the address in hex (10.0.2.15: 0a00:020f)
gidtail=$(echo "$ip" | awk -F. '{ printf ":%02x%02x:%02x%02x", $1, $2, $3, $4 }')
ip link set lo up
mtu=9000
ip link set eth0 mtu $mtu 2>/dev/null || mtu=1500
ip link set eth0 mtu $mtu || fail "cannot set the MTU of eth0"
ip addr add "$addr" dev eth0 || fail "cannot configure eth0 ($addr)"
ip link set eth0 up || fail "cannot bring eth0 up"
say "eth0 $addr mtu $mtu"
echo "RF_VM_MTU=$mtu"

# Soft-RoCE on eth0, with the host's rdma tool (iproute2).
[ -x $NEWROOT/bin/bash ] || fail "the host has no /bin/bash"
[ -x $NEWROOT/usr/bin/rdma ] || [ -x $NEWROOT/sbin/rdma ] || [ -x $NEWROOT/bin/rdma ] ||
	fail "the host has no 'rdma' tool: install the Debian package iproute2"
in_root() { chroot $NEWROOT /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
in_root rdma link add rxe0 type rxe netdev eth0 || fail "rdma link add rxe0 failed"

# Wait (bounded) for the port to be ACTIVE and the RoCEv2 IPv4 GID
# (index 1) to appear.
port=/sys/class/infiniband/rxe0/ports/1
i=0
until grep -q ACTIVE $port/state 2>/dev/null &&
	grep -q "$gidtail\$" $port/gids/1 2>/dev/null; do
	i=$((i + 1))
	[ $i -le 100 ] || fail "rxe0 did not become ACTIVE with GID 1 = $ip within 10 s"
	sleep 0.1
done
in_root rdma link show
say "rxe0 gid[1] $(cat $port/gids/1) ($(cat $port/gid_attrs/types/1 2>/dev/null))"
if in_root sh -c 'command -v ibv_devinfo' >/dev/null 2>&1; then
	in_root ibv_devinfo -d rxe0
fi

# Emulated persistent memory (run.sh --nvdimm): make the NVDIMM a devdax
# namespace the first time (the mode is stored on it), then wait for
# /dev/dax0.0.
if [ -e /dev/pmem0 ] || [ -e /sys/bus/nd/devices/region0 ]; then
	if [ ! -e /dev/dax0.0 ]; then
		in_root ndctl create-namespace -f -e namespace0.0 -m devdax >/dev/null ||
			fail "ndctl could not make the NVDIMM a devdax namespace (Debian package ndctl)"
	fi
	i=0
	until [ -c /dev/dax0.0 ]; do
		i=$((i + 1))
		[ $i -le 50 ] || fail "no /dev/dax0.0 within 5 s of the devdax namespace"
		sleep 0.1
	done
	say "persistent memory: /dev/dax0.0 ($(cat /sys/bus/dax/devices/dax0.0/size 2>/dev/null) bytes)"
	echo "RF_VM_DAX=/dev/dax0.0"
fi

# Memory registration pins pages: lift the locked-memory limit.
# shellcheck disable=SC3045 # busybox ash has ulimit -l
ulimit -l unlimited
say "running command"
chroot $NEWROOT /bin/bash /run/rf-vm/cmd.sh </dev/null
rc=$?
echo $rc >/rfrun/status
sync
echo "RF_VM_EXIT=$rc"
poweroff -f
sleep 10
