#!/usr/bin/env bash
# Soak test: echoloop under steady loadgen traffic plus a churn client
# (connect, a few verified echoes, close), in echo and framed modes at once,
# for SECS seconds (default 600). Fails (exit 1) on:
#   - any corrupted, missing or reordered byte (loadgen's or churn's verdict),
#   - server RSS growing after warm-up (more than 8 MiB or 10% above its
#     size at the end of warm-up, whichever is larger),
#   - active connections not back to 0 once the clients are gone,
#   - the server not exiting 0 on SIGTERM.
# Prints a summary per mode (messages, rate, p99, churned connections, RSS,
# longest turn). CI runs it for 60 seconds after the tests.
#
#   scripts/soak.sh [SECS]
#
# Builds what it needs (release): the server, loadgen and the churn client.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 20 ]; then
    echo "usage: scripts/soak.sh [SECS >= 20]" >&2
    exit 2
fi
warmup=$((secs / 10 > 10 ? secs / 10 : 10))
rate=${SOAK_RATE:-20000}

cargo build --release --locked -q --bin echoloop -p echoloop
cargo build --release --locked -q -p loadgen --bin loadgen --example churn
R=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Starts one mode: server, loadgen and churn. Sets server_<mode> etc.
start_mode() {
    local mode=$1 flags=()
    [ "$mode" = framed ] && flags=(--framed)
    "$R/echoloop" --listen 127.0.0.1:0 --no-udp --mode "$mode" --stats-interval 1 \
        >"$work/$mode.addr" 2>"$work/$mode.server" &
    local server=$!
    pids+=("$server")
    local addr=
    for _ in $(seq 100); do
        addr=$(grep -o 'tcp=[^ ]*' "$work/$mode.addr" | cut -d= -f2 || true)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "soak: $mode server did not start" >&2; cat "$work/$mode.server" >&2; exit 1; }
    "$R/loadgen" --target "$addr" --connections 50 --rate "$rate" --duration "${secs}s" \
        --warmup 2s --quiet "${flags[@]}" >"$work/$mode.loadgen" 2>"$work/$mode.loadgen.err" &
    local lg=$!
    "$R/examples/churn" "$addr" --duration "$secs" "${flags[@]}" \
        >"$work/$mode.churn" 2>&1 &
    local ch=$!
    pids+=("$lg" "$ch")
    eval "server_$mode=$server loadgen_$mode=$lg churn_$mode=$ch"
}

fail() {
    echo "soak FAILED: $*" >&2
    exit 1
}

start_mode echo
start_mode framed
echo "soak: echo and framed for ${secs}s (warm-up ${warmup}s, loadgen ${rate} msg/s and churn each)"

sleep "$warmup"
declare -A warm peak
for mode in echo framed; do
    s=server_$mode
    warm[$mode]=$(rss_kib "${!s}")
    peak[$mode]=${warm[$mode]}
done
while kill -0 "$loadgen_echo" 2>/dev/null || kill -0 "$loadgen_framed" 2>/dev/null; do
    for mode in echo framed; do
        s=server_$mode
        r=$(rss_kib "${!s}")
        [ "$r" -gt "${peak[$mode]}" ] && peak[$mode]=$r
    done
    sleep 1
done

status=0
for mode in echo framed; do
    s=server_$mode l=loadgen_$mode c=churn_$mode
    wait "${!l}" || { status=1; echo "soak: $mode loadgen failed:" >&2; cat "$work/$mode.loadgen" "$work/$mode.loadgen.err" >&2; }
    wait "${!c}" || { status=1; echo "soak: $mode churn failed:" >&2; cat "$work/$mode.churn" >&2; }
done
[ "$status" = 0 ] || fail "a client saw an error"

for mode in echo framed; do
    s=server_$mode
    # Every client is gone: the next stats lines must say active=0.
    ok=
    for _ in $(seq 50); do
        if grep 'stats ' "$work/$mode.server" | tail -n 1 | grep -q ' active=0 '; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || fail "$mode: active connections not back to 0: $(grep 'stats ' "$work/$mode.server" | tail -n 1)"
    allowed=$(( warm[$mode] / 10 > 8192 ? warm[$mode] / 10 : 8192 ))
    growth=$(( peak[$mode] - warm[$mode] ))
    end=$(rss_kib "${!s}")
    kill -TERM "${!s}"
    wait "${!s}" || fail "$mode: server exited non-zero"
    stopped=$(grep 'stopped:' "$work/$mode.server" | tail -n 1)
    echo "soak $mode: loadgen"
    grep -E '^  (messages|latency|  |errors|result)' "$work/$mode.loadgen" | sed 's/^/    /'

    echo "soak $mode: $(cat "$work/$mode.churn")"
    echo "soak $mode: rss warm=${warm[$mode]}KiB peak=${peak[$mode]}KiB end=${end}KiB growth=${growth}KiB (allowed ${allowed}KiB)"
    echo "soak $mode: server $(grep -o 'accepted=[0-9]*\|max_turn_us=[0-9]*\|resets=[0-9]*' <<<"$stopped" | tr '\n' ' ')"
    [ "$growth" -le "$allowed" ] || fail "$mode: RSS grew ${growth} KiB after warm-up"
done
echo "soak: PASS"
