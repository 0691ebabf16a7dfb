#!/usr/bin/env bash
# Overhead of `tcplab watch` on the traffic it watches (run as root, release build).
#
# Loads (`tcplab bench` against `tcplab serve`):
#   rt:  echo round trips/s over 100 connections (state changes are rare: the cost is
#        the tracepoint hooks and the sock_diag polls)
#   cps: connection cycles/s, one worker (every cycle is ~10 state changes plus a
#        TIME_WAIT socket: the watcher's worst case)
#
# Method: this machine's throughput drifts by 20% and more from run to run (a pure CPU
# loop varies by 10%), far more than the effect measured. So each load is ONE long
# bench run with per-second rates (`--interval 1`), during which `tcplab watch --port P`
# is started and stopped in turn: CYCLES times WINDOW seconds without a watcher, then
# WINDOW seconds with one (timed from its "armed" line). Each second that lies wholly
# inside a window is that window's; seconds that straddle a start or a stop are
# dropped. A cycle's overhead compares its watched window with the mean of the
# unwatched windows on both sides of it, which cancels the drift; the verdict is the
# median over the cycles, with its 95% confidence interval (bootstrap over the cycles)
# and the range of the middle half of them. The watcher's own CPU time is measured over
# its windows. CYCLES (20) and WINDOW (3 s) set the design.
#
# MODES (default "rt cps"; empty: none) chooses the loads; CHURN_SECS=0 skips the churn.
#
# Then churn: `tcplab bench --mode conn --conns 50` for CHURN_SECS (10) under a watcher
# with --summary: the events it lost (must be 0) and how far behind it was at the end
# (seconds from SIGINT to exit, spent reading what the ring still held).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tcplab}
CYCLES=${CYCLES:-20}
WINDOW=${WINDOW:-3}
CHURN_SECS=${CHURN_SECS:-10}
MODES=${MODES-rt cps}
[ -x "$BIN" ] || cargo build --release -p tcplab >/dev/null

out=$(mktemp -d)
cleanup() {
    [ -n "${WATCH_PID:-}" ] && kill -INT "$WATCH_PID" 2>/dev/null || true
    [ -n "${BENCH_PID:-}" ] && kill "$BENCH_PID" 2>/dev/null || true
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

# A backlog for 100 simultaneous connects: with the default (5), some SYNs are dropped
# and their connections join the load seconds late.
"$BIN" serve --listen 127.0.0.1:0 --quiet --backlog 1024 >"$out/serve" &
SERVE_PID=$!
until grep -q '^listening on' "$out/serve" 2>/dev/null; do sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out/serve")
port=${addr##*:}

# CPU time (utime + stime, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
now() { date +%s.%N; }

for mode in $MODES; do
    case $mode in
        rt) args=(--mode rt --conns 100) ;;
        cps) args=(--mode conn --conns 1) ;;
    esac
    total=$((CYCLES * (2 * WINDOW + 3) + WINDOW + 5))
    "$BIN" bench "127.0.0.1:$port" "${args[@]}" --duration "$total" --warmup 2 \
        --interval 1 --json >"$out/bench.json" &
    BENCH_PID=$!
    : >"$out/windows"
    sleep 2
    for _ in $(seq "$CYCLES"); do
        t0=$(now); sleep "$WINDOW"; echo "off $t0 $(now)" >>"$out/windows"
        "$BIN" watch --port "$port" >/dev/null 2>"$out/watch.err" &
        WATCH_PID=$!
        until grep -q armed "$out/watch.err" 2>/dev/null; do sleep 0.05; done
        t0=$(now); c0=$(cpu_ticks "$WATCH_PID")
        sleep "$WINDOW"
        c1=$(cpu_ticks "$WATCH_PID"); t1=$(now)
        echo "on $t0 $t1 $((c1 - c0))" >>"$out/windows"
        kill -INT "$WATCH_PID"; wait "$WATCH_PID" || true; WATCH_PID=
        if grep -q -i lost "$out/watch.err"; then echo "watch reported loss:"; cat "$out/watch.err"; fi
    done
    t0=$(now); sleep "$WINDOW"; echo "off $t0 $(now)" >>"$out/windows"
    wait "$BENCH_PID" || true; BENCH_PID=
    python3 - "$mode" "$out/bench.json" "$out/windows" "$TICK" "$WINDOW" <<'PY'
import json, statistics, sys
mode, bench, windows, hz, window = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
report = json.load(open(bench))
wins = []
for line in open(windows):
    f = line.split()
    wins.append((f[0], float(f[1]), float(f[2]), int(f[3]) if len(f) > 3 else 0, []))
for i in report["intervals"]:
    end = i["end_unix_s"]
    start = end - i["secs"]
    for w in wins:
        if w[1] <= start and end <= w[2]:
            w[4].append(i["ops_per_sec"])
rate = lambda w: statistics.mean(w[4]) if w[4] else None
cycles = []
for k, w in enumerate(wins):
    if w[0] != "on" or k == 0 or k + 1 >= len(wins):
        continue
    before, watched, after = rate(wins[k - 1]), rate(w), rate(wins[k + 1])
    if None in (before, watched, after):
        continue
    base = (before + after) / 2
    cycles.append((base, watched, (base - watched) * 100 / base))
if not cycles:
    sys.exit(f"{mode}: no complete cycle (windows too short?)")
over = sorted(c[2] for c in cycles)
q = lambda f: over[int(f * (len(over) - 1) + 0.5)]
# 95% confidence interval of the median overhead: bootstrap over the cycles (seeded).
import random
rng = random.Random(1)
boot = sorted(statistics.median(rng.choices(over, k=len(over))) for _ in range(4000))
ci = (boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1])
on = [w for w in wins if w[0] == "on"]
cpu = sum(w[3] for w in on) * 100 / hz / sum(w[2] - w[1] for w in on)
errors = report["errors"]["total"]
print("%-4s without watch %8d/s   with watch %8d/s   overhead %5.1f%% (95%% CI %.1f%% to %.1f%%; middle half of cycles %.1f%% to %.1f%%)   watcher CPU %4.1f%% of a core   (%d cycles of %s s without, %s s with%s)"
      % (mode, statistics.median(c[0] for c in cycles), statistics.median(c[1] for c in cycles),
         statistics.median(over), ci[0], ci[1], q(0.25), q(0.75), cpu, len(cycles),
         window, window, f", {errors} bench errors" if errors else ""))
PY
done

[ "$CHURN_SECS" = 0 ] && exit 0
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
