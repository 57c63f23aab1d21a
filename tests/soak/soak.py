#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Workload writer and checker of the randomized fault soak (docs/SOAK.md).

  soak.py init    --disk FILE --size BYTES --seed N
  soak.py writer  --uri URI --size BYTES --seed N --log FILE --ctl DIR
  soak.py check   --log FILE --state FILE --seed N --size BYTES
                  (--disk FILE [--image FILE] | --image FILE --upto BYTES [--from BYTES])

Every 4 KiB block holds a stamp: magic, block number, version, seed, then a
filler derived from (block, version); zeroed and trimmed blocks read as
zeros. The writer keeps up to --depth (4) requests in flight (writes,
zeroes, trims of random sizes at random offsets, three in four in a hot
eighth of the disk, so that requests overlap all the time; two requests in
flight never overlap, so the order of the writes to a block is the order
they were sent); every request gets the next version and is logged before
it is sent ("I"), and when it completes ("C") or fails ("E": its outcome is
unknown). The sequence of requests is a function of the seed.

The checker replays the log over the model saved at the previous quiesce:
a completed write or zero makes its content the only one allowed for its
blocks; a failed or unfinished one adds its content to what is allowed, and
so does a trim (NBD leaves a trimmed range unspecified: old data or zeros;
the agent does not wait for the hub at a trim, it resends the range). A block
that holds anything else, or a stamp that does not verify, is a violation.

  --disk (quiesce): the protected disk must match the model, and the image
    (when given) must equal the disk byte for byte; the model then becomes
    what the disk holds, and the state is saved.
  --image --upto [--from] (crash check): the hub's recovery image, after
    the hub and the agent were SIGKILLed and the agent's bitmap deleted,
    must hold every request sent at or after byte FROM of the log and
    completed in its first UPTO bytes (all of them acknowledged durable),
    or a later one. The model is not changed.

Python with Debian's python3-libnbd (the writer), the standard library only
otherwise. Exit 0 ok, 1 violation (printed), 2 usage or environment.
"""
import argparse
import json
import os
import random
import struct
import sys
import time

BS = 4096
MAGIC = b"RFSOAK\x00\x01"
HDR = struct.Struct("<8sQQQ")
ZERO = -1  # the value of a zeroed or trimmed block


def block_bytes(seed, b, v):
    hdr = HDR.pack(MAGIC, b, v, seed)
    fill = struct.pack("<Q", (b * 0x9E3779B97F4A7C15 ^ (v * 0xC2B2AE3D27D4EB4F) ^ seed) & (2**64 - 1))
    return hdr + fill * ((BS - HDR.size) // 8)


def decode(seed, b, data):
    """The value a block holds: a version, ZERO, or None (garbage)."""
    if data.count(0) == BS:
        return ZERO
    magic, blk, v, s = HDR.unpack_from(data)
    if magic != MAGIC or blk != b or s != seed:
        return None
    return v if data == block_bytes(seed, b, v) else None


def describe(val):
    if val is None:
        return "garbage (no valid stamp)"
    if val == ZERO:
        return "zeros"
    return f"version {val}"


# ---- the workload -------------------------------------------------------

def next_op(rng, nblocks):
    r = rng.random()
    kind = "W" if r < 0.8 else ("Z" if r < 0.9 else "T")
    r = rng.random()
    if r < 0.7:
        n = rng.randint(1, 16)
    elif r < 0.95:
        n = rng.randint(17, 64)
    else:
        n = rng.randint(65, 256)
    hot = max(nblocks // 8, n + 1)
    if rng.random() < 0.75:
        off = rng.randrange(0, hot - n + 1)
    else:
        off = rng.randrange(0, nblocks - n + 1)
    return kind, off, min(n, nblocks - off)


def cmd_init(a):
    nblocks = a.size // BS
    with open(a.disk, "wb") as f:
        for b in range(nblocks):
            f.write(block_bytes(a.seed, b, 0))
    return 0


def cmd_writer(a):
    import nbd  # Debian: python3-libnbd

    nblocks = a.size // BS
    rng = random.Random(a.seed)
    log = open(a.log, "a", buffering=1)
    pause, paused, stop = (os.path.join(a.ctl, n) for n in ("pause", "paused", "stop"))
    h = None
    version = 0
    nxt = None  # the next request, generated but not sent yet
    inflight = {}  # cookie -> (version, kind, off, n, buffer)
    counts = {"W": 0, "Z": 0, "T": 0, "E": 0}

    def connect():
        for _ in range(3000):  # 10 minutes at most
            if os.path.exists(stop) or os.path.exists(pause):
                return None
            try:
                hh = nbd.NBD()
                hh.connect_uri(a.uri)
                if not (hh.can_zero() and hh.can_trim()):
                    print("soak writer: the server cannot zero or trim", file=sys.stderr)
                    sys.exit(2)
                return hh
            except nbd.Error:
                time.sleep(0.2)
        print("soak writer: no NBD server for 10 minutes", file=sys.stderr)
        sys.exit(2)

    def fail_all(why):
        for v, *_ in inflight.values():
            log.write(f"E {v} {why}\n")
            counts["E"] += 1
        inflight.clear()

    def close():
        nonlocal h
        if h is not None:
            fail_all("connection closed")
            try:
                h.shutdown()
            except nbd.Error:
                pass
            h = None

    def reap(timeout_ms):
        """Wait for completions (at most timeout_ms), log them."""
        try:
            h.poll(timeout_ms)
        except nbd.Error:
            pass
        for cookie in list(inflight):
            v = inflight[cookie][0]
            try:
                if not h.aio_command_completed(cookie):
                    continue
                log.write(f"C {v}\n")
                counts[inflight[cookie][1]] += 1
            except nbd.Error as e:
                msg = str(e).splitlines()[0] if str(e) else "error"
                log.write(f"E {v} {msg}\n")
                counts["E"] += 1
            del inflight[cookie]
        if inflight and h.aio_is_dead():
            fail_all("connection dead")
        if h.aio_is_dead():
            close()

    def overlaps(op):
        _, _, off, n = op
        return any(off < o + m and o < off + n for (_, _, o, m, _) in inflight.values())

    while not os.path.exists(stop):
        if os.path.exists(pause):
            while h is not None and inflight:
                reap(1000)
            close()
            tmp = paused + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{version}\n")
            os.rename(tmp, paused)
            while os.path.exists(pause) and not os.path.exists(stop):
                time.sleep(0.05)
            os.unlink(paused)
            continue
        if h is None:
            h = connect()
            if h is None:
                continue
        # Send up to a.depth requests; requests in flight never overlap, so
        # the order of the writes to a block is the order they were sent.
        while len(inflight) < a.depth:
            if nxt is None:
                version += 1
                nxt = (version, *next_op(rng, nblocks))
            if overlaps(nxt):
                break
            v, kind, off, n = nxt
            log.write(f"I {v} {kind} {off} {n}\n")
            buf = None
            try:
                if kind == "W":
                    # A bytearray, kept in inflight until it completes: an
                    # nbd.Buffer passed to aio_pwrite is never freed by
                    # python3-libnbd 1.14 (1 MiB leaked per 1 MiB write).
                    buf = bytearray(b"".join(
                        block_bytes(a.seed, b, v) for b in range(off, off + n)))
                    cookie = h.aio_pwrite(buf, off * BS)
                elif kind == "Z":
                    cookie = h.aio_zero(n * BS, off * BS)
                else:
                    cookie = h.aio_trim(n * BS, off * BS)
            except nbd.Error as e:
                log.write(f"E {v} {str(e).splitlines()[0] if str(e) else 'error'}\n")
                counts["E"] += 1
                nxt = None
                close()
                break
            inflight[cookie] = (v, kind, off, n, buf)
            nxt = None
        if h is not None:
            reap(1000)
    while h is not None and inflight:
        reap(1000)
    close()
    print(json.dumps({"requests": version, "writes": counts["W"], "zeroes": counts["Z"],
                      "trims": counts["T"], "failed": counts["E"]}))
    return 0


# ---- the checker --------------------------------------------------------

def load_state(path, nblocks):
    if os.path.exists(path):
        with open(path) as f:
            st = json.load(f)
        st["cand"] = [set(c) for c in st["cand"]]
        return st
    return {"pos": 0, "cand": [{0} for _ in range(nblocks)], "writes": 0, "bytes": 0,
            "quiesces": 0, "crash_checks": 0, "acked_in_crash_checks": 0}


def save_state(path, st):
    out = dict(st)
    out["cand"] = [sorted(c) for c in st["cand"]]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.rename(tmp, path)


def replay(st, logpath, upto, claim_from=None):
    """Apply the log from st['pos'] up to byte upto (None: its end) to a copy
    of the candidates. With claim_from (a crash check), a request sent
    before that byte of the log is not claimed durable even if it completed
    (the agent was still catching up from a fallback then): it only adds its
    content. Returns (cand, new_pos, completed and claimed, their bytes)."""
    cand = [set(c) for c in st["cand"]]
    pending = {}
    done = nbytes = 0
    with open(logpath, "rb") as f:
        f.seek(st["pos"])
        data = f.read() if upto is None else f.read(max(0, upto - st["pos"]))
    # a last line without its newline is not complete yet
    end = data.rfind(b"\n") + 1
    pos = st["pos"] + end
    at = st["pos"]
    for raw in data[:end].split(b"\n")[:-1]:
        line_at, at = at, at + len(raw) + 1
        p = raw.decode().split()
        if p[0] == "I":
            pending[int(p[1])] = (p[2], int(p[3]), int(p[4]), line_at)
        elif p[0] in ("C", "E"):
            v = int(p[1])
            kind, off, n, sent_at = pending.pop(v)
            val = v if kind == "W" else ZERO
            # NBD leaves a trimmed range unspecified (old data or zeros) and
            # the agent does not wait for the hub at a trim (docs/AGENT.md:
            # its range is resent from the disk): a trim only adds zeros.
            claimed = (p[0] == "C" and kind != "T" and
                       (claim_from is None or sent_at >= claim_from))
            for b in range(off, off + n):
                if claimed:
                    cand[b] = {val}
                else:
                    cand[b].add(val)
            if claimed:
                done += 1
                nbytes += n * BS
    for v, (kind, off, n, _) in pending.items():  # in flight at the cut
        val = v if kind == "W" else ZERO
        for b in range(off, off + n):
            cand[b].add(val)
    return cand, pos, done, nbytes


def check_file(path, cand, seed, what):
    first = None
    bad = 0
    with open(path, "rb") as f:
        for b, allowed in enumerate(cand):
            data = f.read(BS)
            val = decode(seed, b, data) if len(data) == BS else None
            if val is None or val not in allowed:
                bad += 1
                if first is None:
                    first = (f"{what}: block {b} (offset {b * BS}) holds {describe(val)}, "
                             f"allowed: {', '.join(describe(x) for x in sorted(allowed))}")
    return bad, first


def cmd_check(a):
    nblocks = a.size // BS
    st = load_state(a.state, nblocks)
    if a.upto is not None:  # crash check
        cand, _, done, nbytes = replay(st, a.log, a.upto, a.claim_from)
        bad, first = check_file(a.image, cand, a.seed, "recovery image after the crash")
        if bad:
            print(f"LOST: {bad} block(s) of the recovery image lack a write acknowledged "
                  f"durable; first: {first}")
            return 1
        st["crash_checks"] += 1
        st["acked_in_crash_checks"] += done
        # only the counters: the model stays at the last quiesce
        keep = load_state(a.state, nblocks)
        keep["crash_checks"], keep["acked_in_crash_checks"] = st["crash_checks"], st["acked_in_crash_checks"]
        save_state(a.state, keep)
        print(f"crash check: all {nblocks} blocks hold the last write acknowledged durable "
              f"or a later one ({done} requests acknowledged durable since the last quiesce)")
        return 0
    cand, pos, done, nbytes = replay(st, a.log, None)
    bad, first = check_file(a.disk, cand, a.seed, "protected disk")
    if bad:
        print(f"DISK: {bad} block(s) of the protected disk do not match the writes; first: {first}")
        return 1
    if a.image:
        with open(a.disk, "rb") as d, open(a.image, "rb") as i:
            b = 0
            while True:
                x, y = d.read(1 << 20), i.read(1 << 20)
                if x != y:
                    for k in range(0, max(len(x), len(y)), BS):
                        if x[k:k + BS] != y[k:k + BS]:
                            blk = b + k // BS
                            print(f"DIFF: the recovery image differs from the disk at block {blk}: "
                                  f"image {describe(decode(a.seed, blk, y[k:k + BS]))}, "
                                  f"disk {describe(decode(a.seed, blk, x[k:k + BS]))}")
                            return 1
                if not x:
                    break
                b += len(x) // BS
    # the model becomes what the disk holds
    with open(a.disk, "rb") as f:
        for b in range(nblocks):
            cand[b] = {decode(a.seed, b, f.read(BS))}
    st.update(cand=cand, pos=pos, writes=st["writes"] + done, bytes=st["bytes"] + nbytes,
              quiesces=st["quiesces"] + 1)
    save_state(a.state, st)
    print(f"quiesce: disk matches {done} completed requests ({nbytes} bytes); "
          f"{'image equals disk' if a.image else 'no image compared'}")
    return 0


def cmd_stats(a):
    st = load_state(a.state, 0)
    st.pop("cand")
    print(json.dumps(st))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init")
    p.add_argument("--disk", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p = sub.add_parser("writer")
    p.add_argument("--uri", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ctl", required=True)
    p.add_argument("--depth", type=int, default=4)
    p = sub.add_parser("check")
    p.add_argument("--log", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--disk")
    p.add_argument("--image")
    p.add_argument("--upto", type=int)
    p.add_argument("--from", dest="claim_from", type=int, default=0)
    p = sub.add_parser("stats")
    p.add_argument("--state", required=True)
    a = ap.parse_args()
    if a.cmd == "check" and not (a.disk or (a.image and a.upto is not None)):
        ap.error("check needs --disk, or --image with --upto")
    return {"init": cmd_init, "writer": cmd_writer, "check": cmd_check, "stats": cmd_stats}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
