#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Assemble the parts written by scripts/bench.sh into one JSON document,
regenerate docs/BENCHMARKS.md from it, and draw the plots with gnuplot.

    report.py --parts DIR --json FILE --md FILE --plots DIR [--profile FILE] [--src DIR]

Every figure in the markdown comes from the JSON of this run. A comparison
whose data is missing is reported as "not measured" with the reason.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys


def load(parts, name):
    path = os.path.join(parts, name)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            if name.endswith(".json"):
                return json.load(f)
            return f.read()
    except (OSError, ValueError) as e:
        return {"error": "%s: %s" % (name, e)}


def ok(d):
    return isinstance(d, (dict, list)) and not (isinstance(d, dict) and
                                                 ("error" in d or "skipped" in d))


def perftest_rows(text, size):
    """Result rows of a perftest report whose first field is @size."""
    rows = []
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) >= 5 and f[0] == str(size):
            try:
                rows.append([float(x) for x in f[1:]])
            except ValueError:
                pass
    return rows


def fio_job(d, name, rw="write"):
    if not ok(d):
        return None
    for j in d.get("jobs", []):
        if j.get("jobname") == name:
            w = j[rw]
            pct = w.get("clat_ns", {}).get("percentile", {})
            return {
                "iops": w["iops"],
                "mb_per_s": w["bw_bytes"] / 1e6,
                "clat_p50_us": pct.get("50.000000", 0) / 1e3,
                "clat_p99_us": pct.get("99.000000", 0) / 1e3,
                "lat_mean_us": w.get("lat_ns", {}).get("mean", 0) / 1e3,
            }
    return None


def fabric0(d):
    if isinstance(d, list) and d:
        return d[0]
    return None


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def nrounds(raw, base):
    """Number of rounds stored as BASE.rN (0 when only BASE or nothing)."""
    n = 0
    while ("%s.r%d" % (base, n + 1)) in raw:
        n += 1
    return n


def round_keys(raw, base):
    n = nrounds(raw, base)
    return ["%s.r%d" % (base, i + 1) for i in range(n)] if n else [base]


def iperf_mb(d):
    if not ok(d):
        return None
    bps = ((d.get("end") or {}).get("sum_received") or {}).get("bits_per_second")
    return bps / 8e6 if bps else None


def paired(c, ours, trans, anch):
    """Fill @c from per-round lists (None where a round failed): medians of
    the values, of the per-round ratios, and the ratios' range."""
    c["rounds"] = len(anch)
    c["rounds_failed"] = sum(1 for o, a in zip(ours, anch) if not (o and a))
    c["ours_mb_per_s"] = median(ours)
    c["transport_mb_per_s"] = median(trans)
    c["anchor_mb_per_s"] = median(anch)
    r = [o / a for o, a in zip(ours, anch) if o and a]
    t = [o / a for o, a in zip(trans, anch) if o and a]
    if r:
        c["ratio"] = median(r)
        c["ratio_range"] = [min(r), max(r)]
        c["ratios"] = r
    if t:
        c["transport_ratio"] = median(t)
        c["transport_ratio_range"] = [min(t), max(t)]


def build(parts):
    """The run's JSON: raw parts plus the computed comparisons."""
    env = load(parts, "env.json") or {}
    end = load(parts, "end.json") or {}
    raw = {}
    for n in sorted(os.listdir(parts)):
        if n.endswith(".json") and n not in ("env.json", "end.json"):
            raw[n[:-5]] = load(parts, n)
        elif n.endswith(".txt"):
            raw[n[:-4]] = load(parts, n)
    cmp_ = {}

    def skipped(key):
        d = raw.get(key)
        if isinstance(d, dict) and "skipped" in d:
            return d["skipped"]
        return None

    def rb(key):
        d = raw.get(key)
        return d if ok(d) and d.get("status") == "ok" else None

    # a: rdma throughput vs ib_write_bw
    a = {"goal": ">= 0.90x", "goal_min": 0.90}
    why = skipped("a")
    ours, fab = rb("a-ours"), fabric0(raw.get("a-fabric"))
    rows = perftest_rows(raw.get("a-anchor"), 65536)
    if why:
        a["not_measured"] = why
    elif not ours or not rows:
        a["not_measured"] = "the VM run produced no %s (vm-errors: %s)" % (
            "repbench result" if not ours else "ib_write_bw result",
            (raw.get("vm-errors") or "none").strip())
    if ours:
        a["ours_mb_per_s"] = ours["mb_per_s"]
    if fab:
        a["transport_mb_per_s"] = fab["mb_per_s"]
    if rows:
        # MsgRate[Mpps] * size = 10^6 bytes/s (perftest's MB/sec is MiB/s)
        a["anchor_mb_per_s"] = rows[-1][-1] * 65536
        a["anchor_mib_per_s_reported"] = rows[-1][-2]
    if ours and rows:
        a["ratio"] = a["ours_mb_per_s"] / a["anchor_mb_per_s"]
    if fab and rows:
        a["transport_ratio"] = a["transport_mb_per_s"] / a["anchor_mb_per_s"]
    cmp_["a"] = a

    # b: rdma durable p50, 4 KiB QD1 vs ib_write_lat RTT
    b = {"goal": "<= 3x", "goal_max": 3.0}
    why = skipped("b")
    ours, fab = rb("b-ours"), fabric0(raw.get("b-fabric"))
    rows = perftest_rows(raw.get("b-anchor"), 4096)
    if ours and not ours.get("seq_map_exact"):
        b["seq_map_not_exact"] = True
        ours = None  # the durable latencies are not those of the writes
    if why:
        b["not_measured"] = why
    elif not ours or not rows:
        b["not_measured"] = "the VM run produced no %s (vm-errors: %s)" % (
            "usable repbench result" if not ours else "ib_write_lat result",
            (raw.get("vm-errors") or "none").strip())
    if ours:
        b["ours_durable_p50_us"] = ours["durable_latency_us"]["p50"]
        b["ours_durable_p99_us"] = ours["durable_latency_us"]["p99"]
        b["ours_durable_p99_9_us"] = ours["durable_latency_us"]["p99_9"]
    if fab:
        b["transport_durable_p50_us"] = fab["durable_latency_us"]["p50"]
    if rows:
        # #iterations t_min t_max t_typical t_avg ...: one-way (half RTT)
        b["anchor_one_way_us"] = rows[-1][3]
        b["anchor_rtt_us"] = 2 * rows[-1][3]
    if ours and rows:
        b["ratio"] = b["ours_durable_p50_us"] / b["anchor_rtt_us"]
    if fab and rows:
        b["transport_ratio"] = b["transport_durable_p50_us"] / b["anchor_rtt_us"]
    # the same on persistent memory: durable once flushed in the ring (#14 goal <= 1.5x)
    pm = rb("b-pmem")
    if pm and pm.get("seq_map_exact"):
        b["pmem_goal"] = "<= 1.5x"
        b["pmem_durable_p50_us"] = pm["durable_latency_us"]["p50"]
        b["pmem_durable_p99_us"] = pm["durable_latency_us"]["p99"]
        if rows:
            b["pmem_ratio"] = b["pmem_durable_p50_us"] / b["anchor_rtt_us"]
    cmp_["b"] = b

    # c: tcp vs iperf3 (rounds)
    c = {"goal": ">= 0.50x", "goal_min": 0.50}
    ks = round_keys(raw, "c-ours")
    ours = [rb(k)["mb_per_s"] if rb(k) else None for k in ks]
    trans = [(fabric0(raw.get(k.replace("c-ours", "c-fabric"))) or {}).get("mb_per_s") for k in ks]
    anch = [iperf_mb(raw.get(k.replace("c-ours", "c-anchor"))) for k in ks]
    paired(c, ours, trans, anch)
    if skipped("c-anchor"):
        c["not_measured"] = skipped("c-anchor")
    elif "ratio" not in c:
        c["not_measured"] = "no round with both a repbench and an iperf3 result"
    cmp_["c"] = c

    # d: shm vs memcpy (rounds)
    d = {"goal": ">= 0.50x", "goal_min": 0.50}
    ks = round_keys(raw, "d-ours")
    ours = [rb(k)["mb_per_s"] if rb(k) else None for k in ks]
    fabs = [fabric0(raw.get(k.replace("d-ours", "d-fabric"))) or {} for k in ks]
    trans = [f.get("mb_per_s") for f in fabs]
    anch = [(f.get("memcpy_anchor") or {}).get("mb_per_s") for f in fabs]
    paired(d, ours, trans, anch)
    if "ratio" not in d:
        d["not_measured"] = "no round with both a repbench result and the memcpy anchor"
    cmp_["d"] = d

    # e: fio through nbdkit + filter + hub vs plain nbdkit file
    e = {"goal": "IOPS and bandwidth >= 0.85x, p50 latency <= 1.15x",
         "goal_min": 0.85, "goal_lat_max": 1.15}
    if skipped("e"):
        e["not_measured"] = skipped("e")
    else:
        # rounds: e-anchor.rN then e-ours.rN; medians of the values and of
        # the per-round ratios (a round counts only when both fio runs gave
        # the job)
        ks = round_keys(raw, "e-ours")
        for job in ("rand4k", "seq1m"):
            pairs = []
            for k in ks:
                o = fio_job(raw.get(k), job)
                a_ = fio_job(raw.get(k.replace("e-ours", "e-anchor")), job)
                if o and a_ and a_["iops"] and a_["mb_per_s"]:
                    pairs.append((o, a_))
            if not pairs:
                continue
            ent = {"rounds": len(ks), "rounds_failed": len(ks) - len(pairs),
                   "ours": {f: median(o[f] for o, _ in pairs) for f in pairs[0][0]},
                   "anchor": {f: median(a_[f] for _, a_ in pairs) for f in pairs[0][1]}}
            for name, f in (("iops_ratio", "iops"), ("mb_per_s_ratio", "mb_per_s"),
                            ("p50_ratio", "clat_p50_us")):
                rs = [o[f] / a_[f] for o, a_ in pairs if a_[f]]
                if len(rs) == len(pairs):
                    ent[name] = median(rs)
                    ent[name + "_range"] = [min(rs), max(rs)]
                else:
                    ent[name] = None
            e[job] = ent
        if "rand4k" not in e or "seq1m" not in e:
            errs = [str(raw[k].get("error")) for k in raw
                    if k.startswith(("e-ours", "e-anchor"))
                    if isinstance(raw.get(k), dict) and raw[k].get("error")]
            e["not_measured"] = "; ".join(errs) or "a fio run failed (no result)"
    cmp_["e"] = e

    # f: initial sync vs fio sequential read and the transport's bandwidth
    f = {"goal": ">= 0.80x the slower of the two", "goal_min": 0.80}
    ours = rb("f-ours")
    rd = raw.get("f-anchor-read")
    fab = fabric0(raw.get("f-anchor-fabric"))
    rd_mb = None
    if ok(rd) and rd.get("jobs"):
        rd_mb = rd["jobs"][0]["read"]["bw_bytes"] / 1e6
    if ours:
        f["ours_mb_per_s"] = ours["sync"]["mb_per_s"]
        f["bytes"] = ours["sync"]["bytes"]
        f["seconds"] = ours["sync"]["seconds"]
        f["agent_cpu_s"] = ours["sync"]["agent_cpu_s"]
        f["hub_cpu_s"] = ours["sync"]["hub_cpu_s"]
    if rd_mb:
        f["anchor_read_mb_per_s"] = rd_mb
    if fab:
        f["anchor_transport_mb_per_s"] = fab["mb_per_s"]
    if ours and rd_mb and fab:
        f["anchor_mb_per_s"] = min(rd_mb, fab["mb_per_s"])
        f["ratio"] = f["ours_mb_per_s"] / f["anchor_mb_per_s"]
    else:
        f["not_measured"] = "missing: " + ", ".join(
            n for n, v in (("repbench --sync-only", ours), ("fio read", rd_mb),
                           ("rf-fabric-bench", fab)) if not v)
    cmp_["f"] = f

    # g: scaling (rounds; per round every point against that round's 1 agent)
    g = {"goal": "aggregate >= 0.90x of 1 agent; hub memory per agent constant (+-25 %)",
         "goal_min": 0.90, "points": []}
    nr = max(nrounds(raw, "g-1"), 1)
    per = {}
    for n in (1, 2, 4, 8):
        for k in round_keys(raw, "g-%d" % n):
            r = rb(k)
            per.setdefault(n, []).append(r)
    for n, rs in sorted(per.items()):
        good = [r for r in rs if r]
        if not good:
            continue
        ratios = []
        for i, r in enumerate(rs):
            b1 = per.get(1, [None] * nr)[i] if i < len(per.get(1, [])) else None
            if r and b1 and b1["mb_per_s"]:
                ratios.append(r["mb_per_s"] / b1["mb_per_s"])
        p = {"agents": n, "rounds": len(good),
             "mb_per_s": median(r["mb_per_s"] for r in good),
             "mb_per_s_all": [r["mb_per_s"] for r in good],
             "durable_p50_us": median(r["durable_latency_us"]["p50"] for r in good),
             "durable_p99_us": median(r["durable_latency_us"]["p99"] for r in good),
             "hub_rss_kb": median(r["hub"]["rss_kb"] for r in good),
             "hub_rss_shmem_kb": median(r["hub"]["rss_shmem_kb"] for r in good),
             "hub_max_rss_kb": median(r["hub"]["max_rss_kb"] for r in good),
             "agent_max_rss_kb": median(r["agent"]["max_rss_kb"] for r in good),
             "hub_cpu_s_per_gb": median(r["hub"]["cpu_s_per_gb"] for r in good),
             "agent_cpu_s_per_gb": median(r["agent"]["cpu_s_per_gb"] for r in good)}
        if ratios:
            p["ratio"] = median(ratios)
            p["ratio_range"] = [min(ratios), max(ratios)]
        g["points"].append(p)
    pts = {p["agents"]: p for p in g["points"]}
    if 1 in pts and len(pts) > 1:
        base = pts[1]
        for p in g["points"]:
            if p["agents"] > 1:
                p["hub_kb_per_added_agent"] = (p["hub_rss_kb"] - base["hub_rss_kb"]) / (p["agents"] - 1)
                p["hub_anon_kb_per_added_agent"] = (
                    (p["hub_rss_kb"] - p["hub_rss_shmem_kb"]) -
                    (base["hub_rss_kb"] - base["hub_rss_shmem_kb"])) / (p["agents"] - 1)
        rs = [p["ratio"] for p in g["points"] if p.get("ratio") is not None and p["agents"] > 1]
        g["ratio"] = min(rs) if rs else None
        per_agent = [p["hub_kb_per_added_agent"] for p in g["points"] if p["agents"] > 1]
        g["hub_kb_per_agent_spread"] = (max(per_agent) / min(per_agent)
                                        if per_agent and min(per_agent) > 0 else None)
    if g.get("ratio") is None:
        g["not_measured"] = "fewer than two agent counts measured"
    v8 = rb("g-vols8")
    v1 = rb(round_keys(raw, "g-1")[0])
    if v8:
        g["bitmap_bytes_per_tib"] = v8["agent"]["bitmap_bytes_per_tib"]
        g["bitmap_file_bytes"] = v8["agent"].get("bitmap_file_bytes")
        g["vol_mib"] = v8["vol_size"] / 1048576.0
        if v1:
            g["agent_kb_per_added_volume"] = (v8["agent"]["max_rss_kb"] - v1["agent"]["max_rss_kb"]) / 7
            g["vols8_mb_per_s"] = v8["mb_per_s"]
    cmp_["g"] = g

    # h: guest-visible 4 KiB QD1 latency per acknowledgement level (VM):
    # fio through nbdkit + filter vs plain nbdkit; what a level adds, over
    # the verbs round trip (goal: durable adds <= 2x).
    h = {"goal": "durable adds <= 2x RTT", "goal_max": 2.0, "levels": {}}
    plain = fio_job(raw.get("h-plain"), "rand4k")
    rows = perftest_rows(raw.get("b-anchor"), 4096)
    rtt = 2 * rows[-1][3] if rows else None
    if plain:
        h["plain_p50_us"], h["plain_p99_us"] = plain["clat_p50_us"], plain["clat_p99_us"]
        h["plain_iops"] = plain["iops"]
    if rtt:
        h["anchor_rtt_us"] = rtt
    for key in sorted(raw):
        m = re.match(r"^h-(async|landed|durable)-p(\d+)$", key)
        j = fio_job(raw.get(key), "rand4k") if m else None
        if not j:
            continue
        lv = {"level": m.group(1), "poll_us": int(m.group(2)), "p50_us": j["clat_p50_us"],
              "p99_us": j["clat_p99_us"], "iops": j["iops"]}
        if plain:
            lv["added_p50_us"] = j["clat_p50_us"] - plain["clat_p50_us"]
            lv["p50_ratio_to_plain"] = j["clat_p50_us"] / plain["clat_p50_us"] if plain["clat_p50_us"] else None
            if rtt:
                lv["added_over_rtt"] = lv["added_p50_us"] / rtt
        h["levels"]["%s-p%s" % (m.group(1), m.group(2))] = lv
    dur = [v["added_over_rtt"] for v in h["levels"].values()
           if v["level"] == "durable" and v.get("added_over_rtt") is not None]
    if dur:
        h["ratio"] = min(dur)
    elif not skipped("h"):
        h["not_measured"] = "the VM run produced no fio result at level durable, plain or no ib_write_lat (vm-errors: %s)" % (
            (raw.get("vm-errors") or "none").strip())
    # lags between the three positions under load (status sampled during fio 64k QD16, async)
    lags = []
    try:
        with open(os.path.join(parts, "h-lags.jsonl")) as f:
            lags = [json.loads(x) for x in f if x.strip()]
    except (OSError, ValueError):
        lags = []
    if lags:
        summ = {"samples": len(lags)}
        for fld in ("durable_lag_records", "durable_lag_bytes", "durable_lag_ms",
                    "apply_lag_records", "apply_lag_bytes", "apply_lag_ms", "lag_records",
                    "lag_bytes", "lag_ms"):
            xs = [x.get(fld) for x in lags if isinstance(x.get(fld), (int, float))]
            summ[fld] = {"median": median(xs), "max": max(xs) if xs else None}
        h["lags_under_load"] = summ
    cmp_["h"] = h

    # i: peers across two guests on one wire (bench/peers.sh): DRBD 8.4
    # protocol C vs repfabric durable, protocol A vs async; each beside its
    # own raw path in the same boot (DRBD: the raw virtio disk, libaio;
    # repfabric: plain `nbdkit file` on the same disk, fio's nbd engine).
    # Ratios are "how many times better repfabric is" (> 1: ahead).
    i = {"goal": "ahead of DRBD at equal guarantees (every ratio >= 1)", "goal_min": 1.0,
         "rows": {}, "pairs": {}}
    for key in ("raw", "plain", "drbd-C", "drbd-A", "rf-durable", "rf-async"):
        r4 = fio_job(raw.get("i-" + key), "rand4k")
        r1 = fio_job(raw.get("i-" + key), "seq1m")
        if r4 or r1:
            i["rows"][key] = {"iops": r4 and r4["iops"], "p50_us": r4 and r4["clat_p50_us"],
                              "p99_us": r4 and r4["clat_p99_us"], "mb_per_s": r1 and r1["mb_per_s"]}
    ds, rs = raw.get("i-drbd-sync"), raw.get("i-rf-sync")
    if ok(ds) and ok(rs):
        i["sync"] = {"drbd_s": ds["seconds"], "rf_s": rs["seconds"], "mb": rs["mb"],
                     "drbd_mb_per_s": ds["mb"] * 1.048576 / ds["seconds"] if ds["seconds"] else None,
                     "rf_mb_per_s": rs["mb"] * 1.048576 / rs["seconds"] if rs["seconds"] else None,
                     "ratio": ds["seconds"] / rs["seconds"] if rs["seconds"] else None}
    R = i["rows"]
    ratios = []
    for ours, peer in (("rf-durable", "drbd-C"), ("rf-async", "drbd-A")):
        o, pe, base_o, base_p = R.get(ours), R.get(peer), R.get("plain"), R.get("raw")
        if not (o and pe):
            continue
        pr = {"ours": ours, "peer": peer}
        if base_o and base_p and None not in (o["p50_us"], pe["p50_us"], base_o["p50_us"], base_p["p50_us"]):
            pr["ours_added_p50_us"] = o["p50_us"] - base_o["p50_us"]
            pr["peer_added_p50_us"] = pe["p50_us"] - base_p["p50_us"]
            if pr["ours_added_p50_us"] > 0:
                pr["qd1_overhead_ratio"] = pr["peer_added_p50_us"] / pr["ours_added_p50_us"]
        if o["mb_per_s"] and pe["mb_per_s"]:
            pr["mb_per_s_ratio"] = o["mb_per_s"] / pe["mb_per_s"]
        if o["iops"] and pe["iops"]:
            pr["iops_ratio"] = o["iops"] / pe["iops"]
        for k2 in ("qd1_overhead_ratio", "mb_per_s_ratio"):
            if pr.get(k2) is not None:
                ratios.append(pr[k2])
        i["pairs"]["%s vs %s" % (ours, peer)] = pr
    if i.get("sync", {}).get("ratio") is not None:
        ratios.append(i["sync"]["ratio"])
    if ratios:
        i["ratio"] = min(ratios)
    elif not skipped("i"):
        i["not_measured"] = "the pair produced no DRBD/repfabric figures (errors: %s)" % (
            (raw.get("i-errors") or "none").strip()[:300])
    cmp_["i"] = i

    # j: QEMU's block mirror (qemu-storage-daemon blockdev-mirror to nbdkit)
    # vs f (repfabric's initial sync of the same size) and e (fio through the
    # filter, vs fio through the daemon's export while it mirrors).
    # Ratios: > 1 means repfabric is ahead.
    j = {"goal": "initial sync >= 3x faster than QEMU's mirror", "goal_min": 3.0, "modes": {}}
    f = cmp_["f"]  # (the name was reused for a file above)
    eo4 = e.get("rand4k", {}).get("ours")
    eo1 = e.get("seq1m", {}).get("ours")
    for mode in ("background", "write-blocking"):
        d = raw.get("j-" + mode)
        if not ok(d) or d.get("ready_s") is None:
            if isinstance(d, dict) and d.get("error"):
                j["modes"][mode] = {"error": d["error"]}
            continue
        m = {"ready_s": d["ready_s"], "bytes": d.get("bytes")}
        if m["bytes"]:
            m["sync_mb_per_s"] = m["bytes"] / 1e6 / d["ready_s"]
        if f.get("seconds") and f.get("bytes") and m["bytes"]:
            # per byte, in case the sizes differ
            m["sync_ratio"] = (d["ready_s"] / m["bytes"]) / (f["seconds"] / f["bytes"])
        r4 = fio_job(d.get("fio"), "rand4k")
        r1 = fio_job(d.get("fio"), "seq1m")
        if r4:
            m.update(iops=r4["iops"], p50_us=r4["clat_p50_us"], p99_us=r4["clat_p99_us"])
            if eo4:
                m["iops_ratio"] = eo4["iops"] / r4["iops"] if r4["iops"] else None
                m["p50_ratio"] = r4["clat_p50_us"] / eo4["clat_p50_us"] if eo4["clat_p50_us"] else None
        if r1:
            m["mb_per_s"] = r1["mb_per_s"]
            if eo1 and r1["mb_per_s"]:
                m["mb_per_s_ratio"] = eo1["mb_per_s"] / r1["mb_per_s"]
        j["modes"][mode] = m
    srs = [m["sync_ratio"] for m in j["modes"].values() if m.get("sync_ratio") is not None]
    if srs:
        j["ratio"] = min(srs)
    elif not skipped("j"):
        j["not_measured"] = "no mirror or no f figure: %s" % "; ".join(
            "%s: %s" % (k, v.get("error")) for k, v in j["modes"].items() if v.get("error")) or (
            f.get("not_measured") or "f not run")
    cmp_["j"] = j

    # verdicts: a comparison that was skipped (tool missing, no VM, not
    # selected) is NOT MEASURED; one that ran but gave no figure is FAILED
    for k, v in cmp_.items():
        why = skipped(k) or (skipped("c-anchor") if k == "c" else None)
        if why:
            for key in ("ratio", "ratio_range", "ratios"):
                v.pop(key, None)
            v["not_measured"] = why
            v["verdict"] = "NOT MEASURED"
        else:
            v["verdict"] = verdict(k, v)
    # extra rows: QD1 latency on the host
    lat = {}
    for key in ("c-qd1", "d-qd1", "b-ours"):
        r = rb(key)
        if r:
            lat[key] = {"durable": r["durable_latency_us"], "post": r["post_latency_us"],
                        "mb_per_s": r["mb_per_s"]}
    return {"env": env, "end": end, "comparisons": cmp_, "qd1_latency": lat, "raw": raw}


def verdict(k, v):
    if k != "e" and v.get("ratio") is None:
        v.setdefault("not_measured", "no figure")
        return "FAILED"
    if k in ("b", "h"):
        return "PASS" if v["ratio"] <= v["goal_max"] else "MISS"
    if k == "e":
        if "rand4k" not in v or "seq1m" not in v:
            return "FAILED"
        r, s = v["rand4k"], v["seq1m"]
        if None in (r["p50_ratio"], s["p50_ratio"], r["iops_ratio"], s["mb_per_s_ratio"]):
            v["not_measured"] = "a fio round gave no figure (IOPS, MB/s or p50)"
            return "FAILED"
        good = (r["iops_ratio"] >= 0.85 and s["mb_per_s_ratio"] >= 0.85 and
                r["p50_ratio"] <= 1.15 and s["p50_ratio"] <= 1.15)
        return "PASS" if good else "MISS"
    if k == "g":
        spread = v.get("hub_kb_per_agent_spread")
        good = v["ratio"] >= v["goal_min"] and spread is not None and spread <= 1.25
        return "PASS" if good else "MISS"
    return "PASS" if v["ratio"] >= v["goal_min"] else "MISS"


# ------------------------------------------------------------ markdown

def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) >= 100:
            return "%.0f" % x
        return ("%." + str(nd) + "f") % x
    return str(x)


def rng(v, key="ratio", nd=2):
    """'**0.35** (0.30-0.40, 3 rounds)' or '**0.35**'."""
    r = v.get(key + "_range")
    out = "**%s**" % fmt(v.get(key), nd)
    if r and v.get("rounds", 1) > 1:
        out += " (%s–%s, %d rounds%s)" % (
            fmt(r[0], nd), fmt(r[1], nd), v["rounds"],
            ", %d failed" % v["rounds_failed"] if v.get("rounds_failed") else "")
    return out


def erng(v, key):
    """'**1.02** (0.95–1.10)' for a ratio of e with its per-round range."""
    out = "**%s**" % fmt(v.get(key), 2)
    r = v.get(key + "_range")
    if r and v.get("rounds", 1) > 1:
        out += " (%s–%s)" % (fmt(r[0], 2), fmt(r[1], 2))
    return out


def lat3(d):
    return "%s / %s / %s" % (fmt(d["p50"]), fmt(d["p99"]), fmt(d["p99_9"]))


def markdown(doc, plots_rel, have_plots, profile_text, json_rel):
    env, end, c = doc["env"], doc["end"], doc["comparisons"]
    raw = doc["raw"]
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("Generated by `scripts/bench.sh` from one run (`%s`); do not edit by hand: "
      "rerun the script. Every figure below is a ratio to an anchor measured side by side "
      "in the same run (for rdma: the same VM boot). Absolute numbers on these shared "
      "machines drift with the load; ratios drift less." % json_rel)
    w("")
    w("## The run")
    w("")
    w("| | |")
    w("| --- | --- |")
    w("| when | %s (UTC)%s |" % (env.get("timestamp", "?"),
                                 " — **short smoke run, numbers mean nothing**" if env.get("short") else ""))
    w("| machine | `%s`: %s vCPU %s, %.1f GB RAM, Linux %s |" % (
        env.get("host", "?"), env.get("nproc", "?"), env.get("cpu", "?"),
        env.get("mem_kb", 0) / 1e6, env.get("kernel", "?")))
    st = env.get("settings") or {}
    venv = raw.get("vm-env") if ok(raw.get("vm-env")) else None
    if venv:
        w("| rdma | a %s-vCPU qemu %s guest on that machine (`tests/rxe-vm/run.sh`, Linux %s), "
          "soft-RoCE (`rdma_rxe`); agent, hub and perftest all inside it; guest load average %s "
          "at its start, %s at its end |" % (
              venv.get("nproc", "?"), st.get("vm_accel", "?").upper(), venv.get("kernel", "?"),
              venv.get("loadavg_start", "?"),
              " ".join((raw.get("vm-loadavg") or "?").split()[:3])))
    else:
        w("| rdma | no VM ran in this run |")
    w("| load average | %s at the start, %s at the end (1, 5, 15 min) |" % (
        env.get("loadavg_start", "?"), end.get("loadavg_end", "?")))
    w("| duration | %s s for all comparisons (%s) |" % (
        end.get("seconds", "?"),
        "; ".join("%s %s" % (k, st[k]) for k in ("secs", "fio_secs", "iperf_secs", "vm_secs",
                                                  "rounds", "sync_vol_mb") if k in st)))
    w("| source | `%s` |" % env.get("git", "?"))
    w("")
    w("\"ours\" is `repbench` (bench/repbench.c): librepagent driven directly, no NBD, "
      "against a running `rephubd` whose state, rings and recovery images are on tmpfs "
      "(so no disk is measured). `rf-fabric-bench` (the transport alone: a producer "
      "posting ring records to a draining hub, no agent, no volume) is shown beside it "
      "to split the gap between the transport and the agent/hub. Durable-ack latency "
      "runs from `rf_agent_write_begin` until the agent's `durable_seq` covers the write.")
    w("")
    w("## Goals")
    w("")
    w("| # | ours | anchor (same run) | ratio | goal | verdict | transport alone: value, ratio |")
    w("| --- | --- | --- | --- | --- | --- | --- |")

    def nm(v):
        return v.get("not_measured", "")

    a = c["a"]
    w("| a | rdma 64 KiB, QD16: %s MB/s | `ib_write_bw -s 65536`: %s MB/s | **%s** | %s | %s | %s MB/s, %s |" % (
        fmt(a.get("ours_mb_per_s")), fmt(a.get("anchor_mb_per_s")), fmt(a.get("ratio"), 2),
        a["goal"], a["verdict"] + (" (%s)" % nm(a) if a["verdict"] in ("NOT MEASURED", "FAILED") else ""),
        fmt(a.get("transport_mb_per_s")), fmt(a.get("transport_ratio"), 2)))
    b = c["b"]
    w("| b | rdma 4 KiB QD1 durable p50: %s us | `ib_write_lat -s 4096` round trip (2 x t_typical %s us): %s us | **%s** | %s | %s | %s us, %s |" % (
        fmt(b.get("ours_durable_p50_us")), fmt(b.get("anchor_one_way_us")), fmt(b.get("anchor_rtt_us")),
        fmt(b.get("ratio"), 2), b["goal"],
        b["verdict"] + (" (%s)" % nm(b) if b["verdict"] in ("NOT MEASURED", "FAILED") else ""),
        fmt(b.get("transport_durable_p50_us")), fmt(b.get("transport_ratio"), 2)))
    if b.get("pmem_durable_p50_us") is not None:
        w("| b (pmem) | the same, ring on an emulated NVDIMM (rule pmem): %s us (p99 %s us) | the same round trip: %s us | **%s** | %s | %s | |" % (
            fmt(b.get("pmem_durable_p50_us")), fmt(b.get("pmem_durable_p99_us")),
            fmt(b.get("anchor_rtt_us")), fmt(b.get("pmem_ratio"), 2), b["pmem_goal"],
            ("PASS" if b["pmem_ratio"] <= 1.5 else "MISS") if b.get("pmem_ratio") is not None
            else "NOT MEASURED"))
    cc = c["c"]
    w("| c | tcp 64 KiB, QD16, loopback: %s MB/s | iperf3 1 stream, `-l 65536`: %s MB/s | %s | %s | %s | %s MB/s, %s |" % (
        fmt(cc.get("ours_mb_per_s")), fmt(cc.get("anchor_mb_per_s")), rng(cc),
        cc["goal"], cc["verdict"] + (" (%s)" % nm(cc) if cc["verdict"] in ("NOT MEASURED", "FAILED") else ""),
        fmt(cc.get("transport_mb_per_s")), rng(cc, "transport_ratio")))
    d = c["d"]
    w("| d | shm 64 KiB, QD16: %s MB/s | single-thread memcpy 64 KiB: %s MB/s | %s | %s | %s | %s MB/s, %s |" % (
        fmt(d.get("ours_mb_per_s")), fmt(d.get("anchor_mb_per_s")), rng(d, nd=3),
        d["goal"], d["verdict"] + (" (%s)" % nm(d) if d["verdict"] in ("NOT MEASURED", "FAILED") else ""),
        fmt(d.get("transport_mb_per_s")), rng(d, "transport_ratio", 3)))
    e = c["e"]
    if "rand4k" in e and "seq1m" in e:
        r, s = e["rand4k"], e["seq1m"]
        w("| e | fio 4 KiB randwrite QD1 via filter + hub: %s IOPS, p50 %s us | plain `nbdkit file`: %s IOPS, p50 %s us | IOPS %s, p50 %s | %s | %s | |" % (
            fmt(r["ours"]["iops"]), fmt(r["ours"]["clat_p50_us"]), fmt(r["anchor"]["iops"]),
            fmt(r["anchor"]["clat_p50_us"]), erng(r, "iops_ratio"), erng(r, "p50_ratio"),
            e["goal"], e["verdict"]))
        w("| e | fio 1 MiB write QD16 via filter + hub: %s MB/s, p50 %s us | plain: %s MB/s, p50 %s us | MB/s %s, p50 %s | %s | (same verdict) | |" % (
            fmt(s["ours"]["mb_per_s"]), fmt(s["ours"]["clat_p50_us"]), fmt(s["anchor"]["mb_per_s"]),
            fmt(s["anchor"]["clat_p50_us"]), erng(s, "mb_per_s_ratio"), erng(s, "p50_ratio"),
            e["goal"]))
    else:
        w("| e | fio through nbdkit + filter + hub | plain `nbdkit file` | – | %s | %s (%s) | |" % (
            e["goal"], e["verdict"], nm(e)))
    f = c["f"]
    w("| f | initial sync of %s MiB (tcp): %s MB/s in %s s | min(fio seq read %s MB/s, tcp transport 1 MiB records %s MB/s) | **%s** | %s | %s | |" % (
        fmt((f.get("bytes") or 0) / 1048576.0, 0), fmt(f.get("ours_mb_per_s")), fmt(f.get("seconds"), 2),
        fmt(f.get("anchor_read_mb_per_s")), fmt(f.get("anchor_transport_mb_per_s")),
        fmt(f.get("ratio"), 2), f["goal"],
        f["verdict"] + (" (%s)" % nm(f) if f["verdict"] in ("NOT MEASURED", "FAILED") else "")))
    g = c["g"]
    w("| g | 1/2/4/8 agents, tcp 64 KiB, QD4 each: lowest aggregate MB/s over 1 agent's; hub RSS per added agent %s | 1 agent | **%s** | %s | %s | |" % (
        "spread (max/min) %s" % fmt(g.get("hub_kb_per_agent_spread"), 2), fmt(g.get("ratio"), 2), g["goal"],
        g["verdict"] + (" (%s)" % nm(g) if g["verdict"] in ("NOT MEASURED", "FAILED") else "")))
    h = c["h"]
    w("| h | guest 4 KiB QD1 write (fio via nbdkit + filter, VM) at `durable`, best poll: p50 adds %s us to plain nbdkit (%s us) | `ib_write_lat -s 4096` round trip: %s us | **%s** | %s | %s | |" % (
        fmt(min((v["added_p50_us"] for v in h["levels"].values()
                 if v["level"] == "durable" and v.get("added_p50_us") is not None), default=None)),
        fmt(h.get("plain_p50_us")), fmt(h.get("anchor_rtt_us")), fmt(h.get("ratio"), 2), h["goal"],
        h["verdict"] + (" (%s)" % nm(h) if h["verdict"] in ("NOT MEASURED", "FAILED") else "")))
    i = c.get("i", {"verdict": "NOT MEASURED", "goal": "", "rows": {}, "pairs": {}})
    sy = i.get("sync", {})
    w("| i | two guests, one wire: repfabric durable / async vs DRBD 8.4 C / A (QD1 p50 overhead, 1 MiB QD16 MB/s) and initial sync %s s vs DRBD %s s | DRBD | **%s** (lowest) | %s | %s | |" % (
        fmt(sy.get("rf_s"), 1), fmt(sy.get("drbd_s"), 1), fmt(i.get("ratio"), 2), i.get("goal", ""),
        i["verdict"] + (" (%s)" % nm(i) if i["verdict"] in ("NOT MEASURED", "FAILED") else "")))
    j = c.get("j", {"verdict": "NOT MEASURED", "goal": "", "modes": {}})
    jm = j.get("modes", {})
    w("| j | QEMU mirror (qemu-storage-daemon `blockdev-mirror` to nbdkit): ready after %s s (background), %s s (write-blocking) | repfabric's initial sync (f): %s s | **%s** (lowest) | %s | %s | |" % (
        fmt(jm.get("background", {}).get("ready_s"), 2), fmt(jm.get("write-blocking", {}).get("ready_s"), 2),
        fmt(c["f"].get("seconds"), 2), fmt(j.get("ratio"), 2), j.get("goal", ""),
        j["verdict"] + (" (%s)" % nm(j) if j["verdict"] in ("NOT MEASURED", "FAILED") else "")))
    w("")
    misses = [k for k, v in c.items() if v["verdict"] == "MISS"]
    unmeasured = [k for k, v in c.items() if v["verdict"] == "NOT MEASURED"]
    failed = [k for k, v in c.items() if v["verdict"] == "FAILED"]
    w("Missed goals: %s. Failed (ran, gave no figure): %s. Not measured (skipped): %s." % (
        ", ".join(misses) or "none", ", ".join(failed) or "none", ", ".join(unmeasured) or "none"))
    w("")
    behind = []
    for name, pr in c.get("i", {}).get("pairs", {}).items():
        if (pr.get("qd1_overhead_ratio") or 99) < 1:
            behind.append("i %s: QD1 latency added over the raw path %s us vs DRBD's %s us "
                          "(repfabric's write crosses NBD into nbdkit and the agent's "
                          "userspace post over rxe; DRBD's stays in the kernel)" % (
                              name, fmt(pr.get("ours_added_p50_us")), fmt(pr.get("peer_added_p50_us"))))
        if (pr.get("mb_per_s_ratio") or 99) < 1:
            behind.append("i %s: 1 MiB QD16 at %sx DRBD's MB/s (every byte is copied into the "
                          "agent's staging buffer and posted; DRBD sends from the bio)" % (
                              name, fmt(pr.get("mb_per_s_ratio"), 2)))
    sy = c.get("i", {}).get("sync", {})
    if (sy.get("ratio") or 99) < 1:
        behind.append("i initial sync: %s s vs DRBD's %s s" % (fmt(sy.get("rf_s"), 1), fmt(sy.get("drbd_s"), 1)))
    for mode, m in c.get("j", {}).get("modes", {}).items():
        if (m.get("sync_ratio") or 99) < 1:
            behind.append("j initial sync vs QEMU's mirror (%s): the mirror copied in %s s, "
                          "repfabric's sync took %s s (the hub pulls 1 MiB chunks, 4 in flight, "
                          "through the ring; the mirror streams 16 MiB of buffers straight to "
                          "the target)" % (mode, fmt(m.get("ready_s"), 2), fmt(c["f"].get("seconds"), 2)))
    if behind:
        w("Where repfabric is behind a peer in this run:")
        w("")
        for x in behind:
            w("* " + x)
        w("")
    if have_plots:
        w("![ratio to anchor per comparison](%s/ratios.png)" % plots_rel)
        w("")

    # details
    w("## Details")
    w("")
    w("### repbench runs (agent side = the repbench process: writers, the agent's thread, the durability poller)")
    w("")
    w("| run | MB/s | records/s | post p50 / p99 / p99.9 us | durable p50 / p99 / p99.9 us | CPU s/GB agent, hub | peak RSS agent, hub | seq map exact |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    names = [("a-ours", "a: rdma 64 KiB QD16 (VM)"), ("b-ours", "b: rdma 4 KiB QD1 (VM)"),
             ("c-ours", "c: tcp 64 KiB QD16"), ("c-qd1", "tcp 4 KiB QD1"),
             ("d-ours", "d: shm 64 KiB QD16"), ("d-qd1", "shm 4 KiB QD1"),
             ("g-1", "g: tcp 64 KiB, 1 agent QD4"), ("g-2", "g: 2 agents"),
             ("g-4", "g: 4 agents"), ("g-8", "g: 8 agents"), ("g-vols8", "1 agent, 8 volumes")]
    rows = []
    for key, label in names:
        ks = round_keys(raw, key)
        for k in ks:
            rows.append((k, label + (" (round %s)" % k.rsplit(".r", 1)[1] if len(ks) > 1 else "")))
    for key, label in rows:
        r = raw.get(key)
        if not ok(r):
            continue
        if r.get("status") != "ok":
            w("| %s | failed: %s (stage %s) | | | | | | |" % (label, r.get("status"), r.get("stage", "?")))
            continue
        w("| %s | %s | %s | %s | %s | %s, %s | %.1f MB, %.1f MB | %s |" % (
            label, fmt(r["mb_per_s"]), fmt(r["records_per_s"]), lat3(r["post_latency_us"]),
            lat3(r["durable_latency_us"]), fmt(r["agent"]["cpu_s_per_gb"], 2),
            fmt(r["hub"]["cpu_s_per_gb"], 2), r["agent"]["max_rss_kb"] / 1024.0,
            r["hub"]["max_rss_kb"] / 1024.0, "yes" if r["seq_map_exact"] else "**no**"))
    w("")
    w("The agent's peak RSS includes the in-memory \"local disks\" the writes touched "
      "(up to the volume size) and the agent's queue; the hub's includes the pages of "
      "the mapped ring it touched (the ring is `ring_size` per agent).")
    w("")
    if g.get("points"):
        w("### g: agents on one hub")
        w("")
        w("Medians over %d rounds; the ratio is taken per round against that round's 1-agent run." % g["points"][0]["rounds"])
        w("")
        w("| agents | aggregate MB/s (all rounds) | ratio to 1 (range) | durable p50 / p99 us | hub RSS (ring pages) | hub RSS per added agent (without ring pages) | hub CPU s/GB |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for p in g["points"]:
            w("| %d | %s (%s) | %s | %s / %s | %.1f MB (%.1f MB) | %s | %s |" % (
                p["agents"], fmt(p["mb_per_s"]), ", ".join(fmt(x) for x in p["mb_per_s_all"]),
                rng(p) if p["agents"] > 1 else "1", fmt(p["durable_p50_us"]),
                fmt(p["durable_p99_us"]), p["hub_rss_kb"] / 1024.0, p["hub_rss_shmem_kb"] / 1024.0,
                ("%.1f MB (%.2f MB)" % (p["hub_kb_per_added_agent"] / 1024.0,
                                         p["hub_anon_kb_per_added_agent"] / 1024.0))
                if "hub_kb_per_added_agent" in p else "–",
                fmt(p["hub_cpu_s_per_gb"], 2)))
        w("")
        if g.get("bitmap_bytes_per_tib"):
            w("Agent memory per volume: the dirty bitmap is %.1f MiB per TiB of volume "
              "(one bit per 64 KiB, mapped from its file, plus a 4 KiB header page: the "
              "%s MiB volumes here had %s-byte bitmap files). One agent with 8 volumes "
              "instead of 1 (same total queue depth): %s KB peak RSS per added volume, a "
              "figure dominated by how much of the in-memory disks the writes touched, "
              "so only its order of magnitude means anything; %s MB/s." % (
                  g["bitmap_bytes_per_tib"] / 1048576.0, fmt(g.get("vol_mib"), 0),
                  g.get("bitmap_file_bytes", "?"),
                  fmt(g.get("agent_kb_per_added_volume"), 0), fmt(g.get("vols8_mb_per_s"))))
            w("")
        if have_plots:
            w("![aggregate throughput and hub memory per agent count](%s/scaling.png)" % plots_rel)
            w("")
    if doc["qd1_latency"]:
        w("### QD1 durable-ack latency, 4 KiB")
        w("")
        w("| path | durable p50 / p99 / p99.9 us | post p50 / p99 / p99.9 us |")
        w("| --- | --- | --- |")
        lab = {"c-qd1": "tcp loopback (host)", "d-qd1": "shm (host)", "b-ours": "rdma (soft-RoCE VM)"}
        for k, v in doc["qd1_latency"].items():
            w("| %s | %s | %s |" % (lab[k], lat3(v["durable"]), lat3(v["post"])))
        w("")
        if have_plots:
            w("![QD1 durable latency percentiles](%s/latency.png)" % plots_rel)
            w("")
    if "rand4k" in e and "seq1m" in e:
        w("### e: fio (nbd engine)")
        w("")
        w("| job | plain IOPS / MB/s / p50 / p99 us | filter + hub IOPS / MB/s / p50 / p99 us |")
        w("| --- | --- | --- |")
        for job in ("rand4k", "seq1m"):
            o, an = e[job]["ours"], e[job]["anchor"]
            w("| %s | %s / %s / %s / %s | %s / %s / %s / %s |" % (
                job, fmt(an["iops"]), fmt(an["mb_per_s"]), fmt(an["clat_p50_us"]), fmt(an["clat_p99_us"]),
                fmt(o["iops"]), fmt(o["mb_per_s"]), fmt(o["clat_p50_us"]), fmt(o["clat_p99_us"])))
        ehs = [raw[k] for k in round_keys(raw, "e-hub") if ok(raw.get(k))]
        w("")
        w("Medians over %d rounds (plain, then through the filter, alternating; %s failed)." % (
            e["rand4k"]["rounds"], e["rand4k"]["rounds_failed"] + e["seq1m"]["rounds_failed"]))
        if ehs:
            w("Hub CPU during each filtered fio run: %s s; hub peak RSS %.1f MB." % (
                ", ".join("%.2f" % (eh["hub_cpu_ticks"] / eh["clk_tck"]) for eh in ehs),
                max(eh["hub_rss_kb"] for eh in ehs) / 1024.0))
        w("")
    if h.get("levels"):
        w("### h: guest write latency per acknowledgement level (soft-RoCE VM, ring on the NVDIMM)")
        w("")
        w("fio `--ioengine=nbd`, 4 KiB random writes at QD1 for the run's vm_secs, through nbdkit + "
          "the repagent filter (`repagent-ack=LEVEL`, `repagent-poll-us=POLL`; with POLL > 0 the "
          "hub's `poll_us` is the same), against plain `nbdkit file` in the same boot. \"adds\" is "
          "the p50 minus plain's p50; over RTT divides that by `ib_write_lat`'s round trip.")
        w("")
        w("| level | poll us | p50 us | p99 us | IOPS | adds (p50) us | adds / RTT | p50 / plain |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        w("| plain nbdkit | | %s | %s | %s | | | |" % (
            fmt(h.get("plain_p50_us")), fmt(h.get("plain_p99_us")), fmt(h.get("plain_iops"))))
        order = {"async": 0, "landed": 1, "durable": 2}
        for key, v in sorted(h["levels"].items(), key=lambda kv: (kv[1]["poll_us"], order[kv[1]["level"]])):
            w("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                v["level"], v["poll_us"], fmt(v["p50_us"]), fmt(v["p99_us"]), fmt(v["iops"]),
                fmt(v.get("added_p50_us")), fmt(v.get("added_over_rtt"), 2),
                fmt(v.get("p50_ratio_to_plain"), 2)))
        w("")
    if h.get("lags_under_load"):
        L = h["lags_under_load"]
        w("### The three positions under load (h: fio 64 KiB QD16 at `async`, status sampled every 0.25 s)")
        w("")
        w("%d samples; median / max of each lag (docs/DURABILITY.md: landed -> durable, durable -> "
          "applied, and landed -> applied, the ring in use)." % L["samples"])
        w("")
        w("| lag | records | bytes | age ms |")
        w("| --- | --- | --- | --- |")
        for lab, pre in (("landed -> durable", "durable_lag_"), ("durable -> applied", "apply_lag_"),
                         ("landed -> applied", "lag_")):
            w("| %s | %s / %s | %s / %s | %s / %s |" % (
                lab, fmt(L[pre + "records"]["median"]), fmt(L[pre + "records"]["max"]),
                fmt(L[pre + "bytes"]["median"]), fmt(L[pre + "bytes"]["max"]),
                fmt(L[pre + "ms"]["median"]), fmt(L[pre + "ms"]["max"])))
        w("")
    if c.get("i", {}).get("rows"):
        i = c["i"]
        w("### Peers: DRBD 8.4 and repfabric across two guests on one wire (i)")
        w("")
        w("Two guests (`tests/rxe-vm/run2.sh`, 1 vCPU each, a unix-socket `stream` link, soft-RoCE "
          "on it), one boot pair; fio `--direct=1`, 4 KiB randwrite QD1 then 1 MiB write QD16. "
          "DRBD runs on the guest's virtio disk (libaio), beside the raw disk; repfabric runs "
          "through nbdkit (fio's nbd engine) on a tmpfs copy of that disk in the guest, beside "
          "plain `nbdkit file` on the same copy (see How it is measured).")
        w("")
        w("| path | 4 KiB QD1 IOPS | p50 us | p99 us | 1 MiB QD16 MB/s |")
        w("| --- | --- | --- | --- | --- |")
        names = {"raw": "raw virtio disk (libaio)", "plain": "plain nbdkit on its tmpfs copy (nbd engine)",
                 "drbd-C": "DRBD protocol C", "drbd-A": "DRBD protocol A",
                 "rf-durable": "repfabric `durable` (rdma)", "rf-async": "repfabric `async` (rdma)"}
        for key in ("raw", "plain", "drbd-C", "rf-durable", "drbd-A", "rf-async"):
            r = i["rows"].get(key)
            if r:
                w("| %s | %s | %s | %s | %s |" % (names[key], fmt(r["iops"]), fmt(r["p50_us"]),
                                                 fmt(r["p99_us"]), fmt(r["mb_per_s"])))
        w("")
        if i.get("pairs"):
            w("| equal guarantee | QD1 p50 added over own raw path: ours / DRBD us | DRBD's / ours | 1 MiB MB/s ours / DRBD | IOPS ours / DRBD |")
            w("| --- | --- | --- | --- | --- |")
            for name, pr in i["pairs"].items():
                w("| %s | %s / %s | **%s** | **%s** | %s |" % (
                    name, fmt(pr.get("ours_added_p50_us")), fmt(pr.get("peer_added_p50_us")),
                    fmt(pr.get("qd1_overhead_ratio"), 2), fmt(pr.get("mb_per_s_ratio"), 2),
                    fmt(pr.get("iops_ratio"), 2)))
            w("")
        if i.get("sync"):
            sy = i["sync"]
            w("Initial full sync of %s MiB: DRBD %s s (%s MB/s), repfabric %s s (%s MB/s): DRBD's time / ours **%s**." % (
                fmt(sy["mb"], 0), fmt(sy["drbd_s"], 1), fmt(sy.get("drbd_mb_per_s")), fmt(sy["rf_s"], 1),
                fmt(sy.get("rf_mb_per_s")), fmt(sy.get("ratio"), 2)))
            w("")
    if any("ready_s" in m for m in c.get("j", {}).get("modes", {}).values()):
        j = c["j"]
        w("### Peers: QEMU's block mirror (j) beside f and e")
        w("")
        w("`qemu-storage-daemon`: the f-sized random image (tmpfs) as node `src`, exported "
          "writable over NBD; `blockdev-mirror sync=full` to `nbdkit file` on a unix socket, "
          "default buffer and granularity, no speed limit. Ready = the initial copy is done "
          "(BLOCK_JOB_READY). Then the e fio jobs run against the export while the job mirrors "
          "(write-blocking: a guest write completes once the target has it, like repfabric's "
          "`durable`; background: like `async`). repfabric's figures are f (repbench "
          "`--sync-only`, tcp) and e (fio through nbdkit + filter + hub, tcp, `async`).")
        w("")
        w("| mode | ready s | copy MB/s | sync: mirror / repfabric time | 4 KiB QD1 IOPS | p50 us | 1 MiB QD16 MB/s | IOPS ours / mirror | MB/s ours / mirror |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode, m in j["modes"].items():
            if "ready_s" not in m:
                w("| %s | failed: %s | | | | | | | |" % (mode, m.get("error", "")))
                continue
            w("| %s | %s | %s | **%s** | %s | %s | %s | %s | %s |" % (
                mode, fmt(m["ready_s"], 2), fmt(m.get("sync_mb_per_s")), fmt(m.get("sync_ratio"), 2),
                fmt(m.get("iops")), fmt(m.get("p50_us")), fmt(m.get("mb_per_s")),
                fmt(m.get("iops_ratio"), 2), fmt(m.get("mb_per_s_ratio"), 2)))
        w("")
    if raw.get("rxe-stats"):
        w("### rxe counters after the VM run")
        w("")
        w("```")
        w(raw["rxe-stats"].strip()[:1500])
        w("```")
        w("")
    w("## How it is measured")
    w("")
    w("* Command: `scripts/bench.sh` (all), `scripts/bench.sh --short` (smoke run, ctest "
      "`func/bench_smoke`, checks the JSON and the markdown, never a speed). Raw results "
      "of every tool are kept under `raw` in the run's JSON.")
    w("* a, b: one VM boot runs, in order, rephubd over `rdma://10.0.2.15`, repbench 64 KiB "
      "QD16 and 4 KiB QD1, rf-fabric-bench, then `ib_write_bw -d rxe0 -x 1 -F -s 65536 -D S` "
      "and `ib_write_lat -d rxe0 -x 1 -F -s 4096 -n 2000` (server and client under `timeout`). "
      "perftest's MB/sec is MiB/s: the anchor is MsgRate x size in 10^6 bytes/s. "
      "ib_write_lat reports one-way latency (half a round trip, busy-polling); a durable "
      "ack needs a round trip, so b compares with 2 x t_typical.")
    w("* c: iperf3 `-c 127.0.0.1 -l 65536 -t %s`, one stream; repbench and rf-fabric-bench "
      "run %s s each. d: rf-fabric-bench `--memcpy-anchor` (single-thread memcpy of 64 KiB "
      "records into a 16 MiB buffer). c, d and g run %s interleaved rounds (ours, then the "
      "anchor); the ratio is the median of the per-round ratios." % (
          st.get("iperf_secs", "?"), st.get("secs", "?"), st.get("rounds", "?")))
    w("* e: `fio --ioengine=nbd` against `nbdkit -U SOCK file DISK` and against the same "
      "with `--filter=repagent` and a running hub (tcp, volume synced first), both servers "
      "up side by side on their own tmpfs images, the fio runs alternating; jobs "
      "`randwrite bs=4k iodepth=1` then `write bs=1M iodepth=16`, %s s each, time-based. "
      "Latency is fio's clat." % st.get("fio_secs", "?"))
    w("* f: repbench `--sync-only --disk IMAGE` (random data) times add-volume to PROTECTED; "
      "anchors: `fio --rw=read --bs=1M` of the same image (on tmpfs, like the image repbench "
      "reads, so neither reads a disk), and rf-fabric-bench tcp with 1 MiB records.")
    w("* g: a fresh hub per agent count, each agent one volume and one writer thread, QD4.")
    w("* i (peers, `bench/peers.sh` in a `tests/rxe-vm/run2.sh` pair): two guests, 1 vCPU "
      "each, one unix-socket `stream` wire, soft-RoCE on it; each guest's virtio disk is a "
      "tmpfs file on the host (b's holds random data). One boot pair, in order: fio on b's "
      "raw disk; DRBD 8.4 (the guests' kernel module, `drbd-utils`' 8.4 helper, our own "
      "config via `drbdadm -c`): `create-md`, `up` on both, `primary --force` on b, timed to "
      "UpToDate/UpToDate (the initial full sync), fio on /dev/drbd0 with protocol C, "
      "`drbdadm adjust` to protocol A on both, fio again, `down`; then b copies its disk to "
      "its tmpfs (nbdkit's file plugin on the virtio disk itself crawled in this guest: "
      "1 MiB QD16 at 17 MB/s with no filter at all), plain `nbdkit file` on that copy (fio's "
      "nbd engine), rephubd on a (`rdma://192.168.77.1`, ring and recovery image on a's "
      "tmpfs), nbdkit + repagent at `async` timed from start to `repctl wait --synced` "
      "(the same volume size), fio, then at `durable`, fio. Why it is fair: the same "
      "disks, wire, CPUs and boot; equal guarantees paired (DRBD C and `durable`: a write "
      "completes once the peer has it durably; A and `async`: once it is local); DRBD "
      "tuned as its guide says for a fast link (`max-buffers 8000`, `max-epoch-size 8000`, "
      "`sndbuf-size 0` = auto, `al-extents 6007`, `c-plan-ahead 0` + `resync-rate 1000M` so "
      "the resync controller does not throttle the initial sync: LAB measured 12.7 MiB/s "
      "with the default controller, 33.5 with this); repfabric with its defaults. DRBD is "
      "in the kernel (fio libaio on the block device), repfabric in userspace behind NBD, "
      "so each is compared with its own raw path (raw disk, plain nbdkit) and the QD1 "
      "figure is the p50 *added* over that path.")
    w("* j (peers): `qemu-storage-daemon` (the Debian qemu's) mirrors the f-sized random "
      "image with `blockdev-mirror sync=full` to `nbdkit file` on a unix socket, once with "
      "`copy-mode=background` (async: the mirror catches up behind the guest) and once with "
      "`copy-mode=write-blocking` (a guest write waits for the target, like `durable`); "
      "default `buf-size` and granularity, no `speed` limit (fair: the fastest it goes "
      "untuned; the hand measurement in #16 used the same defaults). Timed from the QMP "
      "command to BLOCK_JOB_READY; fio (the e jobs) then writes through the daemon's NBD "
      "export while the job is still mirroring. The sync ratio is per byte against f.")
    w("* repbench numbers its writes at `write_end` and maps them to ring sequences "
      "(subtracting PAD records); `seq map exact` says that no resend, sync read or "
      "overflow broke the mapping during the run (b is not scored when it did not hold). "
      "One durability poller per agent blocks in `rf_agent_wait_durable` (woken when the "
      "hub's position arrives); its CPU is left out of the agent's CPU s/GB.")
    w("")
    if profile_text:
        w(profile_text.strip())
        w("")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------ plots

def plots(doc, outdir):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot is not installed (Debian package gnuplot-nox): no plots"
    os.makedirs(outdir, exist_ok=True)
    c = doc["comparisons"]
    rows = []
    for k, label, goal in (("a", "a rdma bw", c["a"].get("goal_min")),
                           ("c", "c tcp bw", 0.5), ("d", "d shm bw", 0.5),
                           ("f", "f sync", 0.8), ("g", "g worst agg/1", 0.9)):
        if c[k].get("ratio") is not None:
            rows.append((label, c[k]["ratio"], goal))
    if c["b"].get("ratio") is not None:
        rows.append(("b rdma lat (1/x)", 1 / c["b"]["ratio"], 1 / 3.0))
    e = c["e"]
    if e.get("rand4k", {}).get("iops_ratio") is not None:
        rows.append(("e 4k IOPS", e["rand4k"]["iops_ratio"], 0.85))
    if e.get("seq1m", {}).get("mb_per_s_ratio") is not None:
        rows.append(("e 1M MB/s", e["seq1m"]["mb_per_s_ratio"], 0.85))
    ci = c.get("i", {})
    for pr in ci.get("pairs", {}).values():
        short = "dur/C" if pr["peer"] == "drbd-C" else "async/A"
        if pr.get("qd1_overhead_ratio") is not None:
            rows.append(("i %s QD1 vs DRBD" % short, pr["qd1_overhead_ratio"], 1.0))
        if pr.get("mb_per_s_ratio") is not None:
            rows.append(("i %s 1M vs DRBD" % short, pr["mb_per_s_ratio"], 1.0))
    if ci.get("sync", {}).get("ratio") is not None:
        rows.append(("i sync vs DRBD", ci["sync"]["ratio"], 1.0))
    for mode, m in c.get("j", {}).get("modes", {}).items():
        if m.get("sync_ratio") is not None:
            rows.append(("j sync vs mirror %s" % mode[:5], m["sync_ratio"], 3.0))
    data = os.path.join(outdir, ".ratios.dat")
    with open(data, "w") as f:
        for i, (label, r, goal) in enumerate(rows):
            f.write('%d "%s" %f %f\n' % (i, label, r, goal))
    script = """
set terminal pngcairo size 900,420 noenhanced
set output '%s/ratios.png'
set title 'ratio to the anchor (higher is better; b plotted as anchor/ours)'
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -30
set grid ytics
plot '%s' using 1:3:xtic(2) with boxes title 'ours / anchor', '' using 1:4 with points pt 7 ps 1.5 title 'goal'
""" % (outdir, data)
    g = c["g"].get("points") or []
    gdata = os.path.join(outdir, ".scaling.dat")
    with open(gdata, "w") as f:
        for p in g:
            f.write("%d %f %f\n" % (p["agents"], p["mb_per_s"], p["hub_rss_kb"] / 1024.0 / p["agents"]))
    if g:
        script += """
set output '%s/scaling.png'
set title 'agents on one hub (tcp, 64 KiB, QD4 each)'
unset xtics
set xtics (1, 2, 4, 8) norotate
set logscale x 2
set xlabel 'agents'
set ylabel 'aggregate MB/s'
set y2label 'hub RSS per agent, MB'
set y2tics
set yrange [0:*]
set y2range [0:*]
plot '%s' using 1:2 with linespoints lw 2 title 'aggregate MB/s', '' using 1:3 axes x1y2 with linespoints lw 2 title 'hub RSS / agents (MB)'
unset logscale x
unset y2tics
unset y2label
unset xlabel
""" % (outdir, gdata)
    lat = doc["qd1_latency"]
    ldata = os.path.join(outdir, ".latency.dat")
    lab = {"c-qd1": "tcp", "d-qd1": "shm", "b-ours": "rdma (VM)"}
    with open(ldata, "w") as f:
        for i, (k, v) in enumerate(lat.items()):
            dl = v["durable"]
            f.write('%d "%s" %f %f %f\n' % (i, lab[k], dl["p50"], dl["p99"], dl["p99_9"]))
    if lat:
        script += """
set output '%s/latency.png'
set title 'QD1 durable-ack latency, 4 KiB (us, log scale)'
set xtics ('' 0) norotate
set logscale y
set ylabel 'us'
set style data histograms
set style histogram clustered
set boxwidth 0.9
set yrange [1:*]
plot '%s' using 3:xtic(2) title 'p50', '' using 4 title 'p99', '' using 5 title 'p99.9'
""" % (outdir, ldata)
    try:
        p = subprocess.run([gp], input=script, text=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as ex:
        return "gnuplot failed: %s" % ex
    for n in (".ratios.dat", ".scaling.dat", ".latency.dat"):
        try:
            os.unlink(os.path.join(outdir, n))
        except OSError:
            pass
    if p.returncode != 0:
        return "gnuplot failed: %s" % p.stderr.strip()[:300]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--plots", required=True)
    ap.add_argument("--profile")
    ap.add_argument("--src", default=".")
    o = ap.parse_args()
    doc = build(o.parts)
    err = plots(doc, o.plots)
    doc["plots"] = {"dir": o.plots, "error": err}
    with open(o.json, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    md_dir = os.path.dirname(os.path.abspath(o.md))
    plots_rel = os.path.relpath(os.path.abspath(o.plots), md_dir)
    src = os.path.abspath(o.src)
    jabs = os.path.abspath(o.json)
    json_rel = os.path.relpath(jabs, src) if jabs.startswith(src + os.sep) else jabs
    profile = None
    if o.profile and os.path.exists(o.profile):
        with open(o.profile) as f:
            profile = f.read()
    md = markdown(doc, plots_rel, err is None, profile, json_rel)
    if err:
        md += "\nPlots: %s.\n" % err
    with open(o.md, "w") as f:
        f.write(md)
    for k, v in doc["comparisons"].items():
        r = v.get("ratio")
        print("%s: %s%s" % (k, v["verdict"], "" if r is None else " (ratio %.3f)" % r),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
