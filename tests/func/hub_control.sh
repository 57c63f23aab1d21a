#!/usr/bin/env bash
# rephubd's control channel against hostile and mistaken peers: every bad
# frame or request gets its ERROR (and a close where the stream cannot be
# trusted any more), and the hub keeps serving: repctl status still works,
# the process is alive, the log says why. Also --check-config, repctl's
# "cannot reach" message and a clean SIGTERM.
. "$(dirname "$0")/lib.sh"

rf_require jq
hubd=$RF_BIN/rephubd
repctl=$RF_BIN/repctl
poke=$RF_BIN/rf-ctl-poke
for b in "$hubd" "$repctl" "$poke"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
hub=127.0.0.1:$ctl_port
RF_HUB=$hub
state=$RF_TMP/state
conf=$RF_TMP/hub.conf
log=$RF_TMP/hub.log

cat >"$conf" <<EOF
; rephubd test configuration
[hub]
control = $hub
data = tcp://127.0.0.1:$data_port
state_dir = $state
ring_size = 1M

[volume vm1-disk0]
recovery = $state/vm1-disk0.img

[volume vm1-disk1]
recovery = $RF_TMP/vm1-disk1.img
EOF
# An existing 1 MiB image: a report with another size must be refused.
truncate -s 1M "$RF_TMP/vm1-disk1.img"

# ---------------------------------------------------------------- config
rf_log "--check-config on a good file"
"$hubd" --config "$conf" --check-config >"$RF_TMP/check.out" 2>&1 ||
	{ cat "$RF_TMP/check.out"; rf_fail "--check-config refused a good file"; }
grep -q "OK" "$RF_TMP/check.out" || rf_fail "--check-config printed no OK"

check_bad() { # NAME EXPECTED-MESSAGE CONFIG-TEXT
	local f=$RF_TMP/$1.conf out=$RF_TMP/$1.out rc=0
	printf '%s\n' "$3" >"$f"
	"$hubd" --config "$f" --check-config >"$out" 2>&1 || rc=$?
	[ "$rc" = 1 ] || { cat "$out"; rf_fail "$1: --check-config exited $rc, expected 1"; }
	grep -qF -- "$2" "$out" || { cat "$out"; rf_fail "$1: message '$2' missing"; }
	rf_log "  $1: $(head -n1 "$out")"
}
rf_log "--check-config on bad files"
check_bad unknown-key "unknown-key.conf:3: key 'ring_sise' in [hub]: unknown key" \
	"[hub]
state_dir = $state
ring_sise = 64M"
check_bad bad-addr "bad-addr.conf:2: key 'control' in [hub]:" \
	"[hub]
control = 127.0.0.1
state_dir = $state"
check_bad bad-url "bad-url.conf:2: key 'data' in [hub]:" \
	"[hub]
data = udp://127.0.0.1:1
state_dir = $state"
check_bad bad-size "bad-size.conf:3: key 'ring_size' in [hub]:" \
	"[hub]
state_dir = $state
ring_size = 12Q"
check_bad small-ring "small-ring.conf:3: key 'ring_size' in [hub]: '64K' is out of bounds" \
	"[hub]
state_dir = $state
ring_size = 64K"
check_bad dup-volume "dup-volume.conf:6: section [volume a]: duplicate volume (first on line 4)" \
	"[hub]
state_dir = $state

[volume a]
recovery = $state/a.img
[volume a]
recovery = $state/b.img"
check_bad missing-key "missing-key.conf:3: section [volume a]: missing required key 'recovery'" \
	"[hub]
state_dir = $state
[volume a]"
: >"$RF_TMP/a-file"
check_bad bad-path "bad-path.conf:2: key 'state_dir' in [hub]: '$RF_TMP/a-file/state' cannot be created: $RF_TMP/a-file is not a directory" \
	"[hub]
state_dir = $RF_TMP/a-file/state"
[ "$("$hubd" --config "$RF_TMP/no-such.conf" --check-config 2>&1 >/dev/null; echo $?)" != 0 ] ||
	rf_fail "--check-config accepted a missing file"

# ------------------------------------------------------------- start
rf_spawn hub "$hubd" --config "$conf" --log-level debug
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port"

still_serving() { # WHAT
	rf_alive "$hub_pid"
	"$repctl" --hub "$hub" status >"$RF_TMP/status.out" 2>&1 ||
		{ cat "$RF_TMP/status.out"; rf_fail "repctl status failed after $1"; }
	grep -q "^vm1-disk0 " "$RF_TMP/status.out" ||
		{ cat "$RF_TMP/status.out"; rf_fail "repctl status lists no vm1-disk0 after $1"; }
}
log_has() { # PATTERN WHAT
	rf_wait_for 5 "the log to say '$1' ($2)" grep -qF -- "$1" "$log"
}
poke() { # WHAT STEPS...
	local what=$1 out=$RF_TMP/poke.out
	shift
	"$poke" "$hub" "$@" >"$out" 2>&1 || { cat "$out"; rf_fail "$what"; }
	rf_log "  $what: ok"
}

rf_log "repctl status on a fresh hub"
still_serving "start-up"
cat "$RF_TMP/status.out"
[ "$(rf_status_get '.volumes | type')" = array ] || rf_fail "status --json"

rf_log "hostile frames"
poke "bad magic -> ERROR EPROTO + close" raw 0x12345678 1 9 0 0 0 expect ERROR EPROTO expect-close
still_serving "a bad magic"
log_has "bad magic" "bad magic"

poke "wrong version -> ERROR EPROTONOSUPPORT + close" \
	raw 0x54434652 2 9 0 0 0 expect ERROR EPROTONOSUPPORT expect-close
still_serving "a wrong protocol version"
log_has "protocol version 2 is not supported" "wrong version"

poke "unknown type -> ERROR EOPNOTSUPP, connection stays" \
	raw 0x54434652 1 999 4 0 4 expect ERROR EOPNOTSUPP status expect STATUS_OK
poke "type 33 (IO_OPEN_OK, sent only by the hub) -> ERROR EOPNOTSUPP" \
	raw 0x54434652 1 33 0 0 0 expect ERROR EOPNOTSUPP heartbeat expect HEARTBEAT
still_serving "an unknown type"
poke "malformed redirected IO and administration frames -> ERROR EBADMSG" \
	raw 0x54434652 1 34 16 0 16 expect ERROR EBADMSG \
	raw 0x54434652 1 32 2 0 2 expect ERROR EBADMSG \
	raw 0x54434652 1 48 2 0 2 expect ERROR EBADMSG \
	raw 0x54434652 1 50 13 0 13 expect ERROR EBADMSG status expect STATUS_OK
poke "IO on a handle with no failover test -> ERROR ESTALE" \
	raw 0x54434652 1 37 16 0 16 expect ERROR ESTALE heartbeat expect HEARTBEAT
still_serving "malformed IO and administration frames"
log_has "unknown message type 999" "unknown type"

poke "oversized length -> ERROR EPROTO + close" \
	raw 0x54434652 1 9 0x200000 0 0 expect ERROR EPROTO expect-close
still_serving "an oversized length"
log_has "above the 1 MiB + 4 KiB cap" "oversized length"

poke "reserved header bytes -> ERROR EPROTO + close" \
	raw 0x54434652 1 9 0 1 0 expect ERROR EPROTO expect-close
log_has "reserved header bytes not zero" "reserved bytes"
poke "two good raw frames in one write are both answered" \
	raw 0x54434652 1 9 0 0 0 raw 0x54434652 1 9 0 0 0 expect STATUS_OK expect STATUS_OK
# Half a header, then a close.
printf 'RFC' | (exec 3<>"/dev/tcp/127.0.0.1/$ctl_port"; cat >&3) || true
still_serving "a truncated header"

rf_log "requests that must be refused"
poke "VOLUME_REPORT before HELLO -> EPERM" \
	report vm1-disk0 1 1048576 expect ERROR EPERM status expect STATUS_OK
poke "unknown volume -> ENOENT" \
	hello agent-x expect HELLO_OK report no-such-volume 1 1048576 expect ERROR ENOENT \
	status expect STATUS_OK
log_has "no volume named 'no-such-volume'" "unknown volume"
poke "size mismatch with an existing image -> EINVAL" \
	hello agent-x expect HELLO_OK report vm1-disk1 2 2097152 expect ERROR EINVAL
log_has "recovery image $RF_TMP/vm1-disk1.img is 1048576 bytes" "size mismatch"
poke "vol_id reused -> EEXIST" \
	hello agent-x expect HELLO_OK report vm1-disk0 7 1048576 expect VOLUME_OK \
	report vm1-disk1 7 1048576 expect ERROR EEXIST
poke "malformed HELLO -> EBADMSG, connection stays" \
	raw 0x54434652 1 2 3 0 3 expect ERROR EBADMSG status expect STATUS_OK
poke "HELLO with protocol 9 -> EPROTONOSUPPORT + close" \
	hello agent-y 9 expect ERROR EPROTONOSUPPORT expect-close

rf_log "a volume owned by another live agent -> EBUSY"
"$poke" "$hub" hello agent-a expect HELLO_OK report vm1-disk0 1 1048576 expect VOLUME_OK \
	sleep 4000 >"$RF_TMP/agent-a.out" 2>&1 &
holder=$!
rf_wait_for 5 "agent-a to report vm1-disk0" rf_status_true '.volumes[] | select(.name == "vm1-disk0") | .agent == "agent-a"'
poke "second agent -> EBUSY" \
	hello agent-b expect HELLO_OK report vm1-disk0 1 1048576 expect ERROR EBUSY
wait "$holder" || { cat "$RF_TMP/agent-a.out"; rf_fail "agent-a's session failed"; }
rf_wait_for 5 "vm1-disk0 to be disconnected" \
	bash -c "'$repctl' --hub $hub status | grep -q '^vm1-disk0 *disconnected'"
still_serving "refused requests"

rf_log "hub state: protocol errors counted"
[ "$(rf_hub_field protocol_errors)" -ge 1 ] || rf_fail "protocol errors were not counted"

# ------------------------------------------------------------- repctl
rf_log "repctl against a port nobody listens on"
dead_port=$(rf_free_port)
rc=0
"$repctl" --hub "127.0.0.1:$dead_port" status >"$RF_TMP/dead.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || { cat "$RF_TMP/dead.out"; rf_fail "repctl exited $rc, expected 2"; }
grep -qx "repctl: cannot reach hub at 127.0.0.1:$dead_port: Connection refused" \
	"$RF_TMP/dead.out" || { cat "$RF_TMP/dead.out"; rf_fail "repctl's message"; }
rc=0
"$repctl" --hub "$hub" wait vm1-disk0 --synced --timeout 1 >"$RF_TMP/wait.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$RF_TMP/wait.out"; rf_fail "repctl wait exited $rc, expected 1"; }
grep -q "repctl: vm1-disk0 not synced after 1 s: state disconnected" "$RF_TMP/wait.out" ||
	{ cat "$RF_TMP/wait.out"; rf_fail "repctl wait's message"; }

# ------------------------------------------------------------- SIGHUP
rf_log "SIGHUP with an unchanged file: a reload that changes nothing, not a death"
volumes=$(rf_status_get '[.volumes[].name] | join(" ")')
[ -n "$volumes" ] || rf_fail "no volumes in the status before the reload"
kill -HUP "$hub_pid"
rf_wait_for 5 "the reload" rf_status_true '.hub.reloads == 1 and .hub.reload_failures == 0'
[ "$(rf_status_get '[.volumes[].name] | join(" ")')" = "$volumes" ] ||
	rf_fail "an unchanged file changed the volumes: '$volumes' -> '$(rf_status_get '[.volumes[].name] | join(" ")')'"
still_serving "SIGHUP"  # (hub_reload.sh tests what a reload changes)

# ------------------------------------------------------------- SIGTERM
rf_log "SIGTERM"
kill -TERM "$hub_pid"
for _ in $(seq 50); do kill -0 "$hub_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$hub_pid" 2>/dev/null && rf_fail "rephubd still runs 5 s after SIGTERM"
rc=0
wait "$hub_pid" || rc=$?
[ "$rc" = 0 ] || rf_fail "rephubd exited $rc after SIGTERM"
grep -q "stopped" "$log" || rf_fail "the log does not say 'stopped'"
[ -f "$state/volumes/vm1-disk0.state" ] || rf_fail "no state file for vm1-disk0"
rf_log "all good"
