#!/usr/bin/env bash
# A light client's latency on a server busy with bulk echo, against the
# same client on an idle server, in the same run (README "Reliability").
#
#   cargo build --release --workspace --bins
#   scripts/bulk-vs-light.sh [BIN]     # BIN defaults to target/release/echoloop
#
# The busy server gets core 0; 100 loadgen connections push 64 KiB messages
# (4 in flight each) at it from core 1. The idle server (core 1) serves
# only a light client. Two light clients (1 connection, 1000 msg/s open
# loop, 64 B) measure both servers for 10 s at the same time. Servers run
# at nice -20 and the light clients at nice -10, so other users of a shared
# machine disturb them less; the bulk loadgen at nice 10. Prints the light
# clients' latency lines, the busy server's longest turn (max_turn_us) and
# its three longest turns over 10 ms with the work each did.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${CARGO_TARGET_DIR:-target}/release
BIN=${1:-$R/echoloop}
LG=$R/loadgen
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# start CORE NAME: runs a server, sets $addr to its TCP address.
start() {
    RUST_LOG=info,echoloop::reactor::deadlines=debug \
        nice -n -20 taskset -c "$1" "$BIN" --listen 127.0.0.1:0 --no-udp \
        >"$work/$2.out" 2>"$work/$2.err" &
    pids+=($!)
    addr=
    for _ in $(seq 100); do
        addr=$(grep -o 'tcp=[^ ]*' "$work/$2.out" 2>/dev/null | cut -d= -f2 || true)
        [ -n "$addr" ] && return
        sleep 0.05
    done
    echo "server did not start: $(cat "$work/$2.err")" >&2
    exit 1
}
start 0 busy
busy=$addr
busy_pid=${pids[0]}
start 1 idle
idle=$addr
nice -n 10 taskset -c 1 "$LG" --target "$busy" --connections 100 --size 65536 --pipeline 4 \
    --duration 16s --warmup 1s -q >"$work/bulk" 2>&1 &
bulk=$!
sleep 3
for name in busy idle; do
    addr=$busy
    [ "$name" = idle ] && addr=$idle
    nice -n -10 taskset -c 1 "$LG" --target "$addr" --connections 1 --rate 1000 \
        --duration 10s --warmup 1s -q >"$work/light_$name" 2>&1 &
    pids+=($!)
done
wait "${pids[2]}" "${pids[3]}" "$bulk"
kill -TERM "$busy_pid"
wait "$busy_pid" || true
echo "bulk: $(grep '^  messages' "$work/bulk")"
for name in busy idle; do
    echo "light client, $name server:"
    grep -A1 'latency us' "$work/light_$name" | sed 's/^/  /'
done
echo "busy server: $(grep -o 'max_turn_us=[0-9]*' "$work/busy.err" | tail -n 1)"
# Turns over 10 ms, with the work they did (few bytes moved in a long turn
# means the thread was not running: the machine, not the loop).
grep -a 'long turn' "$work/busy.err" | sed 's/.*long turn /  long turn: /' | sort -t= -k2 -n | tail -n 3
