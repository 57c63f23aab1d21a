#!/usr/bin/env python3
"""QEMU's block mirror as a peer (scripts/bench.sh part j, #16).

Talks QMP to a qemu-storage-daemon that has the source image as node `src`
(exported writable over NBD) and an NBD target (nbdkit) as node `tgt`:
starts `blockdev-mirror sync=full` with the given copy mode, times it to
BLOCK_JOB_READY (the initial full copy), then, with the job still mirroring,
runs fio (nbd engine) against the daemon's export: guest writes while the
mirror is active. Cancels the job and writes one JSON object:
  {"mode", "ready_s", "bytes", "fio": <fio's JSON>}  or {"error": ...}.

  qmp_mirror.py --qmp SOCK --mode background|write-blocking --json OUT
                --uri NBD-URI --fio-secs S --size SIZE [--timeout S]
"""
import argparse
import json
import socket
import subprocess
import sys
import time


class Qmp:
    def __init__(self, path, timeout):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self.events = []
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        while True:
            m = self.read()
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise RuntimeError("%s: %s" % (name, m["error"].get("desc")))
            return m.get("return")

    def wait_event(self, names, deadline):
        while True:
            for i, e in enumerate(self.events):
                if e["event"] in names:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise RuntimeError("no %s within the timeout" % "/".join(names))
            self.events.append(self.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--mode", required=True, choices=("background", "write-blocking"))
    ap.add_argument("--json", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--fio-secs", type=float, required=True)
    ap.add_argument("--size", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    out = {"mode": a.mode}
    try:
        q = Qmp(a.qmp, a.timeout)
        t0 = time.monotonic()
        q.cmd("blockdev-mirror", **{"job-id": "m0", "device": "src", "target": "tgt",
                                    "sync": "full", "copy-mode": a.mode})
        ev = q.wait_event(("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED"), t0 + a.timeout)
        out["ready_s"] = time.monotonic() - t0
        if ev["event"] != "BLOCK_JOB_READY":
            raise RuntimeError("the mirror ended before it was ready: %s" % ev)
        out["bytes"] = ev["data"].get("len")
        r = subprocess.run(
            ["timeout", str(int(4 * a.fio_secs + 120)), "fio", "--output-format=json",
             "--ioengine=nbd", "--uri=" + a.uri, "--size=" + a.size, "--offset=0",
             "--time_based", "--runtime=%g" % a.fio_secs,
             "--name=rand4k", "--rw=randwrite", "--bs=4k", "--iodepth=1",
             "--name=seq1m", "--stonewall", "--rw=write", "--bs=1M", "--iodepth=16"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError("fio failed: %s" % r.stderr.strip()[-300:])
        # the nbd engine prints a line before the JSON
        txt = r.stdout[r.stdout.index("{"):]
        out["fio"] = json.loads(txt)
        jobs = q.cmd("query-block-jobs")
        out["job_after_fio"] = jobs[0] if jobs else None
        q.cmd("block-job-cancel", device="m0", force=True)
        q.wait_event(("BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED"), time.monotonic() + 60)
    except (OSError, RuntimeError, ValueError) as e:
        out["error"] = str(e)
    with open(a.json, "w") as f:
        json.dump(out, f)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
