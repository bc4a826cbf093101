#!/usr/bin/env python3
"""Downloads one file from an echoloop files-mode server and discards it.

    scripts/download.py ADDR NAME

Prints `bytes=N seconds=S mb_per_s=R` for the body (header excluded), so the
lab (scripts/compare-peer.sh) can compare the sendfile and copying paths.
On Linux the body is received with MSG_TRUNC, which drops TCP data in the
kernel without copying it to us: the client then costs little, and the
server's path is what the rate measures. Exits 1 if the server refuses the
name or the body is cut short.
"""
import json
import socket
import struct
import sys
import time


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            sys.exit(f"download.py: connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: download.py ADDR NAME")
    host, port = sys.argv[1].rsplit(":", 1)
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
    sock.sendall(sys.argv[2].encode() + b"\n")
    (hlen,) = struct.unpack(">I", read_exact(sock, 4))
    header = json.loads(read_exact(sock, hlen))
    if "size" not in header:
        sys.exit(f"download.py: refused: {header}")
    size = header["size"]
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    left = size
    start = time.perf_counter()
    # MSG_TRUNC on a TCP socket (Linux): discard instead of copying.
    flags = socket.MSG_TRUNC if sys.platform.startswith("linux") else 0
    while left:
        n = sock.recv_into(view, min(left, len(buf)), flags)
        if n == 0:
            sys.exit(f"download.py: body cut short, {left} bytes missing")
        left -= n
    secs = time.perf_counter() - start
    print(f"bytes={size} seconds={secs:.3f} mb_per_s={size / secs / 1e6:.0f}")


if __name__ == "__main__":
    main()
