#!/usr/bin/env bash
# Runs the same loadgen load against echoloop and against peers, alternating,
# with the server pinned to core 0 and loadgen to core 1, so they can be
# quoted as ratios measured in one sitting. Peers: echo_peer (blocking, one
# thread per connection: loadgen/examples/echo_peer.rs) and tokio_peer (a
# current-thread tokio runtime: examples/tokio_peer.rs).
#
#   cargo build --release --workspace --bins --examples
#   ulimit -n 20000    # for thousands of connections, in this shell
#   scripts/compare-peer.sh ROUNDS [loadgen args...]
#   scripts/compare-peer.sh 2 --connections 50 --duration 5s
#   PEERS="echoloop tokio_peer" scripts/compare-peer.sh 1 --connections 1000
set -euo pipefail
cd "$(dirname "$0")/.."
R=target/release
rounds=${1:?usage: compare-peer.sh ROUNDS [loadgen args...]}
shift
log=$(mktemp)
trap 'kill "${server:-}" 2>/dev/null || true; rm -f "$log"' EXIT

# Starts a server in the background and waits for its tcp=ADDR line. The log
# is emptied first, here: the background job's own redirection may truncate it
# only after the loop below has read the previous server's address.
start() {
    : >"$log"
    taskset -c 0 "$@" >>"$log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        addr=$(grep -o 'tcp=[^ ]*' "$log" | head -1 | cut -d= -f2) && [ -n "$addr" ] && return
        sleep 0.05
    done
    echo "server did not start: $(cat "$log")" >&2
    exit 1
}

for _ in $(seq "$rounds"); do
    for peer in ${PEERS:-echoloop echo_peer tokio_peer}; do
        if [ "$peer" = echoloop ]; then
            start "$R/echoloop" --listen 127.0.0.1:0 --no-udp
        else
            start "$R/examples/$peer" 127.0.0.1:0
        fi
        echo "== $peer $*"
        taskset -c 1 "$R/loadgen" --target "$addr" -q "$@" || true
        kill "$server" # SIGTERM: background jobs ignore SIGINT
        wait "$server" 2>/dev/null || true
    done
done
