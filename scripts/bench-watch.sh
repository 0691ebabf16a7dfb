#!/usr/bin/env bash
# Overhead of `tcplab watch` on the traffic it watches (run as root, release build).
#
# For each load, RUNS pairs of runs without and with `tcplab watch --port P` watching
# the server's port; prints the medians and the median of the pairs' overheads. Loads:
#   rt:  echo round trips/s over 100 connections (state changes are rare: the cost is
#        the tracepoint hooks and the sock_diag polls)
#   cps: connection cycles/s, one at a time (every cycle is ~10 state changes plus a
#        TIME_WAIT socket: the watcher's worst case)
# The load is `tcplab bench` (rt over 100 connections; conn mode with 1 worker).
# Then churn: `tcplab bench --mode conn --conns 50` for CHURN_SECS (10) under a watcher
# with --summary: the events it lost (must be 0) and how far behind it was at the end
# (seconds from SIGINT to exit, spent reading what the ring still held).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tcplab}
RUNS=${RUNS:-5}
SECS=${SECS:-3}
CHURN_SECS=${CHURN_SECS:-10}
[ -x "$BIN" ] || cargo build --release -p tcplab >/dev/null

out=$(mktemp -d)
cleanup() {
    [ -n "${WATCH_PID:-}" ] && kill -INT "$WATCH_PID" 2>/dev/null || true
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

"$BIN" serve --listen 127.0.0.1:0 --quiet >"$out/serve" &
SERVE_PID=$!
until grep -q '^listening on' "$out/serve" 2>/dev/null; do sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out/serve")
port=${addr##*:}

# CPU time (utime + stime, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_load() { # mode -> operations per second
    case $1 in
        rt) args=(--mode rt --conns 100) ;;
        cps) args=(--mode conn --conns 1) ;;
    esac
    "$BIN" bench "127.0.0.1:$port" "${args[@]}" --duration "$SECS" --warmup 0.5 --json |
        python3 -c 'import json,sys; print(int(json.load(sys.stdin)["ops_per_sec"]))'
}

# One loaded run under a watcher: appends its ops/s to $out/with and the watcher's CPU
# (% of one core over the run) to $out/cpu.
run_watched() {
    "$BIN" watch --port "$port" >/dev/null 2>"$out/watch.err" &
    WATCH_PID=$!
    until grep -q armed "$out/watch.err" 2>/dev/null; do sleep 0.05; done
    t0=$(date +%s.%N); c0=$(cpu_ticks "$WATCH_PID")
    run_load "$1" >>"$out/with"
    c1=$(cpu_ticks "$WATCH_PID"); t1=$(date +%s.%N)
    awk -v c="$((c1 - c0))" -v hz="$TICK" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "%.1f\n", c * 100 / hz / (b - a) }' >>"$out/cpu"
    kill -INT "$WATCH_PID"; wait "$WATCH_PID" || true; WATCH_PID=
    if grep -q -i lost "$out/watch.err"; then echo "watch reported loss:"; cat "$out/watch.err"; fi
}

# Paired runs: each pair is one run without and one with a watcher, back to back, in
# alternating order (ABBA), so that the machine's drift (this VM's throughput moves by
# 20% over minutes) falls on both sides. The verdict is the median of the pairs'
# overheads, with the range of the middle half of them.
for mode in rt cps; do
    : >"$out/without"; : >"$out/with"; : >"$out/cpu"
    for i in $(seq "$RUNS"); do
        if [ $((i % 2)) -eq 1 ]; then
            run_load "$mode" >>"$out/without"; run_watched "$mode"
        else
            run_watched "$mode"; run_load "$mode" >>"$out/without"
        fi
    done
    paste "$out/without" "$out/with" | awk -v m="$mode" -v r="$RUNS" -v c="$(median <"$out/cpu")" '
        { a[NR] = $1; b[NR] = $2; o[NR] = ($1 - $2) * 100 / $1 }
        function med(x, n,   i, j, t, y) {
            for (i = 1; i <= n; i++) y[i] = x[i]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (y[j] < y[i]) { t = y[i]; y[i] = y[j]; y[j] = t }
            return y[int((n + 1) / 2)]
        }
        function q(x, n, f,   i, j, t, y) {
            for (i = 1; i <= n; i++) y[i] = x[i]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (y[j] < y[i]) { t = y[i]; y[i] = y[j]; y[j] = t }
            return y[int(f * (n - 1)) + 1]
        }
        END {
            printf "%-4s without watch %8d/s   with watch %8d/s   overhead %5.1f%% (middle half of pairs %.1f%% to %.1f%%)   watcher CPU %4.1f%% of a core   (%d pairs)\n",
                m, med(a, NR), med(b, NR), med(o, NR), q(o, NR, 0.25), q(o, NR, 0.75), c, r
        }'
done

"$BIN" watch --port "$port" --summary --json >"$out/churn.json" 2>"$out/watch.err" &
WATCH_PID=$!
until grep -q armed "$out/watch.err" 2>/dev/null; do sleep 0.05; done
# A few connects time out under this load (bench then exits 1): the count is still valid.
conns=$({ "$BIN" bench "127.0.0.1:$port" --mode conn --conns 50 --duration "$CHURN_SECS" \
    --json 2>/dev/null || true; } | python3 -c 'import json,sys; print(json.load(sys.stdin)["ops"])')
t0=$(date +%s.%N)
kill -INT "$WATCH_PID"; wait "$WATCH_PID" || true; WATCH_PID=
t1=$(date +%s.%N)
tail -n 1 "$out/churn.json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
conns, secs, lag = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) - float(sys.argv[4])
print("churn %d connections in %gs (%d/s): watch saw %d SYN_SENT, lost %d events, %.1fs behind at the end"
      % (conns, secs, conns / secs, s["entered"].get("SYN_SENT", 0), s["lost"], lag))
' "$conns" "$CHURN_SECS" "$t1" "$t0"
