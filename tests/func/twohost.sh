#!/usr/bin/env bash
# Two hosts on one wire (#16): tests/rxe-vm/run2.sh boots host a
# (192.168.77.1, the recovery host) and host b (192.168.77.2, the protected
# host), soft-RoCE on the link between them, and this script runs in both
# (the role is the last argument). One boot pair, three scenarios:
#
#  1. deploy: README.md's "Two-host RDMA deployment" followed literally. The
#     hub configuration, the key commands, the hub's start line and the
#     agent's nbdkit and repctl lines are read from the README itself (only
#     10.0.0.2 -> 192.168.77.1, 10.0.0.1 -> 192.168.77.2, eth1 -> eth0 and
#     full paths to the build's binaries change), so the README cannot drift
#     from what runs. qemu-io and fio write through nbdkit on b while the
#     initial sync runs; b runs `repctl wait --synced` across the wire; the
#     recovery image on a equals the disk on b, and the data went over rdma.
#  2. linkcut: fio writes on b while the wire is cut for 25 s (longer than
#     three heartbeat periods; wire_cut below says how) and mended: every
#     guest write succeeds, a
#     sees the volume leave `protected` (disconnected/resyncing) and come
#     back, and the images are identical again.
#  3. failover: `repctl failover` on a; the recovery image equals the disk;
#     a serves it read-only over NBD across the wire and b reads exactly its
#     disk from it; a write on b after the failover succeeds locally and does
#     not reach the recovery image.
#
# Usage: twohost.sh                (host side; ctest twohost_rdma, label vm)
#        twohost.sh --guest a|b    (run by run2.sh inside the guests)
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" != --guest ]; then
	for t in qemu-system-x86_64 nbdkit qemu-io qemu-img fio jq sha256sum; do
		command -v "$t" >/dev/null 2>&1 || rf_fail "'$t' is not installed (scripts/deps.sh installs it)"
	done
	for f in "$RF_BIN/rephubd" "$RF_BIN/repctl" "$RF_LIB/nbdkit-repagent-filter.so"; do
		[ -e "$f" ] || rf_fail "$f is not built"
	done
	rc=0
	"$RF_SOURCE_DIR/tests/rxe-vm/run2.sh" --timeout "${RF_TWOHOST_TIMEOUT:-420}" \
		--mem-a 1536 --mem-b 1024 -- bash "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" --guest || rc=$?
	case $rc in
	0) rf_log "PASS: deploy, link cut and failover across two hosts over rdma" ;;
	1) rf_fail "host a (the hub) failed (see [a] above)" ;;
	2) rf_fail "host b (the protected host) failed (see [b] above)" ;;
	3) rf_fail "both hosts failed (see above)" ;;
	124) rf_fail "the pair timed out" ;;
	*) rf_fail "the pair harness failed (exit $rc)" ;;
	esac
	exit 0
fi

role=$2
. "$RF_SOURCE_DIR/tests/rxe-vm/pair.sh"
export PATH=$PATH:/usr/sbin:/sbin
HUB_IP=192.168.77.1
VOL=vm1-disk0
say() { rf_log "[$role] $*"; }
wait_or_fail() { pair_wait "$1" "$2" || rf_fail "[$role] no '$1' from the other host"; }

# The README's section, its fenced blocks, and the lab's addresses for the
# README's (10.0.0.2 is the recovery host, 10.0.0.1 the protected one).
readme_section() {
	awk '/^## Two-host RDMA deployment/ { on = 1; next } on && /^## / { exit } on' "$RF_SOURCE_DIR/README.md"
}
# readme_block REGEX: the first fenced block of the section matching REGEX
# (reads to the end: an early exit could SIGPIPE readme_section, and
# pipefail would call that a failure)
readme_block() {
	readme_section | awk -v pat="$1" '
		/^```/ { if (inb) { if (!found && b ~ pat) { printf "%s", b; found = 1 } b = ""; inb = 0 } else inb = 1; next }
		inb { b = b $0 "\n" }
		END { exit !found }'
}
to_lab() {
	sed -e 's/10\.0\.0\.2/192.168.77.1/g' -e 's/10\.0\.0\.1/192.168.77.2/g' -e 's/netdev eth1/netdev eth0/' \
		-e "s#^repctl #$RF_BIN/repctl #" -e "s#^rephubd #$RF_BIN/rephubd #" \
		-e "s#--filter=nbdkit-repagent-filter.so#--filter=$RF_LIB/nbdkit-repagent-filter.so#"
}
# join backslash-continued lines
join_lines() { sed -e ':a' -e '/\\$/N; s/\\\n//; ta'; }
# The link cut: every packet eth0 sends is dropped (netem loss 100%, the
# module loaded from the VM's kernel cache), on both hosts, so the wire is
# dead both ways while the NICs and rxe ports stay up, as when a cable or a
# switch between two hosts fails. Not `ip link set eth0 down`: on this
# kernel's soft-RoCE (6.1) a port that went down while an RC QP was sending
# leaves rdma_cm unable to connect from or to that device afterwards (the
# REQ arrives, ESTABLISHED never comes; measured with ib_write_bw -R and
# ib_write_lat -R across run2.sh, cutting either host), and `rdma link
# delete` to reset it blocks while the agent holds the device. An RDMA NIC
# is not affected; tests/rxe-vm/README.md has the details.
wire_cut() {
	local root
	root=${RF_VM_CACHE:-$RF_SOURCE_DIR/tests/rxe-vm/cache}/kernel-$(uname -r)/root
	modprobe -d "$root" sch_netem || rf_fail "cannot load sch_netem from $root"
	tc qdisc add dev eth0 root netem loss 100% || rf_fail "tc netem failed"
}
wire_mend() { tc qdisc del dev eth0 root || rf_fail "tc qdisc del failed"; }

# ---------------------------------------------------------------- host a
if [ "$role" = a ]; then
	hub_ctl=$HUB_IP:7470
	say "hub.conf from the README"
	mkdir -p /etc/rephub /var/lib/rephub /dev/shm/rephub-rings
	readme_block '\\[hub\\]' | to_lab >/etc/rephub/hub.conf || rf_fail "no [hub] block in the README's two-host section"
	grep -q "^data = rdma://$HUB_IP:7471" /etc/rephub/hub.conf || rf_fail "the README's hub has no rdma data address"
	grep -q '^psk_file' /etc/rephub/hub.conf || rf_fail "the README's hub has no psk_file"
	sed 's/^/    /' /etc/rephub/hub.conf
	say "keys, with the README's commands"
	keys=$(readme_block 'genkey' | to_lab) || rf_fail "no genkey block in the README"
	(cd /etc/rephub && bash -euc "$keys") || rf_fail "the README's key commands failed"
	[ "$(stat -c %a /etc/rephub/keys.psk)" = 600 ] || rf_fail "keys.psk is not mode 0600"
	cp /etc/rephub/vm1.psk /etc/rephub/ops.psk "$RF_PAIR_SYNC"/
	hubline=$(readme_block 'rephubd --config' | to_lab | grep "/rephubd ") || rf_fail "no rephubd line in the README"
	rdma link show | grep -q 'rxe0/1 .*netdev eth0' || rf_fail "rxe0 is not bound to eth0"
	ulimit -l unlimited
	say "starting: $hubline"
	rf_spawn hub bash -c "exec $hubline"
	hub_pid=$RF_LAST_PID
	rf_wait_for 30 "the hub on $hub_ctl" bash -c "exec 3<>/dev/tcp/$HUB_IP/7470"
	export RF_HUB=$hub_ctl RF_PSK=/etc/rephub/ops.psk
	# Every state the volume goes through, in order (sampled every 0.3 s).
	(
		last=
		for _ in $(seq 3000); do
			s=$(rf_volume_field "$VOL" state)
			if [ -n "$s" ] && [ "$s" != "$last" ]; then
				echo "$(date +%s.%N | cut -c1-14) $s" >>/tmp/states
				last=$s
			fi
			sleep 0.3
		done
	) &
	sampler=$!
	RF_PIDS+=("$sampler")
	pair_mark a-hub-up

	# 1. deploy
	wait_or_fail b-synced1 240
	want=$(pair_get b-synced1)
	got=$(sha256sum </var/lib/rephub/$VOL.img | cut -d' ' -f1)
	say "disk on b $want, recovery image on a $got"
	[ "$want" = "$got" ] || rf_fail "deploy: the recovery image differs from b's disk"
	[ "$(rf_hub_field data)" = "rdma://$HUB_IP:7471" ] || rf_fail "the hub's data address is $(rf_hub_field data)"
	[ "$(rf_agent_field vm1 attached)" = true ] || rf_fail "agent vm1 is not attached to the data path"
	[ "$(rf_hub_field authentication)" = true ] || rf_fail "the hub does not authenticate"
	rx=$(rdma statistic show link rxe0/1 2>/dev/null | grep -o 'rcvd_pkts [0-9]*' | cut -d' ' -f2 || true)
	say "deploy: identical; rxe0 received ${rx:-?} packets"
	[ -z "$rx" ] || [ "$rx" -gt 1000 ] || rf_fail "only $rx packets over rxe0: the data did not go over rdma"
	pair_mark a-ok1

	# 2. link cut (both hosts drop what they send, from b-cut to b-mended)
	wait_or_fail b-cut 120
	wire_cut
	say "the wire is cut"
	wait_or_fail b-mended 120
	wire_mend
	say "the wire is back"
	wait_or_fail b-synced2 300
	want=$(pair_get b-synced2)
	got=$(sha256sum </var/lib/rephub/$VOL.img | cut -d' ' -f1)
	say "volume states seen:"
	sed 's/^/    /' /tmp/states
	[ "$want" = "$got" ] || rf_fail "link cut: the recovery image differs from b's disk after the outage"
	cut_at=$(pair_get b-cut)
	after=$(awk -v t="$cut_at" '$1 >= t { print $2 }' /tmp/states | tr '\n' ' ')
	say "after the cut: $after"
	case " $after" in *" disconnected "* | *" resyncing "* | *" syncing "*) ;;
	*) rf_fail "the volume never left protected during the outage (states after the cut: $after)" ;;
	esac
	[ "$(rf_volume_field "$VOL" state)" = protected ] || rf_fail "the volume is not protected after the outage"
	pair_mark a-ok2

	# 3. failover, then serve the recovery image to b
	say "repctl failover $VOL"
	"$RF_BIN/repctl" --hub "$hub_ctl" --psk-file /etc/rephub/ops.psk failover "$VOL" | sed 's/^/    /'
	got=$(sha256sum </var/lib/rephub/$VOL.img | cut -d' ' -f1)
	[ "$want" = "$got" ] || rf_fail "failover: the recovery image differs from b's disk"
	rf_spawn serve nbdkit -f -r -i "$HUB_IP" -p 10809 file /var/lib/rephub/$VOL.img
	rf_wait_for 20 "nbdkit serving the recovery image" bash -c "exec 3<>/dev/tcp/$HUB_IP/10809"
	pair_mark a-serving
	wait_or_fail b-wrote-after 120
	sleep 2
	got=$(sha256sum </var/lib/rephub/$VOL.img | cut -d' ' -f1)
	[ "$want" = "$got" ] || rf_fail "a write after the failover reached the recovery image"
	say "failover: the recovery image served to b, untouched by b's later write"
	rf_alive "$hub_pid"
	pair_mark a-done
	exit 0
fi

# ---------------------------------------------------------------- host b
[ "$role" = b ] || rf_fail "unknown role $role"
wait_or_fail a-hub-up 120
mkdir -p /etc/rephub /etc/repagent /var/lib/repagent /srv
(
	umask 077
	cp "$RF_PAIR_SYNC/vm1.psk" /etc/repagent/vm1.psk
	cp "$RF_PAIR_SYNC/ops.psk" /etc/rephub/ops.psk
)
disk=/srv/$VOL.img
size_mb=64
head -c $((size_mb << 20)) /dev/urandom >"$disk"
lines=$(readme_block 'nbdkit -U' | to_lab | join_lines) || rf_fail "no nbdkit block in the README"
nbdline=$(grep '^nbdkit ' <<<"$lines") || rf_fail "no nbdkit line in the README"
statusline=$(grep "/repctl .* status" <<<"$lines") || rf_fail "no repctl status line in the README"
# The README's nbdkit forks into the background and logs to syslog; here it
# stays in the foreground (-f) so that the test holds its pid and its log.
nbdline=${nbdline/nbdkit /nbdkit -f }
ulimit -l unlimited
say "agent: $nbdline"
rf_spawn agent bash -c "exec $nbdline"
nbd_pid=$RF_LAST_PID
rf_wait_for 20 "nbdkit's socket" test -S /run/$VOL.sock
rf_alive "$nbd_pid"
uri="nbd+unix:///?socket=/run/$VOL.sock"
repctl() { "$RF_BIN/repctl" --hub "$HUB_IP:7470" --psk-file /etc/rephub/ops.psk "$@"; }

# 1. deploy
say "qemu-io and fio write while the initial sync runs"
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 512k 4k' -c 'write -z 8M 1M' \
	-c 'discard 16M 1M' "$uri" >/tmp/qemu-io.log || rf_fail "qemu-io failed"
timeout 120 fio --output=/tmp/fio1.json --output-format=json --ioengine=nbd --uri="$uri" \
	--size="${size_mb}M" --offset=0 --time_based --runtime=6 --group_reporting \
	--name=mixed --rw=randwrite --bsrange=512-256k --numjobs=2 --iodepth=8 \
	--name=small --rw=randwrite --bs=4k --iodepth=16 >/dev/null || rf_fail "fio failed"
say "$statusline"
# (three tries: under TCG on a loaded host a handshake can exceed the hub's
# 5 s handshake_timeout)
for try in 1 2 3; do
	bash -c "$statusline" >/tmp/status.txt 2>&1 && break
	say "repctl status failed ($try): $(tail -1 /tmp/status.txt)"
	[ "$try" -lt 3 ] || rf_fail "the README's repctl status failed three times"
	sleep 2
done
sed 's/^/    /' /tmp/status.txt
repctl wait "$VOL" --synced --timeout 200 || rf_fail "not synced"
pair_mark b-synced1 "$(sha256sum <"$disk" | cut -d' ' -f1)"
wait_or_fail a-ok1 60

# 2. link cut under writes
say "fio writes for 50 s; the wire is cut 5 s in, for 25 s"
timeout 150 fio --output=/tmp/fio2.json --output-format=json --ioengine=nbd --uri="$uri" \
	--size="${size_mb}M" --offset=0 --time_based --runtime=50 \
	--name=cut4k --rw=randwrite --bs=4k --iodepth=4 --rate_iops=300 \
	--name=cut64k --rw=randwrite --bs=64k --iodepth=2 --rate_iops=20 >/dev/null &
fio_pid=$!
RF_PIDS+=("$fio_pid")
sleep 5
pair_mark b-cut "$(date +%s.%N | cut -c1-14)"
wire_cut
say "the wire is cut (netem loss 100% on eth0, both hosts)"
sleep 25
wire_mend
pair_mark b-mended
say "the wire is back"
wait "$fio_pid" || rf_fail "fio failed while the link was cut: a guest write failed"
errs=$(jq '[.jobs[].error] | add' /tmp/fio2.json)
ios=$(jq '[.jobs[].write.total_ios] | add' /tmp/fio2.json)
[ "$errs" = 0 ] || rf_fail "fio reported errors during the outage: $errs"
say "fio: $ios writes during the outage window, none failed"
repctl wait "$VOL" --synced --timeout 180 || rf_fail "not synced after the link came back"
repctl status | sed 's/^/    /'
pair_mark b-synced2 "$(sha256sum <"$disk" | cut -d' ' -f1)"
sha2=$(pair_get b-synced2)
wait_or_fail a-ok2 60

# 3. failover: read the recovery image a serves, then write locally
wait_or_fail a-serving 120
timeout 120 qemu-img convert -f raw -O raw "nbd://$HUB_IP:10809" /tmp/served.img ||
	rf_fail "cannot read the recovery image a serves"
[ "$(sha256sum </tmp/served.img | cut -d' ' -f1)" = "$sha2" ] ||
	rf_fail "the served recovery image differs from the disk"
qemu-io -f raw -r -c 'read 0 1M' "nbd://$HUB_IP:10809" >/dev/null ||
	rf_fail "qemu-io could not read the served image"
say "the recovery image served by a equals this disk"
qemu-io -f raw -c 'write -P 0x77 0 1M' "$uri" >/dev/null || rf_fail "a write after the failover failed"
pair_mark b-wrote-after
wait_or_fail a-done 60
say "done"
