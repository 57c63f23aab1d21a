#!/usr/bin/env bash
# The real-guest proof of issue #6: Linux guests under qemu (the soft-RoCE
# harness, tests/rxe-vm, with a virtio disk) on a protected disk, a
# failover test, and a failover.
#
#  1. production guest, phase 1: disk = nbdkit + the repagent filter;
#     mkfs.ext4, files with known checksums (p1.sha), sync, umount.
#  2. the host notes the point P (repctl points: the newest time).
#  3. production guest, phase 2 (background): overwrites and deletes some
#     phase-1 files, writes new ones, syncs, and keeps writing until the test
#     guest is done; then writes final.sha (every file on the disk).
#  4. meanwhile: repctl test-failover start --at P; a second guest boots
#     from the plugin's view (nbdkit-repagent-plugin.so): the file system
#     holds exactly the phase-1 files, checksums equal; it writes a file.
#  5. test stopped; repctl failover --at latest; a third guest boots from
#     the recovery image (a plain raw file): every file of final.sha with
#     its checksum, and nothing the test guest wrote.
#
# Usage: failover_guest.sh            (host side; ctest label vm)
#        failover_guest.sh --guest MODE SHARE   (inside a VM)
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" = --guest ]; then
	mode=$2 share=$3
	export PATH=$PATH:/usr/sbin:/sbin
	mnt=/mnt/rf
	mkdir -p "$mnt"
	case $mode in
	prod1)
		mkfs.ext4 -q -F /dev/vda
		mount /dev/vda "$mnt"
		mkdir "$mnt/p1"
		for i in $(seq 1 12); do
			head -c $(((i * 37 % 9 + 1) * 65536)) /dev/urandom >"$mnt/p1/f$i"
		done
		(cd "$mnt" && sha256sum p1/*) >"$share/p1.sha"
		sync
		umount "$mnt"
		echo "prod1: $(wc -l <"$share/p1.sha") files written, synced, unmounted"
		;;
	prod2)
		mount /dev/vda "$mnt"
		head -c 300000 /dev/urandom >"$mnt/p1/f1" # overwrite
		rm "$mnt/p1/f2"                            # delete
		mkdir "$mnt/p2"
		n=0
		while [ ! -e "$share/view-done" ] && [ $n -lt 400 ]; do
			n=$((n + 1))
			head -c $(((n % 7 + 1) * 50000)) /dev/urandom >"$mnt/p2/g$n"
			[ $((n % 5)) -eq 0 ] && sync
			sleep 0.2
		done
		sync
		(cd "$mnt" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum) \
			>"$share/final.sha"
		umount "$mnt"
		echo "prod2: $n files written while the test ran; $(wc -l <"$share/final.sha") files in total"
		;;
	view)
		mount /dev/vda "$mnt"
		(cd "$mnt" && sha256sum -c --quiet "$share/p1.sha") ||
			{ echo "view: phase-1 checksums differ"; exit 1; }
		got=$(cd "$mnt" && find . -type f ! -path './lost+found/*' | sort | tr '\n' ' ')
		want=$(sed 's/^[0-9a-f]*  /.\//' "$share/p1.sha" | sort | tr '\n' ' ')
		[ "$got" = "$want" ] || { echo "view: files differ: got '$got' want '$want'"; exit 1; }
		echo "view: exactly the $(wc -l <"$share/p1.sha") phase-1 files, checksums equal"
		head -c 1000000 /dev/urandom >"$mnt/test-only"
		sync
		umount "$mnt"
		echo "view: wrote /test-only (1 MB) through the plugin"
		: >"$share/view-done"
		;;
	recover)
		mount -o ro /dev/vda "$mnt"
		(cd "$mnt" && sha256sum -c --quiet "$share/final.sha") ||
			{ echo "recover: checksums differ"; exit 1; }
		got=$(cd "$mnt" && find . -type f ! -path './lost+found/*' | sort | tr '\n' ' ')
		want=$(sed 's/^[0-9a-f]*  //' "$share/final.sha" | sort | tr '\n' ' ')
		[ "$got" = "$want" ] || { echo "recover: file list differs"; exit 1; }
		[ ! -e "$mnt/test-only" ] || { echo "recover: the test's file is there"; exit 1; }
		echo "recover: all $(wc -l <"$share/final.sha") files present, checksums equal"
		umount "$mnt"
		;;
	*) echo "unknown guest mode $mode"; exit 2 ;;
	esac
	exit 0
fi

rf_require nbdkit qemu-system-x86_64 sha256sum
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
plugin=$RF_LIB/nbdkit-repagent-plugin.so
[ -f "$filter" ] && [ -f "$plugin" ] || rf_fail "the filter or the plugin is not built"
vm=$RF_SOURCE_DIR/tests/rxe-vm/run.sh
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

ctl_port=$(rf_free_port)
hub="127.0.0.1:$ctl_port"
disk=$RF_TMP/disk.img
recovery=$RF_TMP/state/vm1-disk0.img
sock=$RF_TMP/prod.sock
tsock=$RF_TMP/test.sock
share=$RF_TMP/share
mkdir -p "$RF_TMP/state" "$share"
cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $hub
data = tcp://127.0.0.1:$(rf_free_port)
state_dir = $RF_TMP/state
ring_size = 32M

[volume vm1-disk0]
recovery = $recovery
journal_time = 1h
journal_size = 2G
CONF
repctl() { "$RF_BIN/repctl" --hub "$hub" "$@"; }
t_start=$(date +%s)
step() { rf_log "[+$(($(date +%s) - t_start))s] $*"; }
guest() { # guest NAME DRIVE MODE
	local name=$1 drive=$2 mode=$3 rc=0
	"$vm" --timeout 400 --mem 512 --share "$share" --drive "$drive" -- \
		bash "$self" --guest "$mode" "$share" >"$RF_TMP/vm-$name.log" 2>&1 || rc=$?
	grep -E "^(prod|view|recover)[0-9]*:" "$RF_TMP/vm-$name.log" | sed 's/^/    guest: /'
	[ $rc -eq 0 ] || { tail -n 30 "$RF_TMP/vm-$name.log"; rf_fail "guest $name ($mode) exited $rc"; }
}

step "128 MiB disk; hub with a 1h journal; nbdkit + repagent filter"
truncate -s 128M "$disk"
rf_spawn hub "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 20
rf_spawn nbdkit nbdkit -f -U "$sock" --filter="$filter" file "$disk" \
	repagent-hub="$hub" repagent-volume=vm1-disk0 repagent-bitmap="$RF_TMP/vm1-disk0.bitmap"
rf_wait_for 20 "nbdkit socket" test -S "$sock"
repctl wait vm1-disk0 --synced --timeout 120 >/dev/null

step "production guest, phase 1: mkfs.ext4, files, sync"
guest prod1 "nbd+unix:///?socket=$sock" prod1
repctl wait vm1-disk0 --synced --timeout 120 >/dev/null
point=$(repctl points vm1-disk0 | awk '/^newest:/ {print $5}')
pseq=$(repctl points vm1-disk0 | awk '/^newest:/ {print $3}')
step "point P: seq $pseq at $point"
repctl points vm1-disk0 | sed 's/^/    /'
sleep 1

step "production guest, phase 2 starts (keeps writing during the test)"
"$vm" --timeout 600 --mem 512 --share "$share" --drive "nbd+unix:///?socket=$sock" -- \
	bash "$self" --guest prod2 "$share" >"$RF_TMP/vm-prod2.log" 2>&1 &
prod2_pid=$!
RF_PIDS+=("$prod2_pid")
# Wait until phase 2 has written past P.
for _ in $(seq 600); do
	[ "$(repctl points vm1-disk0 | awk '/^newest:/ {print $3}')" -gt "$pseq" ] && break
	sleep 0.1
done
[ "$(repctl points vm1-disk0 | awk '/^newest:/ {print $3}')" -gt "$pseq" ] ||
	rf_fail "phase 2 wrote nothing within 60 s"

step "failover test at P ($point)"
repctl test-failover start vm1-disk0 --at "$point" | sed 's/^/    /'
rec_sum=$(sha256sum <"$recovery")
rf_spawn plugin nbdkit -f -U "$tsock" "$plugin" hub="$hub" volume=vm1-disk0
rf_wait_for 20 "plugin socket" test -S "$tsock"

step "test guest boots from the plugin's view"
guest view "nbd+unix:///?socket=$tsock" view
before=$(repctl points vm1-disk0 | awk '/^newest:/ {print $3}')
step "waiting for production phase 2 to finish"
rc=0
wait "$prod2_pid" || rc=$?
grep -E "^prod2:" "$RF_TMP/vm-prod2.log" | sed 's/^/    guest: /'
[ $rc -eq 0 ] || { tail -n 30 "$RF_TMP/vm-prod2.log"; rf_fail "production phase 2 exited $rc"; }
repctl wait vm1-disk0 --synced --timeout 120 >/dev/null
after=$(repctl points vm1-disk0 | awk '/^newest:/ {print $3}')
step "production replicated during the test: newest seq $pseq -> $before -> $after"
[ "$(sha256sum <"$recovery")" = "$rec_sum" ] || rf_fail "the test modified the recovery image"

step "stop the test; fail over at latest"
repctl test-failover stop vm1-disk0 | sed 's/^/    /'
repctl failover vm1-disk0 --at latest | tee "$RF_TMP/failover.txt" | sed 's/^/    /'
grep -q "recovery image: $recovery" "$RF_TMP/failover.txt" || rf_fail "no image path printed"
cmp "$disk" "$recovery" || rf_fail "the recovery image differs from the production disk"
step "recovery image byte-identical to the production disk"

step "third guest boots from the recovery image $recovery"
guest recover "$recovery" recover
rf_alive "$hub_pid"
step "PASS: guest files at P in the test view; every file after failover"
