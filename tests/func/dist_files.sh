#!/usr/bin/env bash
# dist/: the example configuration passes `rephubd --check-config` with its
# paths (state_dir, ring_dir, recovery images) moved into a scratch dir, so
# the example stays valid as keys change; and dist/rephubd.service passes
# `systemd-analyze verify` without a warning about its own lines (skipped
# when systemd-analyze is not installed), ExecStart pointed at the built
# rephubd.
. "$(dirname "$0")/lib.sh"

hubd=$RF_BIN/rephubd
example=$RF_SOURCE_DIR/dist/hub.conf.example
unit=$RF_SOURCE_DIR/dist/rephubd.service
[ -x "$hubd" ] || rf_fail "$hubd is not built"
[ -f "$example" ] && [ -f "$unit" ] || rf_fail "dist/ files missing"

rf_log "dist/hub.conf.example passes --check-config (paths in $RF_TMP)"
# The key file the example names, made the way the example says.
"$RF_BIN/repctl" genkey vm1 agent >"$RF_TMP/keys.psk" || rf_fail "repctl genkey failed"
"$RF_BIN/repctl" genkey ops admin >>"$RF_TMP/keys.psk"
chmod 600 "$RF_TMP/keys.psk"
grep -Eq '^vm1 [0-9a-f]{64} agent$' "$RF_TMP/keys.psk" || rf_fail "genkey's line is not IDENTITY HEX ROLE"
sed "s#/var/lib/rephub#$RF_TMP/state#g; s#/dev/shm/rephub-rings#$RF_TMP/rings#g;
	s#/etc/rephub/keys.psk#$RF_TMP/keys.psk#g" "$example" >"$RF_TMP/hub.conf"
grep -q "^psk_file = $RF_TMP/keys.psk" "$RF_TMP/hub.conf" || rf_fail "psk_file not substituted"
grep -q '^data = rdma://' "$RF_TMP/hub.conf" || rf_fail "the example's data is not rdma://"
grep -q "^ring_dir = $RF_TMP/rings" "$RF_TMP/hub.conf" || rf_fail "ring_dir not substituted"
if ! "$hubd" --config "$RF_TMP/hub.conf" --check-config >"$RF_TMP/check.out" 2>&1; then
	cat "$RF_TMP/check.out"
	rf_fail "the example configuration fails --check-config"
fi
rf_log "  $(cat "$RF_TMP/check.out")"

rf_log "the unit's paths match the example's"
grep -q '^ExecStart=/usr/local/bin/rephubd --config /etc/rephub/hub.conf$' "$unit" ||
	rf_fail "ExecStart is not 'rephubd --config /etc/rephub/hub.conf'"
grep -q '^LimitMEMLOCK=infinity$' "$unit" || rf_fail "no LimitMEMLOCK=infinity"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$unit" || rf_fail "no ExecReload with SIGHUP"
for p in $(sed -n 's/^state_dir = //p; s/^ring_dir = //p' "$example"); do
	grep -q "^ReadWritePaths=.*-$p\( \|$\)" "$unit" ||
		rf_fail "ReadWritePaths in the unit does not list $p"
done

if command -v systemd-analyze >/dev/null 2>&1; then
	rf_log "systemd-analyze verify dist/rephubd.service"
	sed "s#/usr/local/bin/rephubd#$hubd#g" "$unit" >"$RF_TMP/rephubd.service"
	rc=0
	systemd-analyze verify "$RF_TMP/rephubd.service" >"$RF_TMP/verify.out" 2>&1 || rc=$?
	# verify exits 0 on unknown keys and bad values; its warnings name the file.
	if [ "$rc" != 0 ] || grep -q "rephubd.service" "$RF_TMP/verify.out"; then
		cat "$RF_TMP/verify.out"
		rf_fail "systemd-analyze verify complains (exit $rc)"
	fi
else
	rf_log "systemd-analyze is not installed: unit not verified"
fi
rf_log "all good"
