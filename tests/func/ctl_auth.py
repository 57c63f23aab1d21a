#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A second, independent implementation of the control channel's
authentication (docs/PROTOCOL.md, "Authentication"), for tests/func/hub_auth.sh.

  ctl_auth.py client HOST:PORT [--identity ID --key HEX] [--corrupt-proof]
                     [--hello AGENT] [--report VOLUME SIZE] [--status]
      [--send TYPE HEXPAYLOAD] [--auth-start-again]
      Authenticates (unless no --identity; prints "AUTH_CHALLENGE" when the
      hub sent one), then sends the requests in the order given and prints
      one line per answer: "AUTH_OK role=N hub-proof=good|BAD", "HELLO_OK",
      "VOLUME_OK", "STATUS_OK", or "ERROR <errno-name> <reason>"; "CLOSED"
      when the hub closed the connection.
      Exit 0 when every exchange completed (answers may be errors).
  ctl_auth.py fake-hub PORT --key HEX --log FILE
      An impostor hub: answers AUTH_START with a challenge and AUTH_PROOF
      with AUTH_OK carrying a wrong MAC, then logs every message type the
      client sends afterwards to FILE ("after-auth TYPE"). Serves clients
      until killed.
"""
import errno
import hashlib
import hmac
import os
import socket
import struct
import sys

MAGIC, VERSION, HDR = 0x54434652, 1, 24
T = dict(ERROR=1, HELLO=2, HELLO_OK=3, VOLUME_REPORT=4, VOLUME_OK=5, STATUS=9, STATUS_OK=10,
         AUTH_START=64, AUTH_CHALLENGE=65, AUTH_PROOF=66, AUTH_OK=67)
NAMES = {v: k for k, v in T.items()}


def send(s, typ, req, payload=b""):
    s.sendall(struct.pack("<IHHQII", MAGIC, VERSION, typ, req, len(payload), 0) + payload)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError("connection closed")
        b += chunk
    return b


def recv(s):
    magic, ver, typ, req, n, rsv = struct.unpack("<IHHQII", recv_exact(s, HDR))
    if magic != MAGIC or ver != VERSION or rsv:
        raise ValueError("bad header")
    return typ, req, recv_exact(s, n)


def string(v):
    b = v.encode()
    return struct.pack("<H", len(b)) + b


def mac(key, hub_side, ident, nc, nh, role=None):
    """The client's MAC, or (hub_side) the hub's, which also covers the role."""
    label = b"repfabric-auth-v1 hub" if hub_side else b"repfabric-auth-v1 client"
    tail = bytes([role]) if hub_side else b""
    return hmac.new(key, label + b"\0" + ident.encode() + b"\0" + nc + nh + tail,
                    hashlib.sha256).digest()


def describe(typ, pl):
    if typ == T["ERROR"]:
        code = struct.unpack_from("<i", pl)[0]
        n = struct.unpack_from("<H", pl, 4)[0]
        return "ERROR %s %s" % (errno.errorcode.get(code, code), pl[6:6 + n].decode())
    return NAMES.get(typ, "type-%d" % typ)


def client(argv):
    hostport = argv.pop(0)
    host, port = hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    req = 0
    ident = key = None
    corrupt = False
    ops = []
    while argv:
        a = argv.pop(0)
        if a == "--identity":
            ident = argv.pop(0)
        elif a == "--key":
            key = bytes.fromhex(argv.pop(0))
        elif a == "--corrupt-proof":
            corrupt = True
        elif a == "--hello":
            ops.append(("hello", argv.pop(0)))
        elif a == "--report":
            ops.append(("report", argv.pop(0), int(argv.pop(0))))
        elif a == "--status":
            ops.append(("status",))
        elif a == "--send":
            ops.append(("send", int(argv.pop(0)), bytes.fromhex(argv.pop(0))))
        elif a == "--auth-start-again":
            ops.append(("send", T["AUTH_START"], struct.pack("<H", 1) + string("x") + bytes(32)))
        else:
            sys.exit("unknown argument " + a)
    try:
        if ident:
            nc = os.urandom(32)
            req += 1
            send(s, T["AUTH_START"], req, struct.pack("<H", 1) + string(ident) + nc)
            typ, _, pl = recv(s)
            if typ != T["AUTH_CHALLENGE"]:
                print(describe(typ, pl))
                return 0
            nh = pl
            print("AUTH_CHALLENGE")
            proof = mac(key, False, ident, nc, nh)
            if corrupt:
                proof = bytes([proof[0] ^ 1]) + proof[1:]
            req += 1
            send(s, T["AUTH_PROOF"], req, proof)
            typ, _, pl = recv(s)
            if typ != T["AUTH_OK"]:
                print(describe(typ, pl))
                return 0
            ok = hmac.compare_digest(pl[1:], mac(key, True, ident, nc, nh, pl[0]))
            print("AUTH_OK role=%d hub-proof=%s" % (pl[0], "good" if ok else "BAD"))
        for op in ops:
            req += 1
            if op[0] == "hello":
                send(s, T["HELLO"], req, struct.pack("<H", 1) + string(op[1]))
            elif op[0] == "report":
                send(s, T["VOLUME_REPORT"], req,
                     struct.pack("<IQB", 1, op[2], 0) + string(op[1]))
            elif op[0] == "send":
                send(s, op[1], req, op[2])
            else:
                send(s, T["STATUS"], req)
            while True:
                typ, rid, pl = recv(s)
                if rid == req:
                    break
            print(describe(typ, pl))
    except (EOFError, ConnectionError) as e:
        print("CLOSED", e)
    return 0


def fake_hub(argv):
    port = int(argv.pop(0))
    key = log = None
    while argv:
        a = argv.pop(0)
        if a == "--key":
            key = bytes.fromhex(argv.pop(0))
        elif a == "--log":
            log = argv.pop(0)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)
    while True:
        s, _ = ls.accept()
        s.settimeout(30)
        try:
            nc = ident = nh = None
            while True:
                typ, req, pl = recv(s)
                with open(log, "a") as f:
                    if typ == T["AUTH_START"]:
                        n = struct.unpack_from("<H", pl, 2)[0]
                        ident = pl[4:4 + n].decode()
                        nc = pl[4 + n:]
                        nh = os.urandom(32)
                        f.write("auth-start %s\n" % ident)
                        send(s, T["AUTH_CHALLENGE"], req, nh)
                    elif typ == T["AUTH_PROOF"]:
                        good = hmac.compare_digest(pl, mac(key, False, ident, nc, nh))
                        f.write("auth-proof %s\n" % ("good" if good else "bad"))
                        wrong = mac(b"not the key of this agent", True, ident, nc, nh, 1)
                        send(s, T["AUTH_OK"], req, bytes([1]) + wrong)
                    else:
                        f.write("after-auth %s\n" % NAMES.get(typ, typ))
        except (EOFError, ConnectionError, socket.timeout, ValueError):
            pass
        s.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    sys.exit(client(sys.argv[2:]) if mode == "client" else fake_hub(sys.argv[2:]))
