#!/usr/bin/env python3
"""Opens N idle TCP connections to a loopback server, does one 1-byte round
trip on each (so each was really accepted and served), prints "ready N",
then holds them for HOLD seconds. Used to read a server's RSS per idle
connection from a separate process:

    echoloop --listen 127.0.0.1:0 --no-udp &      # note its tcp= port
    scripts/idle-conns.py PORT 10000 10 &
    grep VmHWM /proc/$(pgrep -x echoloop)/status  # after "ready"

Needs `ulimit -n` above N in both processes.
"""
import socket
import sys
import time


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: idle-conns.py PORT N HOLD_SECONDS")
    port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    for s in socks:
        s.sendall(b"x")
    for s in socks:
        if s.recv(1) != b"x":
            sys.exit("a connection did not echo")
    print("ready", len(socks), flush=True)
    time.sleep(hold)


if __name__ == "__main__":
    main()
