#!/usr/bin/env bash
# Benchmarks `tcplab serve` against the two classic designs it must beat, under identical
# load from `tcplab bench`, and writes the "Echo server" section of BENCHMARKS.md.
#
#   scripts/bench.sh                 # the full run (about 6 minutes)
#   RUNS=1 DURATION=1 scripts/bench.sh   # a quick look (numbers are not worth keeping)
#
# Environment: RUNS (3) runs per cell, DURATION (3) seconds per run, WARMUP (0.5) seconds
# of unmeasured load before each run, IDLE_CONNS (10000), OUT (BENCHMARKS.md); for quick
# looks only: CELLS (e.g. "rt 1;conn 1"), SERVERS (e.g. "tcplab blocking").
#
# Every measurement gets a fresh server; runs are interleaved (run 1 of every server and
# cell, then run 2, ...) so that a burst of noise from elsewhere on the machine hits every
# server alike. Figures are medians of the runs; ratios compare medians of one script run.
# Raw JSON of every run is kept in target/bench/raw.jsonl.
#
# Sections of BENCHMARKS.md between other markers (capture read speed, watch overhead)
# belong to other scripts and are kept as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
IDLE_CONNS=${IDLE_CONNS:-10000}
OUT=${OUT:-BENCHMARKS.md}
COMMAND="scripts/bench.sh${*:+ $*}"
[[ -n ${CELLS:-}${SERVERS:-} ]] && COMMAND="CELLS='${CELLS:-}' SERVERS='${SERVERS:-}' $COMMAND"
[[ $RUNS != 3 || $DURATION != 3 || $WARMUP != 0.5 || $IDLE_CONNS != 10000 ]] &&
    COMMAND="RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP IDLE_CONNS=$IDLE_CONNS $COMMAND"

echo "building (release)..." >&2
cargo build --release --quiet -p tcplab -p baselines
BIN=target/release
WORK=target/bench
mkdir -p "$WORK"
RAW=$WORK/raw.jsonl
: >"$RAW"

# 10,000 idle connections need 10,000 descriptors in the server and in the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_CONNS + 100)); then
    ulimit -n $((IDLE_CONNS + 1000)) 2>/dev/null || {
        echo "bench.sh: cannot raise the open-file limit to $((IDLE_CONNS + 1000)) (ulimit -Hn is $(ulimit -Hn)): run as root or lower IDLE_CONNS" >&2
        exit 1
    }
fi

# The servers, by short name. tcplab gets a backlog as deep as the baselines' (tokio's
# default is 1024) and room for the idle test; everything else is its default.
read -r -a SERVERS <<<"${SERVERS:-tcplab tcplab-seq blocking tokio}"
declare -A LABEL=(
    [tcplab]="tcplab serve"
    [tcplab-seq]="tcplab serve --sequential"
    [blocking]="baseline-blocking"
    [tokio]="baseline-tokio"
)
declare -A START=(
    [tcplab]="$BIN/tcplab serve --quiet --listen 127.0.0.1:0 --backlog 1024 --max-conns 20000"
    [tcplab-seq]="$BIN/tcplab serve --quiet --sequential --listen 127.0.0.1:0 --backlog 1024"
    [blocking]="$BIN/baseline-blocking --listen 127.0.0.1:0"
    [tokio]="$BIN/baseline-tokio --listen 127.0.0.1:0"
)
# The two baselines and tcplab --sequential serve one client at a time: under several
# connections they serve the first and the rest wait (their figure is that one client's).
declare -A ONE_AT_A_TIME=([tcplab-seq]=1 [blocking]=1)

# Cells: "mode conns". CELLS="rt 1;conn 1" measures a subset (for quick looks).
IFS=';' read -r -a CELLS <<<"${CELLS:-rt 1;rt 10;rt 100;rt 1000;conn 1;conn 50}"

SERVER_PID=
SERVER_ADDR=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

start_server() { # name
    local out=$WORK/server.out
    : >"$out"
    # shellcheck disable=SC2086 # the command line is split on purpose
    ${START[$1]} >"$out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    local deadline=$((SECONDS + 20))
    until grep -q '^listening on ' "$out"; do
        if ((SECONDS > deadline)) || ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench.sh: ${LABEL[$1]} did not start: $(cat "$WORK/server.err")" >&2
            exit 1
        fi
        sleep 0.05
    done
    SERVER_ADDR=$(sed -n 's/^listening on //p' "$out" | head -1)
}

# One JSON figure from a report line: field NAME [SUBFIELD].
field() { # json key
    grep -o "\"$2\":[0-9.eE+-]*" <<<"$1" | head -1 | cut -d: -f2
}

median() { # numbers...
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

# Server CPU time (user + system, all threads) in clock ticks: a figure that a busy
# machine disturbs far less than a rate does.
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A OPS P50 P99 ERRS RSS CPU
for run in $(seq 1 "$RUNS"); do
    for cell in "${CELLS[@]}"; do
        read -r mode conns <<<"$cell"
        for s in "${SERVERS[@]}"; do
            start_server "$s"
            # A generous timeout: clients queued behind a one-at-a-time server wait, they
            # have not failed.
            cpu0=$(cpu_ticks "$SERVER_PID")
            json=$("$BIN/tcplab" bench "$SERVER_ADDR" --mode "$mode" --conns "$conns" \
                --duration "$DURATION" --warmup "$WARMUP" --timeout 30 --json 2>>"$WORK/bench.err" || true)
            cpu1=$(cpu_ticks "$SERVER_PID")
            stop_server
            if [[ -z $json ]]; then
                echo "bench.sh: no report from tcplab bench for $s $cell: $(tail -3 "$WORK/bench.err")" >&2
                exit 1
            fi
            echo "{\"server\":\"$s\",\"run\":$run,\"report\":$json}" >>"$RAW"
            key="$s|$cell"
            OPS[$key]+=" $(field "$json" ops_per_sec)"
            P50[$key]+=" $(field "$json" p50)"
            P99[$key]+=" $(field "$json" p99)"
            ERRS[$key]=$((${ERRS[$key]:-0} + $(field "$json" total)))
            all_ops=$(($(field "$json" ops) + $(field "$json" warmup_ops)))
            CPU[$key]+=" $(awk -v t=$((cpu1 - cpu0)) -v hz="$HZ" -v n="$all_ops" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n }')"
            printf 'run %s  %-7s %-5s %-26s %10.0f/s  errors %s\n' "$run" "$mode" "$conns" "${LABEL[$s]}" \
                "$(field "$json" ops_per_sec)" "$(field "$json" total)" >&2
        done
    done
    for s in tcplab tokio; do
        ((IDLE_CONNS > 0)) || continue
        start_server "$s"
        # Emptied here, not by the redirection below: that one happens in the child, maybe
        # after the first look at the file.
        : >"$WORK/idle.err"
        "$BIN/tcplab" bench "$SERVER_ADDR" --mode idle --conns "$IDLE_CONNS" --duration 1 \
            --timeout 30 --json >"$WORK/idle.json" 2>"$WORK/idle.err" &
        bench_pid=$!
        deadline=$((SECONDS + 120))
        until grep -q 'holding [0-9]* idle connections for' "$WORK/idle.err"; do
            if ((SECONDS > deadline)) || ! kill -0 "$bench_pid" 2>/dev/null; then
                echo "bench.sh: idle run against ${LABEL[$s]} failed: $(cat "$WORK/idle.err")" >&2
                exit 1
            fi
            sleep 0.05
        done
        held=$(sed -n 's/.*holding \([0-9]*\) idle.*/\1/p' "$WORK/idle.err")
        rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
        wait "$bench_pid" || true
        stop_server
        if [[ $held != "$IDLE_CONNS" ]]; then
            echo "bench.sh: ${LABEL[$s]} held only $held of $IDLE_CONNS idle connections" >&2
            exit 1
        fi
        RSS[$s]+=" $rss_kb"
        printf 'run %s  idle    %-5s %-26s %10.1f MiB\n' "$run" "$IDLE_CONNS" "${LABEL[$s]}" \
            "$(awk -v k="$rss_kb" 'BEGIN {print k/1024}')" >&2
    done
done

# ---- the report ----------------------------------------------------------------------

ratio() { # a b
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f×", a/b }'
}
fmt_rate() { awk -v v="$1" 'BEGIN { printf "%.1fk", v/1000 }'; }
fmt_us() { awk -v v="$1" 'BEGIN { printf "%.0f", v/1000 }'; }

table() {
    echo "| load | tcplab serve | tcplab serve --sequential | baseline-blocking | baseline-tokio | tcplab / blocking | tcplab / tokio | --sequential / blocking |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for cell in "${CELLS[@]}"; do
        read -r mode conns <<<"$cell"
        local unit="round trips/s" what="connections"
        [[ $mode == conn ]] && unit="cycles/s" && what="workers"
        local row="| $mode, $conns $what ($unit) |" m
        declare -A med=()
        for s in "${SERVERS[@]}"; do
            # shellcheck disable=SC2086
            m=$(median ${OPS["$s|$cell"]})
            med[$s]=$m
            local mark=""
            ((conns > 1)) && [[ -n ${ONE_AT_A_TIME[$s]:-} ]] && mark=" †"
            ((${ERRS["$s|$cell"]:-0} > 0)) && mark+=" ‡"
            row+=" $(fmt_rate "$m")$mark |"
        done
        row+=" $(ratio "${med[tcplab]:-}" "${med[blocking]:-}") | $(ratio "${med[tcplab]:-}" "${med[tokio]:-}") | $(ratio "${med[tcplab-seq]:-}" "${med[blocking]:-}") |"
        echo "$row"
    done
    # shellcheck disable=SC2086
    local rt=$(median ${RSS[tcplab]}) rk=$(median ${RSS[tokio]})
    local mib_t mib_k
    mib_t=$(awk -v k="$rt" 'BEGIN {printf "%.1f MiB", k/1024}')
    mib_k=$(awk -v k="$rk" 'BEGIN {printf "%.1f MiB", k/1024}')
    echo "| $IDLE_CONNS idle connections (resident memory) | $mib_t | n/a | n/a | $mib_k | n/a | $(ratio "$rt" "$rk") | n/a |"
}

latency_table() {
    echo "| load | tcplab serve | tcplab serve --sequential | baseline-blocking | baseline-tokio |"
    echo "|---|---:|---:|---:|---:|"
    for cell in "${CELLS[@]}"; do
        read -r mode conns <<<"$cell"
        local row="| $mode, $conns |"
        for s in "${SERVERS[@]}"; do
            # shellcheck disable=SC2086
            row+=" $(fmt_us "$(median ${P50["$s|$cell"]})") / $(fmt_us "$(median ${P99["$s|$cell"]})") |"
        done
        echo "$row"
    done
}

cpu_table() {
    echo "| load | tcplab serve | tcplab serve --sequential | baseline-blocking | baseline-tokio |"
    echo "|---|---:|---:|---:|---:|"
    for cell in "${CELLS[@]}"; do
        read -r mode conns <<<"$cell"
        local row="| $mode, $conns |"
        for s in "${SERVERS[@]}"; do
            # shellcheck disable=SC2086
            row+=" $(median ${CPU["$s|$cell"]}) |"
        done
        echo "$row"
    done
}

errors_note() {
    local any=0 key
    for key in "${!ERRS[@]}"; do
        if ((${ERRS[$key]} > 0)); then
            any=1
            echo "- ‡ ${LABEL[${key%%|*}]}, ${key#*|}: ${ERRS[$key]} failed operations over $RUNS runs (see target/bench/raw.jsonl)"
        fi
    done
    ((any)) || echo "- No operation failed in any run (every reply was checked byte for byte)."
}

SECTION=$WORK/section.md
{
    echo "<!-- BEGIN echo-server: written by scripts/bench.sh, do not edit by hand -->"
    echo "## Echo server: tcplab serve against the classic designs"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "- Load average before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Command: \`$COMMAND\` ($RUNS runs per cell, ${DURATION} s each after ${WARMUP} s of warm-up, medians; a fresh server per run)"
    echo "- Load generator: \`tcplab bench\` on the same machine, 16-byte lines; blocking threads up to 64 connections, a current-thread runtime per core above."
    echo
    table
    echo
    echo "† serves one client at a time: the other connections wait in the accept queue, so the figure is that of the one client served."
    echo "Resident memory is VmRSS from /proc/PID/status while the server holds $IDLE_CONNS connections that got their banner and stay idle; one-at-a-time servers cannot hold them (n/a)."
    echo
    echo "Latency, p50 / p99 in µs (median over runs):"
    echo
    latency_table
    echo
    echo "Server CPU time per operation in µs (user + system, all threads, warm-up included; median over runs). Less disturbed by a busy machine than the rates above, it shows the cost of each design:"
    echo
    cpu_table
    echo
    errors_note
    echo "<!-- END echo-server -->"
} >"$SECTION"

# Replace our section, keep everything else; create the file with its skeleton if new.
if [[ ! -f $OUT ]] || ! grep -q '<!-- BEGIN echo-server' "$OUT"; then
    {
        echo "# Benchmarks"
        echo
        echo "Every figure here is written by a script; rerun it to check it. Each section says its"
        echo "machine, date and exact command. Numbers from a busy machine are noisy: compare the"
        echo "ratios within one run, not figures across runs."
        echo
        echo "<!-- BEGIN echo-server -->"
        echo "<!-- END echo-server -->"
        echo
        echo "<!-- BEGIN capture-read: reserved for the capture benchmark script (read speed vs tcpdump) -->"
        echo "## Capture: read speed"
        echo
        echo "Not measured yet."
        echo "<!-- END capture-read -->"
        echo
        echo "<!-- BEGIN watch-overhead: reserved for the watch benchmark script -->"
        echo "## Watch: overhead on the traced workload"
        echo
        echo "Not measured yet."
        echo "<!-- END watch-overhead -->"
    } >"$OUT.new"
    [[ -f $OUT ]] && { echo; cat "$OUT"; } >>"$OUT.new"
    mv "$OUT.new" "$OUT"
fi
awk -v section="$SECTION" '
    /<!-- BEGIN echo-server/ { while ((getline line < section) > 0) print line; skip = 1; next }
    skip && /<!-- END echo-server -->/ { skip = 0; next }
    !skip { print }
' "$OUT" >"$OUT.new"
mv "$OUT.new" "$OUT"
echo "wrote $OUT" >&2
