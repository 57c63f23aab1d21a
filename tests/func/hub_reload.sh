#!/usr/bin/env bash
# SIGHUP reloads the configuration without dropping connected agents
# (docs/HUB.md, "Signals"): a volume added while its agent was refused is
# protected after the reload (the hub asks the agent to report again), an
# unused volume is removed, a volume in use is kept, keys are reloaded, a
# reloadable setting changes, a restart-only setting keeps its running
# value with a warning, and a broken file changes nothing. The connected
# agent keeps its session throughout and keeps replicating.
. "$(dirname "$0")/lib.sh"

rf_require nbdkit qemu-io jq cmp
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
plugin=$RF_LIB/nbdkit-repagent-plugin.so
[ -f "$filter" ] && [ -f "$plugin" ] || rf_fail "the nbdkit filter or plugin is not built"

ctl_port=$(rf_free_port)
hub="127.0.0.1:$ctl_port"
data="tcp://127.0.0.1:$(rf_free_port)"
mkdir -p "$RF_TMP/state"
key() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
k1=$(key) k2=$(key) kops=$(key) kops2=$(key)
printf 'vm1 %s\nvm2 %s\nops %s admin\n' "$k1" "$k2" "$kops" >"$RF_TMP/hub.psk"
echo "vm1 $k1" >"$RF_TMP/vm1.psk"
echo "vm2 $k2" >"$RF_TMP/vm2.psk"
echo "ops $kops admin" >"$RF_TMP/ops.psk"
echo "ops2 $kops2 admin" >"$RF_TMP/ops2.psk"
chmod 600 "$RF_TMP"/*.psk

conf() { # CONTROL RESYNC_RATE VOLUME-SECTIONS...
	printf '[hub]\ncontrol = %s\ndata = %s\nstate_dir = %s\nring_size = 8M\nresync_rate = %s\npsk_file = %s\n' \
		"$1" "$data" "$RF_TMP/state" "$2" "$RF_TMP/hub.psk"
	shift 2
	local v
	for v in "$@"; do
		printf '\n[volume %s]\nrecovery = %s/state/%s.img\n' "$v" "$RF_TMP" "$v"
		case $v in vm*-disk0) printf 'agent = %s\n' "${v%-disk0}" ;; esac
		# vm1-disk0 keeps a journal (its image lags): compared through a test view.
		if [ "$v" = vm1-disk0 ]; then printf 'journal_time = 1h\n'; fi
	done
}
conf "$hub" 0 vm1-disk0 spare >"$RF_TMP/hub.conf"
head -c $((4 << 20)) /dev/urandom >"$RF_TMP/vm1.img"
head -c $((4 << 20)) /dev/urandom >"$RF_TMP/vm2.img"

rf_spawn hub "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 20
log=$RF_TMP/hub.log
admin() { "$RF_BIN/repctl" --hub "$hub" --psk-file "$RF_TMP/ops.psk" "$@"; }
RF_HUB=$hub RF_PSK=$RF_TMP/ops.psk
volumes() { rf_status_get '[.volumes[].name] | sort | join(" ")'; }
reloads_are() { rf_status_true --argjson n "$1" --argjson f "$2" '.hub.reloads == $n and .hub.reload_failures == $f'; }
agent() { # ID
	rf_spawn "nbdkit-$1" nbdkit -f -v -U "$RF_TMP/$1.sock" --filter="$filter" file "$RF_TMP/$1.img" \
		repagent-hub="$hub" repagent-volume="$1-disk0" repagent-agent-id="$1" \
		repagent-bitmap="$RF_TMP/$1.bitmap" repagent-psk-file="$RF_TMP/$1.psk"
	rf_wait_for 20 "nbdkit $1" test -S "$RF_TMP/$1.sock"
}
write() { # ID PATTERN OFFSET
	qemu-io -f raw -c "write -P $2 $3 256k" "nbd+unix:///?socket=$RF_TMP/$1.sock" >>"$RF_TMP/qemu-io.log"
}

rf_log "vm1 protected; vm2 refused (its volume is not configured yet)"
agent vm1
write vm1 0x11 0
admin wait vm1-disk0 --synced --timeout 60 || rf_fail "vm1-disk0 did not sync"
agent vm2
rf_wait_for 20 "vm2's refusal" grep -q "hub refused volume vm2-disk0: no volume named" "$RF_TMP/nbdkit-vm2.log"
session=$(rf_agent_field vm1 session)
sessions=$(rf_agent_field vm1 sessions)
[ "$session" -gt 0 ] || rf_fail "no session for vm1"
"$RF_BIN/repctl" --hub "$hub" --psk-file "$RF_TMP/ops2.psk" status >/dev/null 2>&1 &&
	rf_fail "ops2 was accepted before its key was added"

rf_log "reload: +vm2-disk0, -spare, -vm1-disk0 (busy), a new control port, resync_rate 123M, key ops2"
conf "127.0.0.1:$(rf_free_port)" 123M vm2-disk0 >"$RF_TMP/hub.conf"
echo "ops2 $kops2 admin" >>"$RF_TMP/hub.psk"
lines=$(wc -l <"$log")
kill -HUP "$hub_pid"
rf_wait_for 10 "the reload" reloads_are 1 0
after() { tail -n +"$((lines + 1))" "$log"; }
# What only the log says: the summary's counts (busy volumes kept, keys) and
# the warnings a user must act on.
for want in "reloaded: 2 volume(s) (1 added, 1 removed, 1 kept while busy), 4 key(s)" \
	"volume vm1-disk0 is no longer configured, but its agent is connected: kept" \
	"control '$hub' -> '127.0.0.1:.*' needs a restart; keeping '$hub'"; do
	after | grep -q "$want" || { after; rf_fail "reload log lacks: $want"; }
done
[ "$(rf_agent_field vm1 connected) $(rf_agent_field vm1 session) $(rf_agent_field vm1 sessions)" = \
	"true $session $sessions" ] || { rf_status; rf_fail "the reload dropped vm1 (or changed its session)"; }
[ "$(volumes)" = "vm1-disk0 vm2-disk0" ] || rf_fail "volumes after the reload: $(volumes)"
[ "$(rf_hub_field resync_rate)" = $((123 << 20)) ] || rf_fail "resync_rate not reloaded"
[ "$(rf_hub_field control)" = "$hub" ] || rf_fail "control changed without a restart"
"$RF_BIN/repctl" --hub "$hub" --psk-file "$RF_TMP/ops2.psk" status >/dev/null ||
	rf_fail "the reloaded key ops2 is refused"

rf_log "vm2 reports again and is protected; vm1 keeps replicating"
rf_wait_for 20 "vm2's new report" grep -q "the hub asks for the refused volumes again" "$RF_TMP/nbdkit-vm2.log"
write vm2 0x22 1M
write vm1 0x33 2M
admin wait vm2-disk0 --synced --timeout 60 || rf_fail "vm2-disk0 did not sync after the reload"
admin wait vm1-disk0 --synced --timeout 60 || rf_fail "vm1-disk0 did not stay in sync"
cmp "$RF_TMP/vm2.img" "$RF_TMP/state/vm2-disk0.img" || rf_fail "vm2's replica differs"
[ ! -e "$RF_TMP/state/spare.img" ] || rf_fail "the removed volume got an image"

rf_log "a failover test's open view survives a reload that reorders the volumes"
# The view of vm1-disk0 (at latest: byte-identical to vm1's disk) stays
# open in one qemu-io across a reload that swaps the volumes' places in
# the hub: its handle must still name vm1-disk0.
admin test-failover start vm1-disk0 >/dev/null || rf_fail "test-failover vm1-disk0"
rf_spawn view nbdkit -f -v -U "$RF_TMP/view.sock" "$plugin" hub="$hub" volume=vm1-disk0 \
	psk_file="$RF_TMP/ops.psk"
rf_wait_for 20 "the view's socket" test -S "$RF_TMP/view.sock"
qemu-img convert -f raw -O raw "nbd+unix:///?socket=$RF_TMP/view.sock" "$RF_TMP/vm1-view.img" ||
	rf_fail "cannot read vm1-disk0's view"
cmp "$RF_TMP/vm1.img" "$RF_TMP/vm1-view.img" || rf_fail "vm1's replica (its view at latest) differs"
mkfifo "$RF_TMP/qio.in"
rf_spawn qemu-io-view bash -c "exec qemu-io -f raw 'nbd+unix:///?socket=$RF_TMP/view.sock' <'$RF_TMP/qio.in'"
qio_pid=$RF_LAST_PID
exec 7>"$RF_TMP/qio.in"
# Progress from nbdkit's debug lines (qemu-io's own output is buffered).
reads_are() { [ "$(grep -c "pread count=262144 offset=0" "$RF_TMP/view.log")" = "$1" ]; }
echo "read -P 0x11 0 256k" >&7
rf_wait_for 20 "the view's first read" reads_are 1
conf "$hub" 123M vm1-disk0 vm2-disk0 >"$RF_TMP/hub.conf"
kill -HUP "$hub_pid"
rf_wait_for 10 "the second reload" reloads_are 2 0
[ "$(volumes)" = "vm1-disk0 vm2-disk0" ] || rf_fail "volumes after the second reload: $(volumes)"
echo "read -P 0x11 0 256k" >&7
rf_wait_for 20 "the view's second read" reads_are 2
echo quit >&7
exec 7>&-
wait "$qio_pid" || true
[ "$(grep -c "read 262144/262144 bytes" "$RF_TMP/qemu-io-view.log")" = 2 ] ||
	{ cat "$RF_TMP/qemu-io-view.log"; rf_fail "qemu-io did not complete both reads"; }
if grep -q "Pattern verification failed\|read failed" "$RF_TMP/qemu-io-view.log"; then
	cat "$RF_TMP/qemu-io-view.log"
	rf_fail "the open view read another volume (or failed) after the reload"
fi
admin test-failover stop vm1-disk0 >/dev/null || rf_fail "test-failover stop"

rf_log "a reload that would give a kept volume's image to a new one is refused"
# vm1-disk0 is dropped from the file while its agent is connected (so it is
# kept), and a new volume names vm1-disk0's image: alone the file is valid.
conf "$hub" 123M vm2-disk0 >"$RF_TMP/hub.conf"
printf '\n[volume vm9]\nrecovery = %s/state/vm1-disk0.img\n' "$RF_TMP" >>"$RF_TMP/hub.conf"
"$RF_BIN/rephubd" --config "$RF_TMP/hub.conf" --check-config >/dev/null ||
	rf_fail "the file alone should be valid"
lines=$(wc -l <"$log")
kill -HUP "$hub_pid"
rf_wait_for 10 "the refusal" reloads_are 3 1
after | grep -q "reload refused: volumes vm9 and vm1-disk0 would share the image" ||
	{ after; rf_fail "the refusal gives no reason"; }
[ "$(volumes)" = "vm1-disk0 vm2-disk0" ] || rf_fail "a refused reload changed the volumes"
conf "$hub" 123M vm1-disk0 vm2-disk0 >"$RF_TMP/hub.conf"

rf_log "a broken file changes nothing"
echo "bogus_key = 1" >>"$RF_TMP/hub.conf"
lines=$(wc -l <"$log")
kill -HUP "$hub_pid"
rf_wait_for 10 "the refusal" reloads_are 4 2
after | grep -q "reload refused: 1 problem(s)" || { after; rf_fail "the refusal does not count the problems"; }
after | grep -q "key 'bogus_key' in \[volume vm2-disk0\]: unknown key" || rf_fail "no reason given"
[ "$(volumes)" = "vm1-disk0 vm2-disk0" ] || rf_fail "a refused reload changed the volumes"
rf_alive "$hub_pid"
rf_log "PASS"
