#!/usr/bin/env bash
# Control channel authentication (docs/PROTOCOL.md, "Authentication"):
# rephubd with psk_file, the real agent (nbdkit + repagent filter), repctl,
# and an independent Python implementation of the handshake
# (tests/func/ctl_auth.py) for what the C clients never send.
#
# - key files: a loose mode and a malformed line are refused with reasons;
# - the agent with its key protects a disk (byte-identical replica);
# - no key, a wrong key, an unknown identity, a corrupted proof: refused
#   with a clear log line, counted, nothing applied;
# - roles: an agent key cannot ask STATUS, an admin key cannot HELLO, an
#   agent cannot HELLO under another agent's name nor report a volume that
#   the config gives to another agent;
# - the other direction: an agent with a key refuses a hub that does not
#   authenticate, and an impostor hub whose proof is wrong; it sends it
#   nothing after the handshake.
. "$(dirname "$0")/lib.sh"

rf_require nbdkit qemu-io python3 jq cmp
[ -x "$RF_BIN/rephubd" ] || rf_fail "rephubd not built"
filter=$RF_LIB/nbdkit-repagent-filter.so
[ -f "$filter" ] || rf_fail "$filter not built"
authpy="$RF_SOURCE_DIR/tests/func/ctl_auth.py"

ctl_port=$(rf_free_port)
hub="127.0.0.1:$ctl_port"
disk=$RF_TMP/disk.img
recovery=$RF_TMP/state/vm1-disk0.img
sock=$RF_TMP/nbd.sock
mkdir -p "$RF_TMP/state" "$RF_TMP/keys"
hexkey() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
k_vm1=$(hexkey) k_vm2=$(hexkey) k_ops=$(hexkey) k_wrong=$(hexkey)

# The hub knows every client; each client gets its own line only.
{
	echo "# rephubd keys"
	echo "vm1 $k_vm1 agent"
	echo "vm2 $k_vm2"
	echo "ops $k_ops admin"
} >"$RF_TMP/keys/hub.psk"
echo "vm1 $k_vm1" >"$RF_TMP/keys/vm1.psk"
echo "ops $k_ops admin" >"$RF_TMP/keys/ops.psk"
echo "vm1 $k_wrong" >"$RF_TMP/keys/vm1-wrong.psk"
echo "ops $k_wrong admin" >"$RF_TMP/keys/ops-wrong.psk"
chmod 600 "$RF_TMP"/keys/*.psk

conf() { # PSK-FILE-LINE
	cat <<CONF
[hub]
control = $hub
data = tcp://127.0.0.1:$data_port
state_dir = $RF_TMP/state
ring_size = 16M
metrics = 127.0.0.1:$met_port
$1

[volume vm1-disk0]
recovery = $recovery
agent = vm1

[volume vm2-disk0]
recovery = $RF_TMP/state/vm2-disk0.img
CONF
}
data_port=$(rf_free_port)
met_port=$(rf_free_port)
conf "psk_file = $RF_TMP/keys/hub.psk" >"$RF_TMP/hub.conf"

rf_log "key files: a loose mode and a bad line are refused by --check-config"
cp "$RF_TMP/keys/hub.psk" "$RF_TMP/keys/loose.psk"
chmod 644 "$RF_TMP/keys/loose.psk"
conf "psk_file = $RF_TMP/keys/loose.psk" >"$RF_TMP/loose.conf"
"$RF_BIN/rephubd" --config "$RF_TMP/loose.conf" --check-config >"$RF_TMP/check.txt" 2>&1 &&
	rf_fail "a world-readable psk_file was accepted"
grep -q "group or others may access it (mode 0644).*chmod 600" "$RF_TMP/check.txt" ||
	{ cat "$RF_TMP/check.txt"; rf_fail "no reason for the loose mode"; }
printf 'vm1 %s\nvm2 abcd\n' "$k_vm1" >"$RF_TMP/keys/bad.psk"
chmod 600 "$RF_TMP/keys/bad.psk"
conf "psk_file = $RF_TMP/keys/bad.psk" >"$RF_TMP/bad.conf"
"$RF_BIN/rephubd" --config "$RF_TMP/bad.conf" --check-config >"$RF_TMP/check.txt" 2>&1 &&
	rf_fail "a malformed psk_file was accepted"
grep -q "bad.psk:2: the key is not 32..128 hex digits" "$RF_TMP/check.txt" ||
	{ cat "$RF_TMP/check.txt"; rf_fail "no FILE:LINE reason for the bad key"; }
"$RF_BIN/rephubd" --config "$RF_TMP/hub.conf" --check-config >/dev/null ||
	rf_fail "the good configuration was refused"

rf_log "hub with psk_file; 8 MiB disk of random data"
head -c $((8 << 20)) /dev/urandom >"$disk"
rf_spawn hub "$RF_BIN/rephubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port" 20
grep -q "authentication on: 3 key(s)" "$RF_TMP/hub.log" || rf_fail "no start-up line for auth"
repctl() { "$RF_BIN/repctl" --hub "$hub" "$@"; }
admin() { repctl --psk-file "$RF_TMP/keys/ops.psk" "$@"; }
py() { python3 "$authpy" client "$hub" "$@"; }
RF_HUB=$hub RF_PSK=$RF_TMP/keys/ops.psk
failures() { rf_hub_field auth_failures; }
hub_log_has() { grep -q "$1" "$RF_TMP/hub.log" || rf_fail "hub log lacks: $1"; }

rf_log "repctl: no key, a wrong key, the right key"
rc=0
repctl status >/dev/null 2>"$RF_TMP/out.txt" || rc=$?
[ $rc -ne 0 ] || rf_fail "status without a key succeeded"
grep -q "authentication required" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "repctl does not say a key is needed"; }
hub_log_has "message type 9 before authentication: refused"
rc=0
repctl --psk-file "$RF_TMP/keys/ops-wrong.psk" status >/dev/null 2>"$RF_TMP/out.txt" || rc=$?
[ $rc -ne 0 ] || rf_fail "status with a wrong key succeeded"
grep -q "authentication as 'ops' failed: the hub refused our proof" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "repctl does not explain the wrong key"; }
hub_log_has "authentication as 'ops' refused: wrong key"
admin status >/dev/null || rf_fail "status with the admin key failed"
REPCTL_PSK_FILE="$RF_TMP/keys/ops.psk" repctl status --json >/dev/null ||
	rf_fail "REPCTL_PSK_FILE is not used"
[ "$(failures)" -ge 2 ] || rf_fail "failures not counted ($(failures))"
metric() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$met_port/metrics').read().decode())" |
	awk -v m="$1" '$1 == m { print $2 }'; }
[ "$(metric rephub_auth_failures_total)" = "$(failures)" ] ||
	rf_fail "rephub_auth_failures_total $(metric rephub_auth_failures_total) != $(failures)"

rf_log "the Python client: unknown identity, corrupted proof, roles"
py --identity nobody --key "$k_vm1" --hello nobody >"$RF_TMP/out.txt"
# A challenge first (the hub does not tell which identities exist), then EACCES.
[ "$(sed -n 1p "$RF_TMP/out.txt")" = AUTH_CHALLENGE ] &&
	grep -q "^ERROR EACCES authentication failed" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "unknown identity: not challenged, then refused"; }
hub_log_has "authentication as 'nobody' refused: no key for this identity"
py --identity vm2 --key "$k_vm2" --corrupt-proof --hello vm2 >"$RF_TMP/out.txt"
grep -q "^ERROR EACCES authentication failed" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "a corrupted proof was accepted"; }
py --identity vm2 --key "$k_vm2" --status --hello vm1 >"$RF_TMP/out.txt"
cat "$RF_TMP/out.txt"
sed -n 2p "$RF_TMP/out.txt" | grep -q "^AUTH_OK role=1 hub-proof=good" ||
	rf_fail "vm2 did not authenticate as an agent with a good hub proof"
sed -n 3p "$RF_TMP/out.txt" | grep -q "^ERROR EACCES identity 'vm2' (role agent) may not send" ||
	rf_fail "an agent key could ask STATUS"
sed -n 4p "$RF_TMP/out.txt" | grep -q "^ERROR EACCES authenticated as 'vm2'" ||
	rf_fail "vm2 could HELLO as vm1"
# expect_line WHAT PATTERN ARGS...: the Python client's last line matches.
expect_last() {
	local what=$1 pat=$2
	shift 2
	py "$@" >"$RF_TMP/out.txt"
	tail -n 1 "$RF_TMP/out.txt" | grep -q "$pat" || { cat "$RF_TMP/out.txt"; rf_fail "$what"; }
}
expect_last "an agent key could send ADMIN" "^ERROR EACCES identity 'vm2' (role agent) may not send" \
	--identity vm2 --key "$k_vm2" --send 50 00
expect_last "an admin key could send PROGRESS" "^ERROR EACCES identity 'ops' (role admin) may not send" \
	--identity ops --key "$k_ops" --send 12 00
expect_last "VOLUME_REPORT before authentication" "^ERROR EACCES authentication required" \
	--report vm1-disk0 $((8 << 20))
expect_last "AUTH_PROOF before AUTH_START" "^ERROR EACCES authentication failed" \
	--send 66 "$(printf '%064d' 0)"
expect_last "a second AUTH_START" "^ERROR EACCES authentication failed" \
	--identity vm2 --key "$k_vm2" --auth-start-again
hub_log_has "authentication as 'vm2' refused: a second AUTH_START"
expect_last "a big frame before authentication" "^ERROR EACCES authentication failed" \
	--send 9 "$(printf '%0600d' 0)"
hub_log_has "refused: a frame of more than 256 bytes before authenticating"
rf_log "a connection that never authenticates is closed after 5 s"
python3 -c "import socket; s = socket.create_connection(('127.0.0.1', $ctl_port)); s.settimeout(30); print(len(s.recv(1)))" \
	>"$RF_TMP/out.txt"
[ "$(cat "$RF_TMP/out.txt")" = 0 ] || rf_fail "the silent connection was not closed"
hub_log_has "not authenticated within 5 s: closing"
py --identity ops --key "$k_ops" --hello ops >"$RF_TMP/out.txt"
grep -q "^ERROR EACCES identity 'ops' (role admin) may not send" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "an admin key could HELLO"; }
py --identity vm2 --key "$k_vm2" --hello vm2 --report vm1-disk0 $((8 << 20)) >"$RF_TMP/out.txt"
grep -q "^ERROR EACCES volume 'vm1-disk0' belongs to agent 'vm1'" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "vm2 could report vm1's volume"; }
py --hello vm1 --report vm1-disk0 $((8 << 20)) >"$RF_TMP/out.txt"
grep -q "^ERROR EACCES authentication required" "$RF_TMP/out.txt" ||
	{ cat "$RF_TMP/out.txt"; rf_fail "HELLO without authentication was not refused"; }
[ ! -e "$recovery" ] || rf_fail "a refused peer got the recovery image created"
# Only vm2, which authenticated as itself, is an agent now.
ids=$(rf_status_get '[.agents[].id] | join(" ")')
[ "$ids" = vm2 ] || rf_fail "agents after the refusals: '$ids' (want only vm2)"
rf_alive "$hub_pid"

rf_log "the agent with a wrong key is refused and changes nothing"
rf_spawn nbdkit-wrong nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
	repagent-hub="$hub" repagent-volume=vm1-disk0 repagent-agent-id=vm1 \
	repagent-bitmap="$RF_TMP/vm1-disk0.bitmap" repagent-psk-file="$RF_TMP/keys/vm1-wrong.psk"
wrong_pid=$RF_LAST_PID
rf_wait_for 20 "the agent's refusal" grep -q "authentication failed: the hub refused our proof as 'vm1'" \
	"$RF_TMP/nbdkit-wrong.log"
[ ! -e "$recovery" ] || rf_fail "the wrong key got the recovery image created"
kill "$wrong_pid"
wait "$wrong_pid" 2>/dev/null || true
rm -f "$sock"

rf_log "the agent with its key protects the disk"
rf_spawn nbdkit nbdkit -f -v -U "$sock" --filter="$filter" file "$disk" \
	repagent-hub="$hub" repagent-volume=vm1-disk0 repagent-agent-id=vm1 \
	repagent-bitmap="$RF_TMP/vm1-disk0.bitmap" repagent-psk-file="$RF_TMP/keys/vm1.psk"
rf_wait_for 20 "nbdkit socket" test -S "$sock"
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 3M 64k' "nbd+unix:///?socket=$sock" \
	>"$RF_TMP/qemu-io.log"
admin wait vm1-disk0 --synced --timeout 60 || rf_fail "the volume did not sync"
cmp "$disk" "$recovery" || rf_fail "the replica differs from the disk"
# In session as vm1: only vm1's agent key may HELLO as vm1 (tested above).
[ "$(rf_agent_field vm1 connected)" = true ] || { rf_status; rf_fail "vm1 is not in session"; }

rf_log "SIGHUP with vm1's key changed ends vm1's session; its old key is refused"
lines=$(wc -l <"$RF_TMP/hub.log")
since() { tail -n +"$((lines + 1))" "$RF_TMP/hub.log" | grep -q "$1"; }
cp "$RF_TMP/keys/hub.psk" "$RF_TMP/keys/hub.psk.orig"
sed -i "s/^vm1 $k_vm1 agent\$/vm1 $(hexkey) agent/" "$RF_TMP/keys/hub.psk"
kill -HUP "$hub_pid"
rf_wait_for 10 "the end of vm1's session" since "('vm1'): its key changed: closing the connection"
rf_wait_for 20 "vm1's old key refused" since "authentication as 'vm1' refused: wrong key"
rf_log "SIGHUP with the key back: vm1 reconnects and replicates"
sessions=$(rf_agent_field vm1 sessions)
[ "$(rf_agent_field vm1 connected)" = false ] || rf_fail "vm1 is in session with its old key"
cp "$RF_TMP/keys/hub.psk.orig" "$RF_TMP/keys/hub.psk"
kill -HUP "$hub_pid"
rf_wait_for 30 "vm1 back" rf_status_true --argjson n "$sessions" \
	'.agents[] | select(.id == "vm1") | .connected and .sessions > $n'
qemu-io -f raw -c 'write -P 0x77 2M 64k' "nbd+unix:///?socket=$sock" >>"$RF_TMP/qemu-io.log"
admin wait vm1-disk0 --synced --timeout 60 || rf_fail "the volume did not sync after the key came back"
cmp "$disk" "$recovery" || rf_fail "the replica differs after the key rotation"

rf_log "an agent with a key refuses a hub without psk_file"
hub2=$(rf_free_port)
sed -e "s/^control = .*/control = 127.0.0.1:$hub2/" -e "s/^psk_file = .*//" \
	-e "s#^state_dir = .*#state_dir = $RF_TMP/state2#" -e "s#$RF_TMP/state/#$RF_TMP/state2/#" \
	-e "s/^data = .*/data = tcp:\/\/127.0.0.1:$(rf_free_port)/" -e "/^metrics = /d" "$RF_TMP/hub.conf" >"$RF_TMP/hub2.conf"
rf_spawn hub2 "$RF_BIN/rephubd" --config "$RF_TMP/hub2.conf"
hub2_pid=$RF_LAST_PID
rf_wait_port "$hub2" 20
grep -q "no psk_file: the control channel is not authenticated" "$RF_TMP/hub2.log" ||
	rf_fail "an unauthenticated hub does not warn"
head -c $((1 << 20)) /dev/urandom >"$RF_TMP/disk2.img"
rf_spawn nbdkit2 nbdkit -f -v -U "$RF_TMP/nbd2.sock" --filter="$filter" file "$RF_TMP/disk2.img" \
	repagent-hub="127.0.0.1:$hub2" repagent-volume=vm1-disk0 repagent-agent-id=vm1 \
	repagent-bitmap="$RF_TMP/disk2.bitmap" repagent-psk-file="$RF_TMP/keys/vm1.psk"
n2=$RF_LAST_PID
rf_wait_for 20 "the agent's refusal" grep -q "the hub does not authenticate" "$RF_TMP/nbdkit2.log"
RF_HUB=127.0.0.1:$hub2 RF_PSK='' rf_status_true '[.agents[] | select(.id == "vm1")] == []' ||
	rf_fail "the agent sent HELLO anyway"
kill "$n2"

rf_log "turning authentication on by SIGHUP closes the sessions that did not authenticate"
head -c $((1 << 20)) /dev/urandom >"$RF_TMP/disk4.img"
rf_spawn sim "$RF_BIN/rf-hub-agent-sim" --hub "127.0.0.1:$hub2" --agent vm2 --volume vm2-disk0 \
	--vol-id 1 --disk "$RF_TMP/disk4.img" --writes 10 --stay
sim_pid=$RF_LAST_PID
rf_wait_for 30 "the unauthenticated agent's writes" grep -q "writes durable" "$RF_TMP/sim.log"
# psk_file goes into [hub], before the first [volume ...]
awk -v line="psk_file = $RF_TMP/keys/hub.psk" '/^\[volume/ && !done { print line; done = 1 } { print }' \
	"$RF_TMP/hub2.conf" >"$RF_TMP/hub2.new" && mv "$RF_TMP/hub2.new" "$RF_TMP/hub2.conf"
kill -HUP "$hub2_pid"
rf_wait_for 10 "the unauthenticated session closed" \
	grep -q "('not authenticated'): authentication is now required: closing the connection" \
	"$RF_TMP/hub2.log"
rc=0
wait "$sim_pid" || rc=$?
[ "$rc" != 0 ] || rf_fail "the unauthenticated agent kept its session"

rf_log "an agent with a key refuses an impostor hub whose proof is wrong"
fake=$(rf_free_port)
rf_spawn fakehub python3 "$authpy" fake-hub "$fake" --key "$k_vm1" --log "$RF_TMP/fake.txt"
rf_wait_port "$fake" 20
rf_spawn nbdkit3 nbdkit -f -v -U "$RF_TMP/nbd3.sock" --filter="$filter" file "$RF_TMP/disk2.img" \
	repagent-hub="127.0.0.1:$fake" repagent-volume=vm1-disk0 repagent-agent-id=vm1 \
	repagent-bitmap="$RF_TMP/disk3.bitmap" repagent-psk-file="$RF_TMP/keys/vm1.psk"
rf_wait_for 20 "the agent's refusal" grep -q "the hub's proof is wrong" "$RF_TMP/nbdkit3.log"
grep -q "auth-proof good" "$RF_TMP/fake.txt" || rf_fail "the agent's own proof was not right"
if grep -q "after-auth" "$RF_TMP/fake.txt"; then
	cat "$RF_TMP/fake.txt"; rf_fail "the agent talked to an impostor hub"
fi

rf_alive "$hub_pid"
rf_log "PASS"
