#!/usr/bin/env bash
# func/bench_smoke: scripts/bench.sh --short runs end to end (every host
# comparison, no VM) and writes a well-formed run JSON and markdown with the
# goal table, into this test's scratch folder (never over docs/). Checks the
# shape of the output only: no speed is asserted, and a goal that is missed
# in this smoke run is fine.
. "$(dirname "$0")/lib.sh"
rf_require python3
for t in repbench rf-fabric-bench rephubd; do
	[ -x "$RF_BIN/$t" ] || rf_fail "$RF_BIN/$t is missing: build the project first"
done

out=$RF_TMP/out
mkdir -p "$out"
rc=0
RF_BUILD_DIR=$RF_BUILD_DIR timeout 280 "$RF_SOURCE_DIR/scripts/bench.sh" --short --no-vm \
	--json "$out/run.json" --md "$out/BENCHMARKS.md" --plots "$out/bench" \
	>"$RF_TMP/bench.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$RF_TMP/bench.log"; rf_fail "scripts/bench.sh --short exited $rc"; }

python3 - "$out/run.json" "$out/BENCHMARKS.md" <<'PY' || rf_fail "the run JSON or the markdown is malformed"
import json, sys
doc = json.load(open(sys.argv[1]))
md = open(sys.argv[2]).read()
assert doc["env"]["short"] is True and doc["env"]["nproc"] >= 1
assert isinstance(doc["end"]["seconds"], int)
c = doc["comparisons"]
assert sorted(c) == list("abcdefghij"), sorted(c)
for k, v in c.items():
    assert v["verdict"] in ("PASS", "MISS", "FAILED", "NOT MEASURED"), (k, v["verdict"])
    if v["verdict"] != "NOT MEASURED" and k not in "e":
        assert isinstance(v["ratio"], float) and v["ratio"] > 0, (k, v)
# the VM is off in this smoke run; everything on the host must have run
for k in "cdefgj":
    assert c[k]["verdict"] != "FAILED", (k, c[k])
    assert c[k]["verdict"] != "NOT MEASURED" or "not installed" in str(c[k].get("not_measured")), (k, c[k])
for k in "abhi":
    assert c[k]["verdict"] == "NOT MEASURED" and "ratio" not in c[k], (k, c[k])
for key in ("c-ours.r1", "d-ours.r1", "g-1.r1", "g-8.r1"):
    r = doc["raw"][key]
    assert r["status"] == "ok" and r["writes"] > 0 and r["seq_map_exact"] is True, key
    assert r["durable_latency_us"]["samples"] == r["writes"], key
    d = r["durable_latency_us"]
    assert 0 < d["p50"] <= d["p99"] <= d["p99_9"] <= d["max"], (key, d)
    # the durability poller blocks in rf_agent_wait_durable (no polling);
    # its CPU is still reported apart (no amount is asserted)
    assert r["poller"] == "wait" and r["agent"]["poller_cpu_s"] >= 0, (key, r["agent"])
    assert r["agent"]["max_rss_kb"] > 0 and r["hub"]["max_rss_kb"] > 0, key
assert doc["raw"]["g-8.r1"]["agents"] == 8
assert md.startswith("# Benchmarks\n")
assert "| # | ours | anchor (same run) | ratio | goal | verdict |" in md
for k in "abcdefghij":
    assert "\n| %s | " % k in md, k
assert "short smoke run" in md
PY
rf_log "ok: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(", ".join(k+" "+v["verdict"] for k,v in sorted(d["comparisons"].items())))' "$out/run.json")"
[ -d "$out/bench" ] && ls "$out/bench"/*.png >/dev/null 2>&1 && rf_log "plots written" ||
	rf_log "no plots (gnuplot not installed?)"
rf_log "PASS"
