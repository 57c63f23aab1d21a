#!/usr/bin/env bash
# Prepare (or reuse) the soft-RoCE VM cache: Debian's own amd64 kernel,
# unpacked next to its modules, an uncompressed ELF vmlinux cut out of the
# bzImage, and a busybox initramfs that loads the RDMA/9p modules and runs
# tests/rxe-vm/init.sh.  Nothing is installed on the host.
#
#   tests/rxe-vm/prepare.sh [--print]
#
# --print writes shell-safe KEY=VALUE lines for run.sh on stdout:
#   RF_VM_KVER, RF_VM_KERNEL (the vmlinux, or the bzImage as a fallback),
#   RF_VM_INITRD.
# Progress and errors go to stderr.  Exit status: 0 ready, 125 failure.
#
# Environment:
#   RF_VM_CACHE       cache folder (default tests/rxe-vm/cache)
#   RF_VM_KERNEL_PKG  kernel package to use instead of what
#                     linux-image-amd64 depends on (e.g. linux-image-6.1.0-57-amd64)
#
# Layout of the cache (one folder per kernel ABI version, reused by later runs):
#   kernel-KVER/root/          dpkg-deb -x of linux-image-KVER (+ depmod output)
#   kernel-KVER/vmlinux        decompressed kernel, when extraction worked
#   kernel-KVER/ready          stamp: the above is complete
#   kernel-KVER/initramfs.cpio busybox + modules + init.sh (cpio newc)
#   kernel-KVER/initramfs.key  hash of what the initramfs was built from
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RF_VM_CACHE:-$HERE/cache}
PRINT=0

# Modules the guest needs, in the order init.sh should have them loaded;
# their dependencies are resolved with modprobe --show-depends below.
# crc32_generic is explicit: rdma_rxe asks the crypto API for "crc32" and
# nothing would load the provider (there is no modprobe in the initramfs).
# virtio_blk and ext4 serve run.sh --drive (a guest disk with a file system);
# nfit, nd_pmem, dax_pmem and device_dax serve run.sh --nvdimm (emulated
# persistent memory as a devdax device); dm_mod and dm_delay a slow disk
# (dmsetup's delay target) for tests that need the hub's apply to lag.
GUEST_MODULES=(virtio_pci virtio_net 9pnet_virtio 9p overlay crc32_generic
	rdma_rxe ib_uverbs rdma_ucm dummy virtio_blk crc32c_generic ext4
	nfit nd_pmem dax_pmem device_dax dm_mod dm_delay)

log() { echo "[rxe-vm prepare] $*" >&2; }
die() {
	echo "[rxe-vm prepare] ERROR: $*" >&2
	exit 125
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 125
}

while [ $# -gt 0 ]; do
	case $1 in
	--print) PRINT=1 ;;
	-h | --help) usage ;;
	*)
		echo "prepare.sh: unknown argument '$1'" >&2
		usage
		;;
	esac
	shift
done

# need CMD PACKAGE: fail with the Debian package that provides CMD.
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found: install the Debian package '$2' (apt-get install $2)"
}

need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need depmod kmod
need modprobe kmod
need cpio cpio
need xz xz-utils
need flock util-linux
need od coreutils
need sha256sum coreutils

# find_busybox: print the path of a statically linked busybox.
find_busybox() {
	local b
	for b in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)"; do
		[ -n "$b" ] && [ -x "$b" ] && elf_is_static "$b" && {
			echo "$b"
			return 0
		}
	done
	die "no statically linked busybox found: install the Debian package 'busybox-static'"
}

# elf_is_static FILE: true if the 64-bit ELF FILE has no PT_INTERP program
# header (no dynamic loader), i.e. it can run in an initramfs by itself.
elf_is_static() {
	local f=$1 phoff phentsize phnum type i
	[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || return 1
	phoff=$(od -An -t u8 -j 32 -N 8 "$f" | tr -d ' ')
	phentsize=$(od -An -t u2 -j 54 -N 2 "$f" | tr -d ' ')
	phnum=$(od -An -t u2 -j 56 -N 2 "$f" | tr -d ' ')
	for ((i = 0; i < phnum; i++)); do
		type=$(od -An -t u4 -j $((phoff + i * phentsize)) -N 4 "$f" | tr -d ' ')
		[ "$type" = 3 ] && return 1 # PT_INTERP
	done
	return 0
}

# resolve_kernel_pkg: print the versioned kernel package (linux-image-KVER).
# linux-image-cloud-amd64 is not an option: it has neither rdma_rxe nor 9p.
resolve_kernel_pkg() {
	if [ -n "${RF_VM_KERNEL_PKG:-}" ]; then
		echo "$RF_VM_KERNEL_PKG"
		return 0
	fi
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

# newest_cached_kver: the newest complete kernel in the cache, if any.
newest_cached_kver() {
	local f
	f=$(printf '%s\n' "$CACHE"/kernel-*/ready | sort -V | tail -n 1)
	[ -f "$f" ] || return 0
	f=${f%/ready}
	echo "${f##*/kernel-}"
}

# fetch_kernel KVER PKG: download and unpack PKG into kernel-KVER.  The work
# happens in a temporary folder renamed into place at the end, so an
# interrupted run leaves no half-made kernel-KVER behind.  Returns non-zero
# (after saying why) if the download fails.
fetch_kernel() {
	local kver=$1 pkg=$2 dir=$CACHE/kernel-$1 tmp deb
	local -a apt_opts=()

	rm -rf "$dir"
	tmp=$(mktemp -d "$CACHE/.kernel-$kver.XXXXXX")
	log "downloading $pkg (not installed on the host)"
	# As root, apt would drop privileges to _apt, which cannot write here.
	[ "$(id -u)" = 0 ] && apt_opts=(-o APT::Sandbox::User=root)
	if ! (cd "$tmp" && apt-get "${apt_opts[@]}" -q download "$pkg" >&2); then
		log "apt-get download $pkg failed (no network? run 'apt-get update' first?)"
		rm -rf "$tmp"
		return 1
	fi
	deb=$(ls "$tmp"/*.deb)
	log "unpacking $(basename "$deb")"
	dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $(basename "$deb") failed"
	rm -f "$deb"
	rm -rf "$tmp/root/usr/share/doc"
	[ -d "$tmp/root/lib/modules/$kver" ] || die "$pkg has no /lib/modules/$kver"
	# The package ships no modules.dep: its postinst runs depmod.
	depmod -b "$tmp/root" "$kver"
	extract_vmlinux "$tmp/root/boot/vmlinuz-$kver" "$tmp/vmlinux"
	echo "$pkg" >"$tmp/package"
	touch "$tmp/ready"
	mv "$tmp" "$dir"
}

# extract_vmlinux BZIMAGE OUT: cut the XZ payload out of the bzImage and
# decompress it into an ELF vmlinux (qemu boots it through its PVH entry
# point and skips the in-guest decompression: ~3.4 s per boot under TCG).
# On any failure OUT is not created and run.sh boots the bzImage instead.
extract_vmlinux() {
	local bz=$1 out=$2 off
	off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" 2>/dev/null | head -n 1 | cut -d: -f1) || true
	if [ -z "$off" ]; then
		log "no XZ payload in $(basename "$bz"); will boot the bzImage"
		return 0
	fi
	# --single-stream stops at the end of the first stream and ignores the
	# rest of the bzImage that follows it (so tail may die of SIGPIPE).
	if { tail -c +$((off + 1)) "$bz" || true; } | xz -dc --single-stream >"$out.tmp" 2>/dev/null &&
		[ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
		mv "$out.tmp" "$out"
	else
		rm -f "$out.tmp"
		log "could not extract vmlinux from $(basename "$bz"); will boot the bzImage"
	fi
}

# build_initramfs KVER: (re)build kernel-KVER/initramfs.cpio if its inputs
# (init.sh, busybox, module list, kernel) changed since the last build.
build_initramfs() {
	local kver=$1 dir=$CACHE/kernel-$1 busybox key tmp m deps line path base
	local -a paths=()

	busybox=$(find_busybox)
	key=$({
		echo "$kver ${GUEST_MODULES[*]}"
		sha256sum "$HERE/init.sh" "$HERE/prepare.sh" "$busybox" | cut -d' ' -f1
	} | sha256sum | cut -d' ' -f1)
	if [ -f "$dir/initramfs.cpio" ] && [ "$(cat "$dir/initramfs.key" 2>/dev/null)" = "$key" ]; then
		return 0
	fi

	log "building the initramfs"
	tmp=$(mktemp -d "$CACHE/.initramfs.XXXXXX")
	mkdir -p "$tmp"/{bin,sbin,dev,proc,sys,lib/modules,lower,newroot,rfrun,rw}
	cp "$busybox" "$tmp/bin/busybox"
	ln -s busybox "$tmp/bin/sh"
	cp "$HERE/init.sh" "$tmp/init"
	chmod 0755 "$tmp/init"

	# Module files in load order, each once (a dependency of several
	# modules is listed the first time it is needed).
	for m in "${GUEST_MODULES[@]}"; do
		deps=$(modprobe -C /dev/null -d "$dir/root" -S "$kver" --show-depends "$m") ||
			die "module $m not found in kernel $kver"
		while read -r line; do
			case $line in
			"insmod "*)
				path=${line#insmod }
				path=${path%% *}
				;;
			"builtin "*) continue ;;
			*) die "unexpected modprobe output for $m: $line" ;;
			esac
			case " ${paths[*]-} " in *" $path "*) continue ;; esac
			paths+=("$path")
		done <<<"$deps"
	done

	# Copy them decompressed: busybox insmod may not read .ko.xz/.ko.zst.
	: >"$tmp/modules.list"
	for path in "${paths[@]}"; do
		base=$(basename "$path")
		case $base in
		*.ko.xz) xz -dc "$path" >"$tmp/lib/modules/${base%.xz}" ;;
		*.ko.zst)
			need zstd zstd
			zstd -q -dc "$path" >"$tmp/lib/modules/${base%.zst}"
			;;
		*.ko.gz) gzip -dc "$path" >"$tmp/lib/modules/${base%.gz}" ;;
		*.ko) cp "$path" "$tmp/lib/modules/$base" ;;
		*) die "unexpected module file $path" ;;
		esac
		base=${base%.xz}
		base=${base%.zst}
		base=${base%.gz}
		echo "$base" >>"$tmp/modules.list"
	done

	# Uncompressed newc archive: no decompression in the (slow, TCG) guest.
	(cd "$tmp" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --owner=0:0 --quiet) >"$dir/initramfs.cpio.tmp"
	mv "$dir/initramfs.cpio.tmp" "$dir/initramfs.cpio"
	echo "$key" >"$dir/initramfs.key"
	rm -rf "$tmp"
	log "initramfs: ${#paths[@]} modules, $(du -k "$dir/initramfs.cpio" | cut -f1) KiB"
}

mkdir -p "$CACHE"
# One preparer at a time (ctest -j, several developers' shells).  Runs
# that only use the cache do not need the lock: files are replaced by rename.
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "timed out waiting for the lock on $CACHE/.lock"
# Leftovers of an interrupted preparation (nobody else holds the lock).
rm -rf "$CACHE"/.kernel-* "$CACHE"/.initramfs.*

pkg=$(resolve_kernel_pkg)
kver=
if [ -n "$pkg" ]; then
	kver=${pkg#linux-image-}
	if [ ! -f "$CACHE/kernel-$kver/ready" ]; then
		t0=$SECONDS
		if fetch_kernel "$kver" "$pkg"; then
			log "kernel $kver downloaded and unpacked in $((SECONDS - t0)) s"
		else
			kver=$(newest_cached_kver)
			[ -n "$kver" ] || die "cannot get $pkg and the cache has no kernel"
			log "falling back to the cached kernel $kver"
		fi
	fi
else
	# No apt metadata (apt-get update never ran): use what the cache has.
	kver=$(newest_cached_kver)
	[ -n "$kver" ] || die "cannot resolve the kernel package: 'apt-cache depends linux-image-amd64' found nothing (run 'apt-get update', or set RF_VM_KERNEL_PKG)"
	log "apt metadata unavailable; reusing cached kernel $kver"
fi

build_initramfs "$kver"

dir=$CACHE/kernel-$kver
kernel=$dir/vmlinux
[ -f "$kernel" ] || kernel=$dir/root/boot/vmlinuz-$kver
[ -f "$kernel" ] || die "no kernel image in $dir"

if [ "$PRINT" = 1 ]; then
	printf 'RF_VM_KVER=%q\n' "$kver"
	printf 'RF_VM_KERNEL=%q\n' "$kernel"
	printf 'RF_VM_INITRD=%q\n' "$dir/initramfs.cpio"
else
	log "ready: kernel $kver, $(basename "$kernel"), $dir/initramfs.cpio"
fi
