#!/usr/bin/env bash
# Runs a command and reports the CPU it used (user + system, all its threads)
# between FROM and TO seconds after it started, as a percentage of one core:
# how the loadgen CPU figure at 19,000 mostly idle connections in
# loadgen/README.md was measured (the window skips the connect phase).
#
#   scripts/cpu-window.sh FROM TO command [args...]
#   scripts/cpu-window.sh 10 20 target/release/loadgen --connections 19000 \
#       --rate 1000 --warmup 2s --duration 25s -q
#
# The command's own output passes through; the figure is the last line, on stderr.
set -euo pipefail
from=${1:?usage: cpu-window.sh FROM TO command [args...]}
to=${2:?usage: cpu-window.sh FROM TO command [args...]}
shift 2
"$@" &
pid=$!
hz=$(getconf CLK_TCK)
# Fields 14 and 15 of /proc/PID/stat: utime and stime in clock ticks. The
# command name (field 2) may hold spaces, so count from the closing paren.
ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }
sleep "$from"
t0=$(ticks)
sleep "$((to - from))"
t1=$(ticks)
wait "$pid" || status=$?
awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$((to - from))" \
    'BEGIN { printf "cpu %.1f%% of one core between the marks (%d ticks in %d s)\n", (b - a) / hz / s * 100, b - a, s }' >&2
exit "${status:-0}"
