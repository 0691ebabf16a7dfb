#!/usr/bin/env python3
"""Load for the `tcplab watch` overhead benchmark (scripts/bench-watch.sh).

  watch-load.py rt HOST PORT CONNS SECS   round trips/s over CONNS connections
  watch-load.py cps HOST PORT SECS        connection cycles/s (connect, banner, close)

Talks to `tcplab serve`: reads the banner, then sends "x" lines and reads the
"You said 'x'." replies. Prints one number. A stand-in until `tcplab bench` can be used.
"""
import selectors
import socket
import sys
import time

BANNER_END = b"type 'shutdown'.\n"
REPLY = b"You said 'x'.\n"


def connect(host, port):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while not buf.endswith(BANNER_END):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("server closed during the banner")
        buf += chunk
    return s


def rt(host, port, conns, secs):
    sel = selectors.DefaultSelector()
    socks = [connect(host, port) for _ in range(conns)]
    pending = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        s.send(b"x\n")
        pending[s] = b""
    done = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            pending[s] += s.recv(4096)
            while len(pending[s]) >= len(REPLY):
                pending[s] = pending[s][len(REPLY):]
                done += 1
                s.send(b"x\n")
    print(f"{done / secs:.0f}")


def cps(host, port, secs):
    done = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s = connect(host, port)
        s.close()
        done += 1
    print(f"{done / secs:.0f}")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "rt":
        rt(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif mode == "cps":
        cps(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
