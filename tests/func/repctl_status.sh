#!/usr/bin/env bash
# repctl status for people: one line per volume with a progress bar, a
# rate and an ETA while a full sync runs (slowed down by sync_rate so that
# it can be watched), none of them once protected; lag in records, bytes and
# age, ring fill and journal span on the same line; --json keeps every
# field it had and adds sync_rate_bps, eta_s, lag_ms and journal; clear
# messages naming the address when the hub cannot be reached (connection
# refused, a hub that never answers, not HOST:PORT).
. "$(dirname "$0")/lib.sh"

hubd=$RF_BIN/rephubd
repctl=$RF_BIN/repctl
sim=$RF_BIN/rf-hub-agent-sim
for b in "$hubd" "$repctl" "$sim"; do
	[ -x "$b" ] || rf_fail "$b is not built"
done
rf_require jq python3

ctl_port=$(rf_free_port)
data_port=$(rf_free_port)
while [ "$data_port" = "$ctl_port" ]; do data_port=$(rf_free_port); done
hub=127.0.0.1:$ctl_port
state=$RF_TMP/state
disk=$RF_TMP/disk.img
cat >"$RF_TMP/hub.conf" <<EOF
[hub]
control = $hub
data = tcp://127.0.0.1:$data_port
state_dir = $state
ring_size = 4M      ; 1 MiB sync reads
sync_rate = 1M      ; 8 MiB take about 8 s: long enough to watch

[volume vm1-disk0]
recovery = $state/vm1-disk0.img
journal_time = 1h
EOF

# The volume's line of the table (the header is the first line).
vol_line() { "$repctl" --hub "$hub" status | grep '^vm1-disk0 '; }
vol_json() { "$repctl" --hub "$hub" status --json | jq -c '.volumes[0]'; }

dd if=/dev/urandom of="$disk" bs=1M count=8 status=none
rf_spawn hub "$hubd" --config "$RF_TMP/hub.conf"
hub_pid=$RF_LAST_PID
rf_wait_port "$ctl_port"

rf_log "the table's header names every column"
"$repctl" --hub "$hub" status >"$RF_TMP/table.out"
head -n1 "$RF_TMP/table.out" | grep -qE '^VOLUME +STATE +SIZE +PROGRESS +RATE +ETA +AGENT +LAG_RECS +LAG_BYTES +LAG_AGE +RING +JOURNAL +DIRTY +RESENT$' ||
	{ cat "$RF_TMP/table.out"; rf_fail "unexpected header"; }
vol_line | grep -qE '^vm1-disk0 +unknown +0 B +0% +- +- +- ' ||
	{ cat "$RF_TMP/table.out"; rf_fail "a volume never seen: no bar, no rate, no ETA"; }

rf_log "--json keeps the fields it had"
"$repctl" --hub "$hub" status --json >"$RF_TMP/status.json"
for f in name recovery state size synced_bytes synced_percent agent agent_connected reported \
	vol_id durable_seq applied_seq landed_seq lag_records lag_bytes durable_lag_records \
	durable_lag_bytes durable_lag_ms apply_lag_records apply_lag_bytes apply_lag_ms \
	ring_fill dirty_bytes resend_bytes resent_bytes \
	resyncs resync_cause resync_elapsed_ms last_resync_cause last_resync_ms last_resync_bytes \
	progress_count progress_age_ms caught_up records bytes invalid_records sync \
	sync_rate_bps sync_rate_window_ms eta_s resync_percent lag_ms journal; do
	jq -e ".volumes[0] | has(\"$f\")" "$RF_TMP/status.json" >/dev/null ||
		{ cat "$RF_TMP/status.json"; rf_fail "status --json has no volume field $f"; }
done
jq -e '.volumes[0] | .eta_s == null and .sync_rate_bps == null and .journal.entries == 0' \
	"$RF_TMP/status.json" >/dev/null || { cat "$RF_TMP/status.json"; rf_fail "idle volume"; }

rf_log "a paced full sync: a bar, a rate and an ETA while it runs"
rf_spawn sim "$sim" --hub "$hub" --agent vm1 --volume vm1-disk0 --vol-id 1 --disk "$disk" \
	--expect-sync full --writes 50 --seed 1 --stay
sim_pid=$RF_LAST_PID
# Poll until one table shows the sync with its ETA (the rate needs a
# second of sync); the sync lasting ~8 s, ending protected first fails.
seen=""
for _ in $(seq 300); do
	rf_alive "$sim_pid"
	line=$(vol_line || true)
	case $line in
	*" protected "*) break ;;
	*" syncing "*)
		if [[ $line =~ \[[#.]{20}\]\ +[0-9]+%\ +[0-9.]+\ [KMG]?i?B/s\ +[0-9]+[smhd]([0-9]+[smh])?\  ]]; then
			seen=$line
			break
		fi
		;;
	esac
	sleep 0.1
done
[ -n "$seen" ] || rf_fail "never saw a bar, a rate and an ETA while syncing (last line: $line)"
rf_log "  $seen"
"$repctl" --hub "$hub" status | sed 's/^/    /'

rf_log "the JSON while syncing: the ETA is what is left at the rate"
v=""
for _ in $(seq 300); do
	v=$(vol_json)
	[ "$(jq -r .state <<<"$v")" = syncing ] || break
	[ "$(jq -r .eta_s <<<"$v")" != null ] && break
	sleep 0.1
done
if [ "$(jq -r .state <<<"$v")" = syncing ]; then
	jq -e '(.sync_rate_bps | type) == "number" and .sync_rate_bps > 0 and
		.sync_rate_window_ms >= 1000 and .resync_percent == null and
		.eta_s == (((.size - .synced_bytes) + .sync_rate_bps - 1) / .sync_rate_bps | floor)' \
		<<<"$v" >/dev/null || { echo "$v"; rf_fail "sync_rate_bps / eta_s do not add up"; }
else
	rf_log "  (the sync ended before a second look; checked the table only)"
fi

rf_log "protected: no bar, no rate, no ETA; lag, ring fill and journal span shown"
"$repctl" --hub "$hub" wait vm1-disk0 --synced --timeout 120 >"$RF_TMP/wait.out" 2>&1 ||
	{ cat "$RF_TMP/wait.out"; rf_fail "repctl wait --synced failed"; }
line=$(vol_line)
rf_log "  $line"
[[ $line =~ ^vm1-disk0\ +protected\ +8\.0\ MiB\ +100%\ +-\ +-\ +vm1\ +[0-9]+\ +[0-9.]+\ [KMG]?i?B\ +([0-9.]+[smhd]+|\?)\ +[0-9]+\.[0-9]%\ +[0-9]+(\.[0-9])?[smhd]([0-9]+[smh])?\ + ]] ||
	rf_fail "unexpected line once protected: $line"
case $line in *"["* | *"/s "*) rf_fail "a bar or a rate once protected: $line" ;; esac
v=$(vol_json)
jq -e '.eta_s == null and .sync_rate_bps == null and .sync == null and
	(.lag_ms | type) == "number" and .journal.entries > 0 and .journal.span_ms >= 0 and
	.journal.retain_ms == 3600000' <<<"$v" >/dev/null ||
	{ echo "$v"; rf_fail "the JSON once protected"; }
"$repctl" --hub "$hub" status --json | jq -e '.agents[0] | has("lag_ms")' >/dev/null ||
	rf_fail "no lag_ms for the agent"
"$repctl" --hub "$hub" status | grep -qE '^AGENT +CONNECTED +ATTACHED +RULE +LANDED +DURABLE +APPLIED +RING_USED +FILL +DUR_AGE +APPLY_AGE ' ||
	rf_fail "the agents' table has no positions (LANDED DURABLE APPLIED) / lag ages"
kill -TERM "$sim_pid"
wait "$sim_pid" || rf_fail "the simulated agent failed"

rf_log "unreachable hub: refused"
dead=$(rf_free_port)
for cmd in status "wait vm1-disk0 --synced --timeout 1" "points vm1-disk0" "failover vm1-disk0"; do
	rc=0
	# shellcheck disable=SC2086
	"$repctl" --hub "127.0.0.1:$dead" $cmd >"$RF_TMP/dead.out" 2>&1 || rc=$?
	[ "$rc" = 2 ] || { cat "$RF_TMP/dead.out"; rf_fail "repctl $cmd exited $rc, not 2"; }
	grep -qx "repctl: cannot reach hub at 127.0.0.1:$dead: Connection refused" "$RF_TMP/dead.out" ||
		{ cat "$RF_TMP/dead.out"; rf_fail "repctl $cmd: message for a refused connection"; }
	grep -q "is rephubd running there?" "$RF_TMP/dead.out" ||
		{ cat "$RF_TMP/dead.out"; rf_fail "repctl $cmd: no hint"; }
done
rc=0
REPCTL_HUB="127.0.0.1:$dead" "$repctl" status >"$RF_TMP/dead.out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "127.0.0.1:$dead: Connection refused" "$RF_TMP/dead.out" ||
	{ cat "$RF_TMP/dead.out"; rf_fail "\$REPCTL_HUB: exit $rc"; }

rf_log "unreachable hub: not HOST:PORT"
rc=0
"$repctl" --hub nothing-here status >"$RF_TMP/bad.out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -qx "repctl: cannot reach hub at nothing-here: not HOST:PORT" "$RF_TMP/bad.out" ||
	{ cat "$RF_TMP/bad.out"; rf_fail "bad address: exit $rc"; }

rf_log "a hub that accepts but never answers (about 10 s)"
mute=$(rf_free_port)
rf_spawn mute python3 -c "
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $mute))
s.listen(8)
time.sleep(600)"
rf_wait_port "$mute"
rc=0
"$repctl" --hub "127.0.0.1:$mute" status >"$RF_TMP/mute.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || { cat "$RF_TMP/mute.out"; rf_fail "a mute hub: exit $rc, not 2"; }
grep -qx "repctl: no status from hub at 127.0.0.1:$mute: it accepted the connection but did not answer in 10 s" \
	"$RF_TMP/mute.out" || { cat "$RF_TMP/mute.out"; rf_fail "a mute hub: message"; }

rf_alive "$hub_pid"
rf_log "all good"
