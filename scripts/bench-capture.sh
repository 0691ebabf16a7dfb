#!/usr/bin/env bash
# Benchmark of `tcplab capture` (not a test). Writes a Markdown section for
# BENCHMARKS.md to stdout (and to $1 if given).
#
#  1. Reading a 1,000,000-packet pcap to /dev/null in the default view, against
#     `tcpdump -r FILE -nn` when tcpdump is installed (best of 3 runs each).
#  2. A live capture on lo of 1,000,000 packets from a bounded loopback generator
#     (python3, UDP, exactly 1,000,000 datagrams) into a pcapng: kernel drops reported.
#
# Needs root for part 2, python3; tcpdump is optional (the comparison is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-}
WORK=$(mktemp -d /tmp/tcplab-bench-capture.XXXXXX)
CAP_PID=""
cleanup() {
    [ -n "$CAP_PID" ] && kill "$CAP_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q
LOAD_BEFORE=$(cut -d" " -f1 /proc/loadavg)
BIN=target/release/tcplab
N=1000000
python3 scripts/bench/make-1m.py crates/tcplab-core/tests/fixtures/handshake.pcap "$WORK/1m.pcap" "$N"

best() { # best wall time in seconds of 3 runs of "$@"
    local b=""
    for _ in 1 2 3; do
        local s e t
        s=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        e=$(date +%s.%N)
        t=$(awk "BEGIN{print $e - $s}")
        if [ -z "$b" ] || awk "BEGIN{exit !($t < $b)}"; then b=$t; fi
    done
    printf '%.2f' "$b"
}

ours=$(best "$BIN" capture -r "$WORK/1m.pcap")
if command -v tcpdump >/dev/null; then
    theirs=$(best tcpdump -r "$WORK/1m.pcap" -nn)
    ratio=$(awk "BEGIN{printf \"%.1f\", $theirs / $ours}")
    # tcpdump decodes some payloads by port number (e.g. BEEP on 10288); tcplab does not.
    ndiff=$(diff <("$BIN" capture -r "$WORK/1m.pcap") <(tcpdump -r "$WORK/1m.pcap" -nn 2>/dev/null) | grep -c '^<' || true)
    same="identical except ${ndiff} lines where tcpdump decodes an application protocol by port"
    read_row="| \`tcpdump -r FILE -nn > /dev/null\` | ${theirs} s | |
| \`tcplab capture -r FILE > /dev/null\` | ${ours} s | ${ratio}x faster; output ${same} |"
else
    read_row="| \`tcplab capture -r FILE > /dev/null\` | ${ours} s | tcpdump not installed: no comparison |"
fi

# Live: capture exactly N packets of a bounded UDP generator on lo.
PORT=61999
# --duration bounds the run when the kernel drops packets (then -c N is never reached).
"$BIN" capture -i lo -w "$WORK/live.pcapng" -c "$N" --duration 120 udp port "$PORT" 2>"$WORK/live.err" &
CAP_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/live.err" && break; sleep 0.05; done
start=$(date +%s.%N)
python3 - "$PORT" "$N" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", port))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("127.0.0.1", port))
m = b"x" * 32
for _ in range(n):
    s.send(m)
PY
wait "$CAP_PID"
CAP_PID=""
end=$(date +%s.%N)
captured=$(awk '/packets captured/ {print $1}' "$WORK/live.err")
dropped=$(awk '/dropped by kernel/ {print $1}' "$WORK/live.err")
size=$(stat -c %s "$WORK/live.pcapng")
readback=$("$BIN" capture -r "$WORK/live.pcapng" | wc -l)

section="## Capture: reading 1,000,000 packets, and capturing them live

Measured $(date -u "+%Y-%m-%d %H:%M UTC") (load ${LOAD_BEFORE} before) on $(nproc) cores, kernel $(uname -r), by \`scripts/bench-capture.sh\`.

Reading a ${N}-packet pcap (the handshake fixture repeated over many connections, $(du -m "$WORK/1m.pcap" | cut -f1) MB), default view, best of 3:

| command | time | |
|---|---|---|
${read_row}

Live capture on \`lo\` of ${N} UDP datagrams sent by a bounded generator, written as pcapng:

| packets captured | kernel drops | file | read back | wall time |
|---|---|---|---|---|
| ${captured} | ${dropped} | $((size / 1000000)) MB | ${readback} packets | $(awk "BEGIN{printf \"%.1f\", $end - $start}") s |
"
echo "$section"
if [ -n "$OUT" ]; then echo "$section" >"$OUT"; fi
