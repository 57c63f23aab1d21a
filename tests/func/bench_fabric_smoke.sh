#!/usr/bin/env bash
# func/bench_fabric_smoke: rf-fabric-bench (bench/fabric_bench.c) runs end to
# end over tcp and shm in short modes and prints well-formed, self-consistent
# JSON: non-zero record counts, records * record_size == bytes, the hub
# drained exactly what the producer posted, one latency sample per record.
# There is no speed assertion of any kind: this checks that the benchmark
# works, not how fast anything is. Needs jq (or python3) to parse the JSON.
. "$(dirname "$0")/lib.sh"

BENCH=$RF_BIN/rf-fabric-bench
[ -x "$BENCH" ] || rf_fail "$BENCH is missing: build the project first"
if command -v jq >/dev/null 2>&1; then
	JSON=jq
elif command -v python3 >/dev/null 2>&1; then
	JSON=python3
else
	rf_skip "neither jq nor python3 is installed (Debian package jq)"
fi

# check FILE PROVIDER MODE SIZES [RECORDS] [ANCHOR]: validate one bench output.
check() {
	local file=$1 provider=$2 mode=$3 sizes=$4 records=${5:-0} anchor=${6:-0}
	if [ "$JSON" = jq ]; then
		jq -e --arg p "$provider" --arg m "$mode" --arg s "$sizes" \
			--argjson n "$records" --argjson a "$anchor" '
			($s | split(",") | map(tonumber)) as $sizes
			| type == "array" and length == ($sizes | length)
			and ([.[].record_size] == $sizes)
			and all(.[];
				.provider == $p and .mode == $m
				and .records > 0 and ($n == 0 or .records == $n)
				and .bytes == .records * .record_size
				and .ring_bytes >= .bytes
				and .hub.records == .records and .hub.bytes == .bytes
				and .post_latency_us.samples == .records
				and .durable_latency_us.samples == .records
				and .seconds > 0 and .mb_per_s >= 0 and .records_per_s >= 0
				and .durable_latency_us.p50 <= .durable_latency_us.p99
				and .durable_latency_us.p99 <= .durable_latency_us.p99_9
				and (.producer.cpu_s | type) == "number"
				and (.hub.cpu_s | type) == "number"
				and .producer.max_rss_kb > 0 and .hub.max_rss_kb > 0
				and ($a == 0 or .memcpy_anchor.mb_per_s > 0))' "$file" >/dev/null
	else
		python3 - "$file" "$provider" "$mode" "$sizes" "$records" "$anchor" <<'EOF'
import json, sys
f, p, m, s, n, a = sys.argv[1:]
sizes, n, a = [int(x) for x in s.split(",")], int(n), int(a)
d = json.load(open(f))
assert isinstance(d, list) and [o["record_size"] for o in d] == sizes
for o in d:
    assert o["provider"] == p and o["mode"] == m
    assert o["records"] > 0 and (n == 0 or o["records"] == n)
    assert o["bytes"] == o["records"] * o["record_size"] and o["ring_bytes"] >= o["bytes"]
    assert o["hub"]["records"] == o["records"] and o["hub"]["bytes"] == o["bytes"]
    assert o["post_latency_us"]["samples"] == o["records"]
    assert o["durable_latency_us"]["samples"] == o["records"]
    dl = o["durable_latency_us"]
    assert o["seconds"] > 0 and dl["p50"] <= dl["p99"] <= dl["p99_9"]
    assert o["producer"]["max_rss_kb"] > 0 and o["hub"]["max_rss_kb"] > 0
    assert a == 0 or o["memcpy_anchor"]["mb_per_s"] > 0
EOF
	fi || {
		echo "----- $file"
		cat "$file"
		rf_fail "$provider $mode: the JSON is malformed or inconsistent"
	}
	rf_log "ok: $provider $mode, record sizes $sizes"
}

# run NAME ARGS...: run the bench, JSON to $RF_TMP/NAME.json, stderr to NAME.log.
run() {
	local name=$1 rc=0
	shift
	timeout 120 "$BENCH" --dir "$RF_TMP" --json "$RF_TMP/$name.json" "$@" \
		>"$RF_TMP/$name.log" 2>&1 || rc=$?
	[ "$rc" = 0 ] || { cat "$RF_TMP/$name.log"; rf_fail "$name: rf-fabric-bench exited $rc"; }
}

tcp() { echo "tcp://127.0.0.1:$(rf_free_port)"; }
shm() { echo "shm://$RF_TMP/hub.sock"; }

run tcp-records --url "$(tcp)" --record-size 4096,65536 --records 300
check "$RF_TMP/tcp-records.json" tcp stream 4096,65536 300
run tcp-qd1 --url "$(tcp)" --record-size 4k --records 50 --qd1
check "$RF_TMP/tcp-qd1.json" tcp qd1 4096 50
run tcp-seconds --url "$(tcp)" --record-size 65536 --seconds 0.5
check "$RF_TMP/tcp-seconds.json" tcp stream 65536

# Odd sizes, a record of a quarter of the ring (PADs at the wrap), the anchor.
run shm-records --url "$(shm)" --record-size 1,4096,65536,262144 --ring-size 1M --records 300 \
	--memcpy-anchor
check "$RF_TMP/shm-records.json" shm stream 1,4096,65536,262144 300 1
run shm-qd1 --url "$(shm)" --record-size 65536 --records 50 --qd1
check "$RF_TMP/shm-qd1.json" shm qd1 65536 50
run shm-seconds --url "$(shm)" --record-size 4096 --seconds 0.5
check "$RF_TMP/shm-seconds.json" shm stream 4096

# JSON on stdout when --json is not given; usage errors exit 2.
"$BENCH" --url "$(shm)" --dir "$RF_TMP" --record-size 512 --records 20 \
	>"$RF_TMP/stdout.json" 2>"$RF_TMP/stdout.log" ||
	rf_fail "stdout run failed"
check "$RF_TMP/stdout.json" shm stream 512 20
rc=0
"$BENCH" --url "$(tcp)" --dir "$RF_TMP" --seconds 1 --records 5 >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || rf_fail "--seconds with --records: exit $rc, expected 2"
rc=0
"$BENCH" --url "$(tcp)" --dir "$RF_TMP" --record-size 8M >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || rf_fail "a record larger than a quarter of the ring: exit $rc, expected 2"
rf_log "PASS"
