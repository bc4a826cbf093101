#!/usr/bin/env python3
"""Idle TCP connections held from a separate process, to read a server's
memory per idle connection (issue 9: peak RSS growth / connections).

Two forms:

    idle-conns.py PORT N HOLD_SECONDS
        Opens N connections to 127.0.0.1:PORT, does one 1-byte round trip on
        each (so each was really accepted and served), prints "ready N", then
        holds them for HOLD_SECONDS. scripts/lab.py uses this form and reads
        the server's RSS itself.

    idle-conns.py measure BINARY N [SERVER_ARGS...]
        Starts BINARY --listen 127.0.0.1:0 --no-udp --max-conns N+500
        [SERVER_ARGS...] (an echoloop), reads its VmRSS, opens and serves N
        connections as above, reads its VmHWM, stops both and prints
        "n=N before_kib=.. peak_kib=.. bytes_per_conn=..", where
        bytes_per_conn = (VmHWM - VmRSS before) / N. The figure includes
        what the first connection costs once (code paged in on first use,
        about 130 KiB for echoloop), so it falls as N grows.

        ulimit -n 20000
        scripts/idle-conns.py measure target/release/echoloop 10000
        scripts/idle-conns.py measure target/release/echoloop 19000

Both need `ulimit -n` above N (the server is clamped below its own limit).
"""
import re
import socket
import subprocess
import sys
import tempfile
import time


def hold(port, n):
    """N served connections to 127.0.0.1:port."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    for s in socks:
        s.sendall(b"x")
    for s in socks:
        if s.recv(1) != b"x":
            sys.exit("a connection did not echo")
    return socks


def kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def measure(binary, n, extra):
    log = tempfile.TemporaryFile(mode="w+")
    argv = [binary, "--listen", "127.0.0.1:0", "--no-udp", "--max-conns", str(n + 500)]
    server = subprocess.Popen(argv + extra, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        port = None
        while port is None:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                sys.exit(f"the server did not start:\n{log.read()}")
            time.sleep(0.05)
            log.seek(0)
            found = re.search(r"tcp=\S+:(\d+)", log.read())
            port = int(found.group(1)) if found else None
        # The baseline is the idle server, not one still starting: wait
        # until its RSS holds still (it prints its address before its loop
        # has run once).
        before = kib(server.pid, "VmRSS")
        for _ in range(50):
            time.sleep(0.1)
            now = kib(server.pid, "VmRSS")
            if now == before:
                break
            before = now
        socks = hold(port, n)
        peak = kib(server.pid, "VmHWM")
        for s in socks:
            s.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    per_conn = (peak - before) * 1024 // n
    print(f"n={n} before_kib={before} peak_kib={peak} bytes_per_conn={per_conn}")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "measure":
        measure(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
        return
    if len(sys.argv) != 4:
        sys.exit("usage: idle-conns.py PORT N HOLD_SECONDS | idle-conns.py measure BINARY N [ARGS...]")
    port, n, hold_for = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    socks = hold(port, n)
    print("ready", len(socks), flush=True)
    time.sleep(hold_for)


if __name__ == "__main__":
    main()
