#!/usr/bin/env bash
# rephubd's Prometheus endpoint (metrics = HOST:PORT; docs/HUB.md "Metrics"):
# served while a simulated agent syncs and writes, the text format is valid
# (every sample has a TYPE before it, labels and values parse), counters
# move after writes, an invalid record shows up as a fence, the data
# transport's counters (rephub_transport_*{transport="tcp"}) count doorbells,
# positions, attaches and detaches and count a refused token and a malformed
# frame as errors (sent raw to the data port), other paths get 404 and other
# methods 405, and a bad `metrics` value fails --check-config.
# Fetches with bash's /dev/tcp (no curl needed).
. "$(dirname "$0")/lib.sh"

hubd=$RF_BIN/rephubd
sim=$RF_BIN/rf-hub-agent-sim
for b in "$hubd" "$sim"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
met_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
while [ "$met_port" = "$ctl_port" ] || [ "$met_port" = "$data_port" ]; do
	met_port=$(rf_free_port)
done
hub=127.0.0.1:$ctl_port
state=$RF_TMP/state
disk=$RF_TMP/disk.img
image=$state/vm1-disk0.img

cat >"$RF_TMP/hub.conf" <<CONF
[hub]
control = $hub
data = tcp://127.0.0.1:$data_port
state_dir = $state
ring_size = 1M
metrics = 127.0.0.1:$met_port

[volume vm1-disk0]
recovery = $image
CONF

# http METHOD PATH: the raw response (status line, headers, body), CRs
# removed, into $RF_TMP/http.out. (Files, not pipes into grep -q or head:
# under pipefail the writer's SIGPIPE would fail the pipeline at random.)
http() {
	exec 3<>"/dev/tcp/127.0.0.1/$met_port"
	printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" "$2" >&3
	tr -d '\r' <&3 >"$RF_TMP/http.out"
	exec 3<&-
}

# status_is CODE: the last response's status code was CODE.
status_is() {
	local line
	read -r line <"$RF_TMP/http.out" || true
	[[ "$line" =~ ^HTTP/1\.[01]\ $1 ]]
}

# scrape: GET /metrics into $RF_TMP/metrics.txt, checked for a 200 and a
# valid format.
scrape() {
	http GET /metrics
	status_is 200 || { cat "$RF_TMP/http.out"; rf_fail "GET /metrics did not answer 200"; }
	grep -qi '^content-type: text/plain; version=0.0.4' "$RF_TMP/http.out" ||
		rf_fail "GET /metrics: not the Prometheus text content type"
	sed '1,/^$/d' "$RF_TMP/http.out" >"$RF_TMP/metrics.txt"
	check_format "$RF_TMP/metrics.txt"
}

# state_is STATE: a scrape shows the volume in STATE.
state_is() {
	scrape
	grep -q "^rephub_volume_state{volume=\"vm1-disk0\",state=\"$1\"} 1\$" "$RF_TMP/metrics.txt"
}

# check_format FILE: every sample line belongs to a family whose TYPE came
# before it; one TYPE per family; names, labels and values are well formed.
check_format() {
	awk '
	/^# HELP / { next }
	/^# TYPE / {
		if ($4 != "counter" && $4 != "gauge") { print "bad type: " $0; bad = 1 }
		if ($3 in typed) { print "second TYPE: " $0; bad = 1 }
		typed[$3] = 1; next
	}
	/^#/ { print "unknown comment: " $0; bad = 1; next }
	/^$/ { print "empty line"; bad = 1; next }
	{
		samples++
		name = $0; sub(/[{ ].*/, "", name)
		if (name !~ /^rephub_[a-z0-9_]+$/) { print "bad name: " $0; bad = 1 }
		if (!(name in typed)) { print "no TYPE before: " $0; bad = 1 }
		if ($0 !~ /^[a-z0-9_]+(\{[a-z]+="[^"\\]*"(,[a-z]+="[^"\\]*")*\})? -?[0-9]+(\.[0-9]+)?$/) {
			print "malformed sample: " $0; bad = 1
		}
	}
	END { if (samples == 0) { print "no samples"; bad = 1 } exit bad }
	' "$1" || rf_fail "the metrics text is not valid (see above)"
}

# value NAME LABELS: the sample's value (LABELS like volume="vm1-disk0").
value() {
	local v
	v=$(grep -F "$1{$2} " "$RF_TMP/metrics.txt" | awk '{print $2}')
	[ -n "$v" ] || rf_fail "no sample $1{$2}"
	echo "$v"
}

# tv NAME: a transport counter (rephub_transport_NAME_total{transport="tcp"}).
tv() { value "rephub_transport_$1_total" 'transport="tcp"'; }

# all_detached: a scrape shows every attached producer detached again.
all_detached() {
	scrape
	[ "$(tv attaches)" = "$(tv detaches)" ]
}

# data_send BYTES_AS_PRINTF_FORMAT: open the data port, send the bytes, read
# what the hub answers until it closes, into $RF_TMP/data.out (hex). A reset
# instead of a clean close is fine (the answer read so far is kept).
data_send() {
	exec 4<>"/dev/tcp/127.0.0.1/$data_port"
	# shellcheck disable=SC2059 # the argument is a format: it holds \x escapes
	printf "$1" >&4
	{ od -An -v -tx1 <&4 2>/dev/null || true; } | tr -d ' \n' >"$RF_TMP/data.out"
	exec 4<&-
}

rf_log "a bad metrics address fails --check-config"
sed "s/^metrics = .*/metrics = 127.0.0.1:99999/" "$RF_TMP/hub.conf" >"$RF_TMP/bad.conf"
rc=0
"$hubd" --config "$RF_TMP/bad.conf" --check-config >"$RF_TMP/bad.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$RF_TMP/bad.out"; rf_fail "--check-config exited $rc, not 1"; }
grep -q "key 'metrics' in \[hub\]: '127.0.0.1:99999': the port must be" "$RF_TMP/bad.out" ||
	{ cat "$RF_TMP/bad.out"; rf_fail "no clear message for the bad metrics key"; }
"$hubd" --config "$RF_TMP/hub.conf" --check-config >/dev/null ||
	rf_fail "the good configuration fails --check-config"

dd if=/dev/urandom of="$disk" bs=1M count=8 status=none
rf_spawn hub "$hubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port"
rf_wait_port "$met_port"
grep -q "serving Prometheus metrics on http://127.0.0.1:$met_port/metrics" "$RF_TMP/hub.log" ||
	rf_fail "the log does not say where the metrics are"

rf_log "before any agent"
scrape
[ "$(value rephub_volume_bytes_total 'volume="vm1-disk0"')" = 0 ] || rf_fail "bytes not 0"
[ "$(value rephub_volume_agent_connected 'volume="vm1-disk0"')" = 0 ] ||
	rf_fail "agent connected before any agent"
grep -q '^rephub_volume_state{volume="vm1-disk0",state="[a-z_]*"} 1$' "$RF_TMP/metrics.txt" ||
	rf_fail "no rephub_volume_state sample"
for t in attaches detaches refused completions credits credit_bytes errors; do
	[ "$(tv $t)" = 0 ] || rf_fail "rephub_transport_${t}_total is $(tv $t) before any agent"
done
rf_log "  $(grep -c '^rephub_' "$RF_TMP/metrics.txt") samples, $(grep -c '^# TYPE' "$RF_TMP/metrics.txt") families"

rf_log "full sync and writes from a simulated agent"
"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" --agent vm1 --vol-id 1 \
	--expect-sync full --writes 300 --seed 1 >"$RF_TMP/first.log" 2>&1 ||
	{ cat "$RF_TMP/first.log"; rf_fail "the simulated agent failed"; }
scrape
vb=$(value rephub_volume_bytes_total 'volume="vm1-disk0"')
vr=$(value rephub_volume_records_total 'volume="vm1-disk0"')
ab=$(value rephub_agent_bytes_total 'agent="vm1"')
sb=$(value rephub_agent_sync_bytes_total 'agent="vm1"')
syn=$(value rephub_volume_synced_bytes 'volume="vm1-disk0"')
size=$(value rephub_volume_size_bytes 'volume="vm1-disk0"')
rf_log "  volume: $vr records, $vb bytes, synced $syn of $size; agent: $ab bytes, $sb sync bytes"
[ "$vb" -gt 0 ] && [ "$vr" -gt 0 ] || rf_fail "volume bytes/records did not move"
[ "$ab" -gt 0 ] && [ "$sb" -gt 0 ] || rf_fail "agent bytes/sync bytes did not move"
[ "$size" = $((8 << 20)) ] && [ "$syn" = "$size" ] || rf_fail "synced bytes ($syn) != size ($size)"
[ "$(value rephub_agent_sessions_total 'agent="vm1"')" -ge 1 ] || rf_fail "no session counted"
[ "$(value rephub_agent_attaches_total 'agent="vm1"')" -ge 1 ] || rf_fail "no attach counted"
# The simulator has exited: the synced volume waits for its agent.
rf_wait_for 10 "the volume to be 'disconnected' in the metrics" state_is disconnected
fill=$(value rephub_agent_ring_fill 'agent="vm1"')
awk -v f="$fill" 'BEGIN { exit !(f >= 0 && f <= 1) }' || rf_fail "ring fill $fill outside 0..1"
# Every write and sync record was posted with a doorbell; positions went back.
rf_wait_for 10 "the data path to be detached in the metrics" all_detached
tc=$(tv completions) tk=$(tv credits) tkb=$(tv credit_bytes) ta=$(tv attaches)
rf_log "  transport: $ta attaches, $tc completions, $tk credits ($tkb bytes), $(tv errors) errors"
[ "$ta" -ge 1 ] || rf_fail "no transport attach counted"
[ "$ta" = "$(value rephub_agent_attaches_total 'agent="vm1"')" ] ||
	rf_fail "transport attaches ($ta) != the agent's attaches"
[ "$tc" -ge 1 ] || rf_fail "no completion counted after the writes"
# A doorbell completes at least one record: never more doorbells than records.
[ "$tc" -le "$vr" ] || rf_fail "more completions ($tc) than records applied ($vr)"
[ "$tk" -ge 1 ] && [ "$tkb" -gt 0 ] || rf_fail "no credit counted ($tk, $tkb bytes)"
[ "$(tv errors)" = 0 ] && [ "$(tv refused)" = 0 ] ||
	rf_fail "a clean session counted transport errors ($(tv errors)) or refusals ($(tv refused))"

rf_log "a second session adds to the counters"
"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" --agent vm1 --vol-id 1 --bitmap-valid \
	--expect-sync none --writes 100 --seed 2 >"$RF_TMP/second.log" 2>&1 ||
	{ cat "$RF_TMP/second.log"; rf_fail "the second session failed"; }
scrape
vb2=$(value rephub_volume_bytes_total 'volume="vm1-disk0"')
[ "$vb2" -gt "$vb" ] || rf_fail "volume bytes did not grow ($vb -> $vb2)"
[ "$(value rephub_agent_sessions_total 'agent="vm1"')" -ge 2 ] || rf_fail "sessions did not grow"
rf_wait_for 10 "the second data path to be detached in the metrics" all_detached
[ "$(tv completions)" -gt "$tc" ] || rf_fail "completions did not grow ($tc -> $(tv completions))"
[ "$(tv credits)" -gt "$tk" ] || rf_fail "credits did not grow ($tk -> $(tv credits))"
[ "$(tv credit_bytes)" -gt "$tkb" ] || rf_fail "credit bytes did not grow"
[ "$(tv attaches)" -gt "$ta" ] || rf_fail "transport attaches did not grow"
[ "$(tv errors)" = 0 ] || rf_fail "the second session counted $(tv errors) transport errors"

rf_log "an invalid record counts as an invalid record and a fence"
rc=0
"$sim" --hub "$hub" --volume vm1-disk0 --disk "$disk" --agent vm1 --vol-id 1 --bitmap-valid \
	--writes 5 --seed 3 --bad vol >"$RF_TMP/bad.log" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$RF_TMP/bad.log"; rf_fail "bad-vol: the simulator exited $rc, not 3"; }
scrape
[ "$(value rephub_agent_invalid_records_total 'agent="vm1"')" = 1 ] ||
	rf_fail "invalid record not counted"
[ "$(value rephub_agent_fences_total 'agent="vm1"')" = 1 ] || rf_fail "fence not counted"
# A fence detaches the producer; it is not a transport error.
rf_wait_for 10 "the fenced data path to be detached in the metrics" all_detached
[ "$(tv errors)" = 0 ] || rf_fail "the fence counted as a transport error"

rf_log "a refused token and a malformed frame count as transport errors"
ta=$(tv attaches) td=$(tv detaches)
# HELLO (magic FRFB, version 1, type 1, length 8) with a token no agent holds.
data_send '\x46\x52\x46\x42\x01\x01\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\xef\xbe\xad\xde\x0d\xf0\xad\x0b'
# The hub answers REFUSE (type 3) with ENOENT (2), then closes.
[[ "$(cat "$RF_TMP/data.out")" == 4652464201030000????????0000000002000000* ]] ||
	rf_fail "no REFUSE/ENOENT for an unknown token: $(cat "$RF_TMP/data.out")"
scrape
[ "$(tv refused)" = 1 ] || rf_fail "refused token: refused_total is $(tv refused), not 1"
[ "$(tv errors)" = 1 ] || rf_fail "refused token: errors_total is $(tv errors), not 1"
# Exactly one 16-byte header, with a bad magic.
data_send 'GET / HTTP/1.0\r\n'
[ -z "$(cat "$RF_TMP/data.out")" ] || rf_fail "the hub answered a malformed frame"
scrape
[ "$(tv errors)" = 2 ] || rf_fail "malformed frame: errors_total is $(tv errors), not 2"
[ "$(tv refused)" = 1 ] || rf_fail "malformed frame counted as a refusal"
[ "$(tv attaches)" = "$ta" ] && [ "$(tv detaches)" = "$td" ] ||
	rf_fail "a refused or malformed connection counted as an attach or detach"
grep -q '^# HELP rephub_transport_errors_total .' "$RF_TMP/metrics.txt" ||
	rf_fail "rephub_transport_errors_total has no HELP text"

rf_log "other paths and methods"
http GET /nothing
status_is 404 || { cat "$RF_TMP/http.out"; rf_fail "GET /nothing is not 404"; }
http POST /metrics
status_is 405 || { cat "$RF_TMP/http.out"; rf_fail "POST is not 405"; }
http HEAD /metrics
status_is 200 || { cat "$RF_TMP/http.out"; rf_fail "HEAD is not 200"; }

rf_log "a second hub cannot take the same metrics port"
c2=$(rf_free_port)
d2=$(rf_free_port)
sed "s/^control = .*/control = 127.0.0.1:$c2/; s#^data = .*#data = tcp://127.0.0.1:$d2#;
	s#^state_dir = .*#state_dir = $RF_TMP/state2#; s#^recovery = .*#recovery = $RF_TMP/state2/v.img#" \
	"$RF_TMP/hub.conf" >"$RF_TMP/hub2.conf"
rc=0
timeout 10 "$hubd" --config "$RF_TMP/hub2.conf" >"$RF_TMP/hub2.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || { cat "$RF_TMP/hub2.out"; rf_fail "second hub: exit $rc"; }
grep -q "cannot serve metrics on 127.0.0.1:$met_port" "$RF_TMP/hub2.out" ||
	{ cat "$RF_TMP/hub2.out"; rf_fail "second hub: no clear message"; }
rf_alive "$hub_pid"

kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
[ "$rc" = 0 ] || rf_fail "rephubd exited $rc after SIGTERM"
rf_log "all good"
