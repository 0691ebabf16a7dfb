#!/usr/bin/env bash
# Regenerates the capture fixtures in crates/tcplab-core/tests/fixtures and the
# expectations the tests compare against (tshark fields, tcpdump text).
#
# Needs root, python3, tcpdump, tshark (dumpcap, editcap), nftables and ethtool (to
# turn segmentation offloads off on the veth pair of sack-loss.pcap). These are
# needed ONLY to produce fixtures; the tests read the committed files and need none:
#   apt-get update && apt-get install -y tshark tcpdump nftables ethtool
#
# Usage: make-fixtures.sh                      every capture, then every expectation
#        make-fixtures.sh --expectations-only  keep the captures, redo the expectations
#        make-fixtures.sh --only NAME          one capture (NAME = file name without
#                                              extension, e.g. sack-loss) and its
#                                              expectations; the other files are untouched
# Traffic stays on loopback and in network namespaces created (and removed) here,
# with addresses from 192.0.2.0/24.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=crates/tcplab-core/tests/fixtures
TRAFFIC=scripts/fixtures/traffic.py
mkdir -p "$OUT"
export TZ=UTC
NS_A=tcplab-fx-a-$$
NS_B=tcplab-fx-b-$$
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}
trap cleanup EXIT

# capture FILE ARGS... -- starts tcpdump (or dumpcap for .pcapng) in the background
# and waits until it is listening.
start_capture() {
    local file=$1; shift
    local log; log=$(mktemp)
    if [[ $file == *.pcapng ]]; then
        "$@" -w "$file" 2>"$log" &
    else
        "$@" -U --immediate-mode -w "$file" 2>"$log" &
    fi
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for _ in $(seq 100); do
        grep -q -i "listening on\|capturing on" "$log" && break
        sleep 0.05
    done
    rm -f "$log"
}

stop_capture() {
    sleep 0.5
    kill -INT "$CAP_PID"
    wait "$CAP_PID" || true
}

MODE=all
ONLY=
case "${1:-}" in
    "") ;;
    --expectations-only) MODE=none ;;
    --only)
        MODE=one
        ONLY=${2:?--only needs a fixture name, e.g. sack-loss}
        [ -e "$OUT/$ONLY.pcap" ] || [ -e "$OUT/$ONLY.pcapng" ] || {
            echo "make-fixtures.sh: no fixture $OUT/$ONLY.pcap(ng)" >&2
            exit 2
        }
        ;;
    *) echo "usage: make-fixtures.sh [--expectations-only | --only NAME]" >&2; exit 2 ;;
esac

# want NAME: whether this run (re)captures the fixture NAME.
want() {
    [ "$MODE" = all ] || { [ "$MODE" = one ] && [ "$ONLY" = "$1" ]; }
}

if want handshake; then
echo "handshake (IPv4, tcpdump pcap)"
start_capture "$OUT/handshake.pcap" tcpdump -i lo -nn "tcp port 61001"
python3 "$TRAFFIC" handshake 127.0.0.1 61001
stop_capture
fi

if want handshake6; then
echo "handshake6 (IPv6, dumpcap pcapng)"
start_capture "$OUT/handshake6.pcapng" dumpcap -q -i lo -f "tcp port 61002"
python3 "$TRAFFIC" handshake ::1 61002
stop_capture
fi

if want rst; then
echo "rst"
start_capture "$OUT/rst.pcap" tcpdump -i lo -nn "tcp portrange 61003-61004"
python3 "$TRAFFIC" rst 127.0.0.1 61003
stop_capture
fi

if want truncated; then
echo "snaplen-truncated (-s 70)"
start_capture "$OUT/truncated.pcap" tcpdump -i lo -nn -s 70 "tcp port 61005"
python3 "$TRAFFIC" handshake 127.0.0.1 61005
stop_capture
fi

if want any-sll2; then
echo "any (Linux cooked v2)"
start_capture "$OUT/any-sll2.pcap" tcpdump -i any -nn "tcp port 61006"
python3 "$TRAFFIC" handshake 127.0.0.1 61006
stop_capture
fi
if want any-sll; then
echo "any (Linux cooked v1)"
start_capture "$OUT/any-sll.pcap" tcpdump -i any -y LINUX_SLL -nn "tcp port 61007"
python3 "$TRAFFIC" handshake 127.0.0.1 61007
stop_capture
fi

if want mid-connection; then
echo "mid-connection (handshake.pcap from its 4th packet on)"
editcap -F pcap -r "$OUT/handshake.pcap" "$OUT/mid-connection.pcap" 4-1000
fi

if want sack-loss || want tfo; then
echo "namespaces: SACK with loss, TFO"
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add tcplabfxa netns "$NS_A" type veth peer name tcplabfxb netns "$NS_B"
ip -n "$NS_A" addr add 192.0.2.1/24 dev tcplabfxa
ip -n "$NS_B" addr add 192.0.2.2/24 dev tcplabfxb
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
ip -n "$NS_A" link set tcplabfxa up
ip -n "$NS_B" link set tcplabfxb up
fi

if want sack-loss; then
echo "sack-loss: nft drops the 11th, 31st, ... data segment at the receiver"
# Without this the veth pair carries 64 KB TSO/GSO super-packets (and GRO merges
# what is left): a few huge "segments", none of them dropped alone.
ip netns exec "$NS_A" ethtool -K tcplabfxa tso off gso off gro off
ip netns exec "$NS_B" ethtool -K tcplabfxb tso off gso off gro off
# Small segments make many packets; loss at B's input happens after the tap saw them.
ip -n "$NS_A" link set tcplabfxa mtu 1400
# A counter, not chance: `numgen inc` counts only the packets that reach it (data
# segments, not SYN, FIN or pure ACKs), so the same segments are lost every run.
# The first flight is 10 segments (initial cwnd): the 11th is lost in slow start
# with a window of segments behind it, each answered by a duplicate ACK with SACK.
ip netns exec "$NS_B" nft -f - <<'NFT'
table inet loss {
    chain input {
        type filter hook input priority 0;
        tcp dport 61010 tcp flags & (syn | fin) == 0 ip length > 100 numgen inc mod 20 == 10 drop
    }
}
NFT
start_capture "$OUT/sack-loss.pcap" ip netns exec "$NS_B" tcpdump -i tcplabfxb -nn -s 128 "tcp port 61010"
ip netns exec "$NS_B" python3 - <<'PY' &
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.2", 61010)); s.listen(1); c, _ = s.accept()
while c.recv(65536): pass
c.close()
PY
SINK=$!
sleep 0.3
ip netns exec "$NS_A" python3 -c '
import socket
c = socket.create_connection(("192.0.2.2", 61010))
c.sendall(bytes(range(256)) * 200)
c.close()'
wait "$SINK"
stop_capture
# The fixture exists to show SACK with loss: prove it has both, or fail.
sacks=$(tshark -r "$OUT/sack-loss.pcap" -n -Y tcp.options.sack_le | wc -l)
retrans=$(tshark -r "$OUT/sack-loss.pcap" -n -Y tcp.analysis.retransmission | wc -l)
if [ "$sacks" -lt 1 ] || [ "$retrans" -lt 1 ]; then
    echo "make-fixtures.sh: sack-loss.pcap has $sacks packets with SACK blocks and" \
        "$retrans retransmissions; it needs at least one of each" >&2
    exit 1
fi
echo "sack-loss: $sacks packets with SACK blocks, $retrans retransmissions"
fi

if want tfo; then
ip netns exec "$NS_A" sysctl -qw net.ipv4.tcp_fastopen=3
start_capture "$OUT/tfo.pcap" ip netns exec "$NS_A" tcpdump -i lo -nn "tcp port 61011"
ip netns exec "$NS_A" python3 "$TRAFFIC" tfo 127.0.0.1 61011
stop_capture

fi

if want crafted; then
echo "crafted frames"
python3 scripts/fixtures/craft.py "$OUT/crafted.pcap"
fi

if want crafted6; then
echo "crafted IPv6 extension headers"
python3 scripts/fixtures/craft6.py "$OUT/crafted6.pcap"
fi

echo "expectations"
FIELDS=(frame.number frame.len frame.cap_len ip.src ipv6.src tcp.srcport tcp.dstport
    tcp.flags tcp.seq tcp.seq_raw tcp.ack tcp.ack_raw tcp.len tcp.window_size_value
    tcp.option_kind tcp.options.mss_val tcp.options.wscale.shift tcp.options.sack_le
    tcp.options.sack_re tcp.options.timestamp.tsval tcp.options.timestamp.tsecr
    tcp.options.tfo.cookie)
args=()
for f in "${FIELDS[@]}"; do args+=(-e "$f"); done
for f in "$OUT"/*.pcap "$OUT"/*.pcapng; do
    base=${f%.*}
    if [ "$MODE" = one ] && [ "${base##*/}" != "$ONLY" ]; then continue; fi
    {
        (IFS=$'\t'; echo "${FIELDS[*]}")
        tshark -r "$f" -n -o tcp.analyze_sequence_numbers:TRUE -o tcp.relative_sequence_numbers:TRUE \
            -T fields -E separator=/t -E occurrence=a -E aggregator=, "${args[@]}"
    } >"$base.tshark.tsv"
    tcpdump -nn -r "$f" 2>/dev/null >"$base.tcpdump.txt"
    tcpdump -nn -v -r "$f" 2>/dev/null >"$base.tcpdump-v.txt"
    tcpdump -nn -S -r "$f" 2>/dev/null >"$base.tcpdump-S.txt"
    for v in A X XX; do
        tcpdump -nn "-$v" -r "$f" 2>/dev/null >"$base.tcpdump-$v.txt"
    done
done
ls -l "$OUT"
