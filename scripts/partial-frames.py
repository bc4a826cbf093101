#!/usr/bin/env python3
"""Holds 200 partial frames against a framed-mode echoloop and reads its RSS.

Starts BIN (pinned to core 0) with `--mode framed` plus any extra ARGS, opens
200 connections and has each send all but the last byte of a 1 MiB frame,
until no client makes progress for 0.5 s (the server stopped reading them).
Prints the server's RSS growth and how long a new client's 5-byte frame
took to come back. Used for README's "Reliability" figures:

    cargo build --release --bin echoloop
    scripts/partial-frames.py target/release/echoloop --max-memory 33554432

Needs `ulimit -n` above 210. Loopback only.
"""
import socket
import struct
import subprocess
import sys
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: partial-frames.py BIN [ARGS...]")
    cmd = ["taskset", "-c", "0", sys.argv[1], "--listen", "127.0.0.1:0", "--no-udp",
           "--mode", "framed"] + sys.argv[2:]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(server.stdout.readline().split()[0].split(":")[-1])
        time.sleep(0.2)
        start = peak = rss(server.pid)
        frame = struct.pack(">I", 1 << 20) + b"\x07" * ((1 << 20) - 1)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
        for c in clients:
            c.setblocking(False)
        sent = [0] * len(clients)
        last, deadline = time.time(), time.time() + 60
        while time.time() - last < 0.5 and time.time() < deadline:
            progress = False
            for i, c in enumerate(clients):
                if sent[i] < len(frame):
                    try:
                        sent[i] += c.send(frame[sent[i]:sent[i] + 65536])
                        progress = True
                    except BlockingIOError:
                        pass
            if progress:
                last = time.time()
            else:
                time.sleep(0.005)
            peak = max(peak, rss(server.pid))
        fresh = socket.create_connection(("127.0.0.1", port), timeout=10)
        t = time.time()
        fresh.sendall(struct.pack(">I", 5) + b"hello")
        got = b""
        while len(got) < 9:
            chunk = fresh.recv(9 - len(got))
            if not chunk:
                break
            got += chunk
        echo_ms = (time.time() - t) * 1000
        peak = max(peak, rss(server.pid))
        ok = got == struct.pack(">I", 5) + b"hello"
        print(f"clients sent {sum(sent) >> 20} MiB; server rss start {start >> 20} MiB, "
              f"peak {peak >> 20} MiB, growth {(peak - start) >> 20} MiB; "
              f"new client's frame {'echoed' if ok else 'NOT echoed'} in {echo_ms:.2f} ms")
        sys.exit(0 if ok else 1)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
