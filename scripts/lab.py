#!/usr/bin/env python3
"""The performance lab: echoloop against its peers, scenario by scenario.

Run it through scripts/compare-peer.sh, which builds the release binaries
first:

    scripts/compare-peer.sh 5          # 5 rounds (about 15 minutes)
    scripts/compare-peer.sh quick      # 1 short round, to try it out

Servers (each one thread, pinned to CPU 0; loadgen pinned to CPU 1):
  echoloop     the reactor (default flags; UDP with --udp-batch 32 and
               --udp-coalesce 20)
  echoloop-nc  echoloop --udp-coalesce 0: batches, but no pause to fill them
               (UDP only)
  echoloop-b1  echoloop --udp-batch 1: the plain recvfrom/sendto loop (UDP only)
  tokio        examples/tokio_peer.rs, a current-thread tokio runtime
  mio          examples/mio_echo.rs, the plain mio loop (read until WouldBlock)
  threads      loadgen/examples/echo_peer.rs, a blocking thread per connection

Scenarios:
  pingpong   50 connections, 64 B, pipeline 1
  pipeline   50 connections, 64 B, pipeline 16
  bulk       1 connection, 64 KiB messages
  udp        50 sockets, 64 B datagrams, pipeline 16 (loadgen batches its sends
             and receives: sendmmsg/recvmmsg, --udp-batch 32)
  udp-plain  the same with loadgen --udp-batch 1: one sendto/recv per datagram,
             the client before batching (not in the default list; name it in
             SCENARIOS to compare the two clients in one run)
  udp-busy   the same from 2 loadgen threads free to run on both CPUs, so
             loadgen takes CPU time from the server and the server, not
             loadgen, is the bottleneck (batches fill up)
  udp-light  50 sockets, 64 B datagrams, open loop at 20,000 a second in all:
             what --udp-coalesce costs in latency when datagrams come
             sparsely (the p50 and p99 columns)
  udp-burst  1 socket, 64 B datagrams, pipeline 4: a client that sends bursts
             of 4 and waits for them, the load --udp-coalesce costs most
  idle       10,000 idle connections held by scripts/idle-conns.py: server
             peak RSS growth per connection
  files      echoloop --mode files: a cached 256 MiB file downloaded with
             sendfile and with --no-sendfile (scripts/download.py)
  churn      connections per second, if loadgen has --reconnect-after

Rounds alternate the servers (and rotate their order) so a noisy machine
hits all of them alike; the table shows medians over rounds and each
server's ratio to echoloop. CPU per message is the server's utime+stime
(/proc/PID/stat) over its life divided by the messages loadgen sent
(warm-up included); syscalls per message come from
`perf stat -e raw_syscalls:sys_enter` (Debian: linux-perf) when it works.

Environment: SCENARIOS and SERVERS (space-separated) pick a subset; ECHOLOOP_BASE=PATH
adds "base", another echoloop binary with the same flags (before/after in one run).
All traffic is on 127.0.0.1.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

R = "target/release"
FULL = dict(duration="5s", warmup="1s", idle=10_000, file_mib=256, downloads=4)
QUICK = dict(duration="1s", warmup="500ms", idle=1_000, file_mib=32, downloads=2)

SERVERS = {
    "echoloop": [f"{R}/echoloop", "--listen", "127.0.0.1:0", "--max-conns", "12000"],
    "echoloop-nc": [
        f"{R}/echoloop", "--listen", "127.0.0.1:0", "--max-conns", "12000", "--udp-coalesce", "0",
    ],
    "echoloop-b1": [
        f"{R}/echoloop", "--listen", "127.0.0.1:0", "--max-conns", "12000", "--udp-batch", "1",
    ],
    "tokio": [f"{R}/examples/tokio_peer", "127.0.0.1:0"],
    "mio": [f"{R}/examples/mio_echo", "127.0.0.1:0"],
    "threads": [f"{R}/examples/echo_peer", "127.0.0.1:0"],
}

LOADS = {
    "pingpong": ["--connections", "50", "--size", "64", "--pipeline", "1"],
    "pipeline": ["--connections", "50", "--size", "64", "--pipeline", "16"],
    "bulk": ["--connections", "1", "--size", "65536", "--pipeline", "1"],
    "udp": ["--udp", "--connections", "50", "--size", "64", "--pipeline", "16"],
    "udp-plain": ["--udp", "--connections", "50", "--size", "64", "--pipeline", "16",
                  "--udp-batch", "1"],
    "udp-busy": ["--udp", "--connections", "50", "--size", "64", "--pipeline", "16",
                 "--threads", "2"],
    "udp-light": ["--udp", "--connections", "50", "--size", "64", "--rate", "20000"],
    "udp-burst": ["--udp", "--connections", "1", "--size", "64", "--pipeline", "4"],
}

# ECHOLOOP_BASE=PATH adds "base", another echoloop binary (say, main's before
# a change) run with the same flags, to every scenario echoloop is in: a
# before/after comparison in one run, alternating like the peers.
BASE = os.environ.get("ECHOLOOP_BASE")
if BASE:
    SERVERS["base"] = [BASE] + SERVERS["echoloop"][1:]

# CPUs loadgen may run on (the server always has CPU 0).
LOADGEN_CPUS = {"udp-busy": "0,1"}

# Which servers take part in which scenario.
CAST = {
    "pingpong": ["echoloop", "tokio", "mio", "threads"],
    "pipeline": ["echoloop", "tokio", "mio", "threads"],
    "bulk": ["echoloop", "tokio", "mio", "threads"],
    "udp": ["echoloop", "echoloop-nc", "echoloop-b1", "tokio", "mio"],
    "udp-plain": ["echoloop", "echoloop-nc", "echoloop-b1"],
    "udp-busy": ["echoloop", "echoloop-nc", "echoloop-b1"],
    "udp-light": ["echoloop", "echoloop-nc"],
    "udp-burst": ["echoloop", "echoloop-nc"],
    "idle": ["echoloop", "tokio", "mio", "threads"],
}


if BASE:
    for cast in CAST.values():
        cast.append("base")


def perf_works():
    """True when `perf stat` can count syscall tracepoints here."""
    if not shutil.which("perf"):
        return False
    probe = subprocess.run(
        ["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,", "--", "true"],
        capture_output=True, text=True,
    )
    return probe.returncode == 0 and "not supported" not in probe.stderr


class Server:
    """A server pinned to CPU 0 (under perf stat when it works)."""

    def __init__(self, name, argv, perf):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="echoloop-lab-")
        self.log = os.path.join(self.dir, "log")
        self.perf_out = os.path.join(self.dir, "perf") if perf else None
        cmd = ["taskset", "-c", "0"] + argv
        if perf:
            cmd = ["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,", "-o", self.perf_out,
                   "--"] + cmd
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.tcp, self.udp = self._addresses()
        self.pid = self._server_pid()

    def _addresses(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            text = open(self.log).read()
            tcp = re.search(r"tcp=(\S+)", text)
            if tcp:
                udp = re.search(r"udp=(\S+)", text)
                return tcp.group(1), udp.group(1) if udp else None
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start: {open(self.log).read()}")

    def _server_pid(self):
        """The server's own pid: perf's child when perf wraps it (taskset
        execs the server, so the pid is the same)."""
        if not self.perf_out:
            return self.proc.pid
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return int(f.read().split()[0])

    def cpu_seconds(self):
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self, field):
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def stop(self):
        """Stops the server; returns its syscall count (None without perf)."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        syscalls = None
        if self.perf_out and os.path.exists(self.perf_out):
            for line in open(self.perf_out):
                if "raw_syscalls" in line and line.split(",")[0].isdigit():
                    syscalls = int(line.split(",")[0])
        shutil.rmtree(self.dir, ignore_errors=True)
        return syscalls


def loadgen(target, args, cfg, cpus="1"):
    cmd = ["taskset", "-c", cpus, f"{R}/loadgen", "--target", target, "-q", "--json",
           "--duration", cfg["duration"], "--warmup", cfg["warmup"]] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"passed": False, "first_error": out.stderr.strip()[-200:]}


def run_load(name, scenario, cfg, perf):
    server = Server(name, SERVERS[name], perf)
    target = server.udp if scenario.startswith("udp") else server.tcp
    report = loadgen(target, LOADS[scenario], cfg, LOADGEN_CPUS.get(scenario, "1"))
    cpu = server.cpu_seconds()
    syscalls = server.stop()
    sent = report.get("sent") or 0
    row = {
        "rate": report.get("bytes_per_sec", 0) / 1e6 if scenario == "bulk"
        else (report.get("connections") or {}).get("per_sec") or 0 if scenario == "churn"
        else report.get("msgs_per_sec", 0),
        "p50_us": (report.get("latency_us") or {}).get("p50"),
        "p99_us": (report.get("latency_us") or {}).get("p99"),
        "cpu_us": cpu * 1e6 / sent if sent else None,
        "sys": syscalls / sent if syscalls and sent else None,
        "ok": report.get("passed", False),
    }
    if not row["ok"]:
        print(f"  {scenario} {name}: loadgen did not pass: {report.get('first_error')}",
              file=sys.stderr)
    return row


def run_idle(name, cfg, perf):
    server = Server(name, SERVERS[name], perf=False)
    before = server.rss_kib("VmRSS")
    port = server.tcp.rsplit(":", 1)[1]
    n = cfg["idle"]
    holder = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "scripts/idle-conns.py", port, str(n), "60"],
        stdout=subprocess.PIPE, text=True,
    )
    line = holder.stdout.readline()
    peak = server.rss_kib("VmHWM")
    holder.kill()
    holder.wait()
    server.stop()
    if not line.startswith("ready"):
        print(f"  idle {name}: the holder did not get {n} connections", file=sys.stderr)
        return {"rate": None, "ok": False}
    return {"rate": (peak - before) * 1024 / n, "ok": True}


def run_files(sendfile, cfg, binary=f"{R}/echoloop"):
    root = os.path.join(tempfile.gettempdir(), "echoloop-lab-files")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "big.bin")
    size = cfg["file_mib"] << 20
    if not os.path.exists(path) or os.path.getsize(path) != size:
        with open(path, "wb") as f:
            for _ in range(cfg["file_mib"]):
                f.write(os.urandom(1 << 20))
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    argv = [binary, "--listen", "127.0.0.1:0", "--no-udp", "--mode", "files",
            "--root", root] + ([] if sendfile else ["--no-sendfile"])
    server = Server("files", argv, perf=False)
    cpu0 = server.cpu_seconds()
    rates = []
    for _ in range(cfg["downloads"]):
        out = subprocess.run(
            ["taskset", "-c", "1", sys.executable, "scripts/download.py", server.tcp, "big.bin"],
            capture_output=True, text=True, timeout=120,
        )
        m = re.search(r"mb_per_s=(\d+)", out.stdout)
        if not m:
            print(f"  files: download failed: {out.stderr.strip()}", file=sys.stderr)
            server.stop()
            return {"rate": None, "ok": False}
        rates.append(int(m.group(1)))
    cpu = server.cpu_seconds() - cpu0
    server.stop()
    gib = cfg["downloads"] * size / (1 << 30)
    return {"rate": statistics.median(rates), "cpu_us": cpu * 1e6 / (gib * 1024), "ok": True}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}f}"


def ratio(v, base):
    return f"{v / base:.2f}x" if v and base else "n/a"


def table(results, scenarios, rounds, machine):
    units = {"pingpong": "msg/s", "pipeline": "msg/s", "bulk": "MB/s", "udp": "datagrams/s",
             "udp-plain": "datagrams/s", "udp-busy": "datagrams/s", "udp-light": "datagrams/s",
             "udp-burst": "datagrams/s",
             "idle": "bytes/conn", "churn": "connections/s"}
    print(f"\n{machine}; {rounds} round(s), medians\n")
    print("| scenario | server | throughput | vs echoloop | p50 us | p99 us | server CPU us/msg "
          "| vs echoloop | syscalls/msg | runs ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sc in scenarios:
        if sc not in results:
            continue
        # The first row is echoloop (for files: echoloop with sendfile).
        first = next(iter(results[sc].values()))
        base = {k: median([r.get(k) for r in first]) for k in ("rate", "cpu_us")}
        for name, rows in results[sc].items():
            rate, cpu = median([r.get("rate") for r in rows]), median([r.get("cpu_us") for r in rows])
            ok = sum(1 for r in rows if r.get("ok"))
            unit = units.get(sc, "MB/s")
            print(f"| {sc} ({unit}) | {name} | {fmt(rate)} | {ratio(rate, base['rate'])} "
                  f"| {fmt(median([r.get('p50_us') for r in rows]))} "
                  f"| {fmt(median([r.get('p99_us') for r in rows]))} | {fmt(cpu)} "
                  f"| {ratio(cpu, base['cpu_us'])} | {fmt(median([r.get('sys') for r in rows]), 3)} "
                  f"| {ok}/{len(rows)} |")


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} vCPU {cpu}, Linux {os.uname().release}"


def main():
    arg = sys.argv[1] if len(sys.argv) > 1 else "5"
    quick = arg == "quick"
    rounds = 1 if quick else int(arg)
    cfg = QUICK if quick else FULL
    scenarios = os.environ.get(
        "SCENARIOS", "pingpong pipeline bulk udp udp-busy udp-light udp-burst idle files churn").split()
    only = os.environ.get("SERVERS", "").split()
    perf = perf_works()
    if not perf:
        print("perf stat cannot count syscalls here (apt-get install linux-perf): "
              "syscalls/msg shows n/a", file=sys.stderr)
    results = {}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        for sc in scenarios:
            if sc == "churn":
                help_text = subprocess.run([f"{R}/loadgen", "--help"], capture_output=True,
                                           text=True).stdout
                if "--reconnect-after" not in help_text:
                    if r == 0:
                        print("churn: skipped, this loadgen has no --reconnect-after yet",
                              file=sys.stderr)
                    continue
                LOADS["churn"] = ["--connections", "50", "--reconnect-after", "10"]
                CAST["churn"] = CAST["pingpong"]
            if sc == "files":
                runs = [("echoloop sendfile", True, f"{R}/echoloop"),
                        ("echoloop copy", False, f"{R}/echoloop")]
                if BASE:
                    runs += [("base sendfile", True, BASE), ("base copy", False, BASE)]
                for label, on, binary in runs:
                    row = run_files(on, cfg, binary)
                    results.setdefault(sc, {}).setdefault(label, []).append(row)
                continue
            cast = [s for s in CAST[sc] if not only or s in only]
            # Rotate the order each round, so no server always runs first.
            cast = cast[r % len(cast):] + cast[:r % len(cast)] if cast else cast
            for name in cast:
                row = run_idle(name, cfg, perf) if sc == "idle" else run_load(name, sc, cfg, perf)
                results.setdefault(sc, {}).setdefault(name, []).append(row)
    # Keep echoloop first in every scenario's rows.
    for sc in results:
        results[sc] = dict(sorted(results[sc].items(), key=lambda kv: not kv[0].startswith("echoloop")))
    table(results, scenarios, rounds, machine())
    if "files" in results:
        print("\nfiles: throughput is the download rate of one cached file (MB/s), "
              "server CPU is us per MiB sent.")


if __name__ == "__main__":
    main()
