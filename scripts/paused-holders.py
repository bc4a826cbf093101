#!/usr/bin/env python3
"""Framed clients the memory budget paused mid-frame, when their input ends.

Runs BIN twice with `--mode framed --max-memory 1048576 --drain-timeout 30`:

1. 40 clients each send 48 KiB of a 1 MiB frame (1.9 MiB against the 1 MiB
   budget), then half of them half-close. Prints how many of those the
   server closed (EOF) and how long that took (capped at 20 s).
2. 20 clients each send 200 KB of a 1 MiB frame, half of them half-close,
   then the server gets SIGINT. Prints how long it took to exit and its
   final `drain_aborts` and `partial_frames`.
3. 20 clients each send one whole 1 MiB frame at once (20 MiB in flight
   against the 1 MiB budget) and read its echo. Prints how many came back
   within 15 s (all, since the memory overdraft; 0 to 4 before it), when
   the last did, and the most the server held at once.

Used for README's "Reliability" figures:

    cargo build --release --bin echoloop
    scripts/paused-holders.py target/release/echoloop

Loopback only.
"""
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request


def start(binary, extra=()):
    args = [binary, "--listen", "127.0.0.1:0", "--no-udp", "--mode", "framed",
            "--max-memory", "1048576", "--drain-timeout", "30", *extra]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server.first_line = server.stdout.readline()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", server.first_line).group(1))
    return server, port


def holders(port, count, sent):
    """`count` clients, each having sent `sent` bytes of a 1 MiB frame."""
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    data = struct.pack(">I", 1 << 20) + b"x" * sent
    pos = [0] * count
    for c in clients:
        c.setblocking(False)
    deadline = time.time() + 10
    while min(pos) < len(data):
        if time.time() > deadline:
            sys.exit(f"clients could not send: {pos}")
        for i, c in enumerate(clients):
            try:
                pos[i] += c.send(data[pos[i]:pos[i] + 65536])
            except BlockingIOError:
                pass
    time.sleep(1)  # let the server read what the budget allows, and pause
    return clients


def fin_releases(binary):
    server, port = start(binary)
    clients = holders(port, 40, 48 * 1024)
    closing = clients[::2]
    started = time.time()
    for c in closing:
        c.shutdown(socket.SHUT_WR)
    pending, closed = set(closing), 0
    while pending and time.time() - started < 20:
        ready, _, _ = select.select(list(pending), [], [], 0.5)
        for c in ready:
            try:
                closed += c.recv(1) == b""
            except OSError:
                pass
            pending.discard(c)
    took = time.time() - started
    print(f"half-closed holders closed by the server: {closed}/{len(closing)} in {took:.2f} s")
    server.kill()
    server.wait()


def drain(binary):
    server, port = start(binary)
    clients = holders(port, 20, 200_000)
    for c in clients[::2]:
        c.shutdown(socket.SHUT_WR)
    started = time.time()
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=60)
    took = time.time() - started
    final = [line for line in err.splitlines() if "stopped:" in line][-1]
    counts = " ".join(re.findall(r"(?:drain_aborts|partial_frames)=\d+", final))
    print(f"SIGINT with 20 paused holders: exited after {took:.2f} s, {counts}")
    del clients


def whole_frames(binary):
    server, port = start(binary, ["--metrics", "127.0.0.1:0"])
    metrics = re.search(r"metrics=127\.0\.0\.1:(\d+)", server.first_line).group(1)
    frame = struct.pack(">I", 1 << 20) + b"x" * (1 << 20)
    echoed = []
    started = time.time()

    def client():
        c = socket.create_connection(("127.0.0.1", port))
        c.settimeout(15)
        threading.Thread(target=c.sendall, args=(frame,), daemon=True).start()
        got = 0
        try:
            while got < len(frame):
                chunk = c.recv(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass
        echoed.append((got == len(frame), time.time() - started))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [t for ok, t in echoed if ok]
    last = f", the last after {max(done):.2f} s" if done else ""
    url = f"http://127.0.0.1:{metrics}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    peak = re.search(r"^echoloop_memory_held_max (\d+)", text, re.M)
    peak = f"{int(peak.group(1)) / (1 << 20):.2f} MiB" if peak else "not counted"
    print(f"whole 1 MiB frames from 20 clients echoed within 15 s: {len(done)}/20{last}; "
          f"most held at once (memory_held_max): {peak}")
    server.kill()
    server.wait()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    fin_releases(sys.argv[1])
    drain(sys.argv[1])
    whole_frames(sys.argv[1])


if __name__ == "__main__":
    main()
