#!/usr/bin/env bash
# The performance lab in one command: builds the release binaries, then runs
# echoloop and its peers (current-thread tokio, the plain mio loop, a thread
# per connection) through every scenario, alternating servers over ROUNDS
# rounds, and prints a Markdown table of medians and ratios to echoloop.
# See scripts/lab.py for the servers, scenarios and how each figure is taken.
#
#   scripts/compare-peer.sh 5        # the README's table (about 15 minutes)
#   scripts/compare-peer.sh quick    # one short round, to try it
#   SCENARIOS="udp files" SERVERS="echoloop echoloop-b1" scripts/compare-peer.sh 5
#
# Needs taskset, python3, and for syscall counts perf (Debian: linux-perf).
# Holds 10,000 connections in the idle scenario: raises the open-files limit.
set -euo pipefail
cd "$(dirname "$0")/.."
arg=${1:-5}
case "$arg" in
    quick | [1-9] | [1-9][0-9]) ;;
    *) echo "usage: compare-peer.sh [ROUNDS | quick]" >&2; exit 2 ;;
esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet --bin echoloop --example tokio_peer --example mio_echo
cargo build --release --quiet -p loadgen --bin loadgen --example echo_peer
exec python3 scripts/lab.py "$arg"
