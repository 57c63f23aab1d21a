#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Hostile clients for tests/func/hub_flood.sh: connections that never prove
themselves, against the hub's control port and its tcp:// data port.

  flood.py --ctl HOST:PORT --data HOST:PORT --idle N --slow N --garbage N
           --huge N --hold SECONDS [--waves W]

Opens, per port and per wave, N idle connections (send nothing), N slow
senders (one byte of a plausible frame header every 0.5 s), N that send 64
random bytes, and N that declare a huge frame length in a well-formed
header; then holds them, keeping the slow ones trickling, for SECONDS.
Waves start one second apart. Prints one JSON object: per port, how many
connections were made, refused at connect, and closed by the hub (EOF or
reset) by kind, and how many were still open at the end.
"""
import argparse
import json
import os
import resource
import selectors
import socket
import struct
import time

CTL_MAGIC, CTL_VERSION = 0x54434652, 1
SW_MAGIC, SW_VERSION = 0x42465246, 1


def ctl_header(length):
    return struct.pack("<IHHQII", CTL_MAGIC, CTL_VERSION, 9, 1, length, 0)


def sw_header(length):
    return struct.pack("<IBBHII", SW_MAGIC, SW_VERSION, 1, 0, length, 0)


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


class Conn:
    def __init__(self, port, kind, sock, trickle):
        self.port, self.kind, self.sock = port, kind, sock
        self.trickle = trickle  # bytes left to send one at a time
        self.closed = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--data", required=True)
    for k in ("idle", "slow", "garbage", "huge"):
        ap.add_argument("--" + k, type=int, default=0)
    ap.add_argument("--hold", type=float, default=10)
    ap.add_argument("--waves", type=int, default=1)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ports = {"control": hostport(a.ctl), "data": hostport(a.data)}
    headers = {"control": ctl_header, "data": sw_header}
    stats = {p: {"made": 0, "connect_failed": 0, "closed": {}, "open": 0} for p in ports}
    sel = selectors.DefaultSelector()
    conns = []

    def open_one(port, kind):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(ports[port])
        except OSError:
            stats[port]["connect_failed"] += 1
            s.close()
            return
        s.setblocking(False)
        stats[port]["made"] += 1
        trickle = b""
        try:
            if kind == "garbage":
                s.send(os.urandom(64))
            elif kind == "huge":
                s.send(headers[port](0xFFFFFFF0))
            elif kind == "slow":
                trickle = headers[port](64)
        except OSError:
            pass
        c = Conn(port, kind, s, trickle)
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)

    def closed(c):
        if c.closed:
            return
        c.closed = True
        sel.unregister(c.sock)
        c.sock.close()
        k = stats[c.port]["closed"]
        k[c.kind] = k.get(c.kind, 0) + 1

    end = time.monotonic() + a.hold
    next_wave, waves, next_trickle = time.monotonic(), 0, 0.0
    while time.monotonic() < end:
        now = time.monotonic()
        if waves < a.waves and now >= next_wave:
            for port in ports:
                for kind in ("idle", "slow", "garbage", "huge"):
                    for _ in range(getattr(a, kind)):
                        open_one(port, kind)
            waves += 1
            next_wave = now + 1
        if now >= next_trickle:
            for c in conns:
                if not c.closed and c.trickle:
                    try:
                        c.sock.send(c.trickle[:1])
                        c.trickle = c.trickle[1:]
                    except OSError:
                        closed(c)
            next_trickle = now + 0.5
        for key, _ in sel.select(timeout=0.1):
            c = key.data
            try:
                if not c.sock.recv(4096):
                    closed(c)
            except BlockingIOError:
                pass
            except OSError:
                closed(c)
    for c in conns:
        if not c.closed:
            stats[c.port]["open"] += 1
            c.sock.close()
    print(json.dumps(stats, sort_keys=True))


if __name__ == "__main__":
    main()
