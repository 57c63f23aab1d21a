#!/usr/bin/env bash
# rephubd --syslog: every line reaches syslog(3) with the ident "rephubd",
# the hub's pid, facility LOG_DAEMON and the priority of its level (err ->
# LOG_ERR, warn -> LOG_WARNING, info -> LOG_INFO, debug -> LOG_DEBUG), and
# nothing goes to stderr or stdout.
#
# No syslog daemon is needed and the machine's /dev/log is never touched:
# the hub runs in a private mount namespace (unshare --mount, propagation
# private) whose /dev is a fresh tmpfs holding a few device nodes and a
# /dev/log symlink to a datagram socket in the scratch dir; a python3
# listener writes every datagram it receives there as one line.
. "$(dirname "$0")/lib.sh"

hubd=$RF_BIN/rephubd
repctl=$RF_BIN/repctl
for b in "$hubd" "$repctl"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done
rf_require unshare python3 mount mknod
[ "$(id -u)" = 0 ] || rf_skip "needs root for a private mount namespace"
unshare --mount --propagation private true 2>/dev/null ||
	rf_skip "cannot create a mount namespace here (unshare --mount failed)"

devlog_before=$(stat -c '%F %i %N' /dev/log 2>&1 || true)
sock=$RF_TMP/log.sock
got=$RF_TMP/syslog.txt
: >"$got"

# The listener: one line per datagram (newlines inside escaped).
rf_spawn listener python3 -u -c '
import socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "ab", buffering=0) as f:
    while True:
        d = s.recv(65536)
        f.write(d.replace(b"\n", b"\\n") + b"\n")
' "$sock" "$got"
rf_wait_for 10 "the syslog listener's socket" test -S "$sock"

# "${in_ns[@]}" CMD...: run CMD (exec: same pid) with a private /dev whose log is $sock.
cat >"$RF_TMP/in-ns.sh" <<'EOF'
set -eu
sock=$1
shift
mount -t tmpfs -o mode=755,size=64k rf-test-dev /dev
for n in null:3 zero:5 full:7 random:8 urandom:9; do
	mknod -m 666 "/dev/${n%%:*}" c 1 "${n#*:}"
done
ln -s /proc/self/fd /dev/fd
ln -s "$sock" /dev/log
exec "$@"
EOF
in_ns=(unshare --mount --propagation private bash "$RF_TMP/in-ns.sh" "$sock")

rf_log "the harness: syslog(3) inside the namespace reaches the listener"
"${in_ns[@]}" python3 -c 'import syslog; syslog.openlog("rf-probe", syslog.LOG_PID, syslog.LOG_USER); syslog.syslog(syslog.LOG_NOTICE, "probe")' ||
	rf_fail "the probe failed"
rf_wait_for 10 "the probe datagram" grep -q '^<13>.* rf-probe\[[0-9]*\]: probe$' "$got"

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
write_conf() { # FILE STATE_DIR
	cat >"$1" <<EOF
[hub]
control = 127.0.0.1:$ctl_port
data = tcp://127.0.0.1:$data_port
state_dir = $2

[volume vm1-disk0]
recovery = $2/vm1-disk0.img
EOF
}
write_conf "$RF_TMP/hub.conf" "$RF_TMP/state"
write_conf "$RF_TMP/hub2.conf" "$RF_TMP/state2"

# has PRI PID TEXT: a datagram from rephubd[PID] with priority PRI saying TEXT.
has() {
	grep -E "^<$1>[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} rephubd\[$2\]: " "$got" |
		grep -qF -- "$3"
}
expect() { # PRI PID TEXT WHAT
	rf_wait_for 10 "$4 as <$1> from rephubd[$2]" has "$1" "$2" "$3"
	rf_log "  $4: <$1> ok"
}

# LOG_DAEMON (3 << 3) | LOG_ERR 3, LOG_WARNING 4, LOG_INFO 6, LOG_DEBUG 7
ERR=27 WARNING=28 INFO=30 DEBUG=31

rf_log "rephubd --syslog --log-level debug"
rf_spawn hub "${in_ns[@]}" "$hubd" --config "$RF_TMP/hub.conf" --syslog --log-level debug
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port"
expect $INFO "$hub_pid" "hub: ready: control 127.0.0.1:$ctl_port" "info (ready)"
"$repctl" --hub "127.0.0.1:$ctl_port" status >/dev/null || rf_fail "repctl status failed"
expect $DEBUG "$hub_pid" "control connection from 127.0.0.1:" "debug (a control connection)"
# Not a control frame: refused, and logged as a warning.
printf '%064d' 0 >"/dev/tcp/127.0.0.1/$ctl_port" || rf_fail "cannot send a bad frame"
expect $WARNING "$hub_pid" "bad magic" "warn (a malformed frame)"
rf_alive "$hub_pid"

rf_log "a second hub on the same ports fails with an error in syslog"
rc=0
"${in_ns[@]}" "$hubd" --config "$RF_TMP/hub2.conf" --syslog >"$RF_TMP/hub2.log" 2>&1 &
hub2_pid=$!
wait "$hub2_pid" || rc=$?
[ "$rc" = 1 ] || rf_fail "the second hub exited $rc, not 1"
expect $ERR "$hub2_pid" "hub: exiting: Address already in use" "err (its ports are taken)"
[ ! -s "$RF_TMP/hub2.log" ] || { cat "$RF_TMP/hub2.log"; rf_fail "the second hub wrote to stderr/stdout"; }

rf_log "SIGTERM: stopped, in syslog"
kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
[ "$rc" = 0 ] || rf_fail "rephubd exited $rc after SIGTERM"
expect $INFO "$hub_pid" "hub: stopped" "info (stopped)"

rf_log "nothing on stderr or stdout; every line from rephubd is LOG_DAEMON"
[ ! -s "$RF_TMP/hub.log" ] || { cat "$RF_TMP/hub.log"; rf_fail "rephubd --syslog wrote to stderr/stdout"; }
n=$(grep -c ' rephubd\[' "$got" || true)
[ "$n" -ge 5 ] || { cat "$got"; rf_fail "only $n lines from rephubd"; }
bad=$(grep ' rephubd\[' "$got" | grep -vE "^<($ERR|$WARNING|$INFO|$DEBUG)>[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} rephubd\[($hub_pid|$hub2_pid)\]: [a-z-]+: " || true)
[ -z "$bad" ] || { echo "$bad"; rf_fail "lines from rephubd with another facility, priority or form"; }
[ "$(stat -c '%F %i %N' /dev/log 2>&1 || true)" = "$devlog_before" ] ||
	rf_fail "the machine's /dev/log changed"
rf_log "  $n lines, e.g.: $(grep -m1 " rephubd\[$hub_pid\]: hub: ready" "$got")"
rf_log "all good"
