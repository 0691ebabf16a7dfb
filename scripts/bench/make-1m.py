#!/usr/bin/env python3
"""Writes a pcap of N packets (default 1,000,000) made of the handshake fixture's 11
packets repeated over distinct connections (client port and address vary), so the
reader meets many flows as on a busy server. Usage: make-1m.py FIXTURE OUT [N]"""
import struct
import sys

src, out = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
data = open(src, "rb").read()
assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
recs = []
off = 24
while off < len(data):
    sec, usec, cap, orig = struct.unpack("<IIII", data[off:off + 16])
    recs.append((sec * 1_000_000 + usec, orig, bytearray(data[off + 16:off + 16 + cap])))
    off += 16 + cap
t0 = recs[0][0]
client = struct.unpack("!H", recs[0][2][34:36])[0]
with open(out, "wb") as f:
    f.write(data[:24])
    written = 0
    conn = 0
    while written < n:
        port = 10000 + conn % 50000
        host = 2 + conn // 50000
        base = t0 + conn * 1000
        for ts, orig, frame in recs:
            if written == n:
                break
            fr = bytearray(frame)
            sport = struct.unpack("!H", fr[34:36])[0]
            if sport == client:
                fr[34:36] = struct.pack("!H", port)
                fr[29] = host  # source address 127.0.0.host
            else:
                fr[36:38] = struct.pack("!H", port)
                fr[33] = host
            t = base + (ts - t0)
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(fr), orig))
            f.write(fr)
            written += 1
        conn += 1
