//! Shared helpers for the integration tests: start an in-process server on
//! 127.0.0.1 port 0, connect to it with timeouts set, and wait for conditions
//! with a deadline instead of sleeping.
//!
//! Every test binary includes this module but uses only part of it.
#![allow(dead_code)]

pub mod http;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::{Config, Server, ShutdownHandle, Stats, StatsSnapshot};

/// How long any single blocking socket call in a test may wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `wait_until` polls before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A config for tests: TCP and UDP on 127.0.0.1 port 0, short drain.
pub fn test_config() -> Config {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Config {
        listen: any,
        udp: Some(any),
        drain_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A server running on its own thread. Stop it with [`Running::stop`]; if a
/// test panics first, `Drop` still shuts the reactor down.
pub struct Running {
    pub tcp: SocketAddr,
    pub udp: Option<SocketAddr>,
    /// The `--metrics` endpoint, when the config asked for one.
    pub metrics: Option<SocketAddr>,
    handle: ShutdownHandle,
    stats: Stats,
    thread: Option<JoinHandle<StatsSnapshot>>,
}

/// Binds `config` and runs the server on a new thread.
pub fn start(config: Config) -> Running {
    init_logging();
    let server = Server::bind(config).expect("bind test server");
    let tcp = server.tcp_addr();
    let udp = server.udp_addr();
    let metrics = server.metrics_addr();
    let handle = server.shutdown_handle();
    let stats = server.stats();
    let thread = std::thread::Builder::new()
        .name("echoloop-test-reactor".into())
        .spawn(move || server.run().expect("reactor failed"))
        .unwrap();
    Running {
        tcp,
        udp,
        metrics,
        handle,
        stats,
        thread: Some(thread),
    }
}

impl Running {
    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Graceful shutdown; returns the final counters.
    pub fn stop(mut self) -> StatsSnapshot {
        self.handle.shutdown();
        let thread = self.thread.take().unwrap();
        thread.join().expect("reactor thread panicked")
    }

    /// A blocking TCP client with read and write timeouts set.
    pub fn connect(&self) -> TcpStream {
        connect(self.tcp)
    }

    /// Waits until `cond` holds for the counters, or fails naming `what`.
    pub fn wait_stats(&self, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let mut last = self.stats();
        wait_until(what, || {
            last = self.stats();
            cond(&last)
        });
        last
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// Connects with timeouts, so a broken server fails the test instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Polls `cond` every few milliseconds until it holds; panics after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads until the peer closes; fails on timeout.
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read_to_end");
    out
}

/// Sends `data`, half-closes, and returns everything the server sends back
/// before it closes.
pub fn send_all_then_fin(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    read_to_end(s)
}

/// True when the peer has closed: a read returns EOF or a reset.
pub fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            false
        }
        Err(_) => true,
    }
}

/// A small deterministic PRNG (xorshift64*), so tests need no extra crate
/// and a failure reproduces from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// This process's resident set size in KiB (Linux `/proc/self/status`).
/// The in-process server shares the test's address space, so this is an
/// upper bound on what the server holds.
pub fn self_rss_kib() -> u64 {
    rss_kib_of("self").expect("read /proc/self/status")
}

/// Resident set size of `pid` ("self" or a number) in KiB.
pub fn rss_kib_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `echoloop` binary running as a child process, with its log (stderr)
/// collected line by line on a thread.
pub struct Child {
    pub process: std::process::Child,
    pub tcp: SocketAddr,
    pub udp: Option<SocketAddr>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts the built binary with `args` (add `--listen 127.0.0.1:0`
/// yourself) and waits for its `tcp=... udp=...` start-up line.
pub fn spawn_binary(args: &[&str]) -> Child {
    spawn_binary_logging(args, "info")
}

/// `spawn_binary` with `RUST_LOG` set to `level` (e.g. "debug").
pub fn spawn_binary_logging(args: &[&str], level: &str) -> Child {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

    let mut process = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echoloop");
    let stderr = process.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let mut child = Child {
        process,
        tcp: "0.0.0.0:0".parse().unwrap(),
        udp: None,
        log,
    };
    let line = child.wait_log("start-up line with tcp=", "tcp=");
    child.tcp = field(&line, "tcp=").parse().expect("tcp= address");
    child.udp = field(&line, "udp=").parse().ok();
    child
}

/// The value after `key` in a `key=value` log line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(key).expect("key in line") + key.len();
    line[start..].split_whitespace().next().unwrap_or("")
}

impl Child {
    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` and returns it. Fails fast
    /// if the process exited without it (after a grace period: its last
    /// lines may still be in the pipe when it exits).
    pub fn wait_log(&mut self, what: &str, needle: &str) -> String {
        let mut found = None;
        let mut exited: Option<Instant> = None;
        wait_until(what, || {
            found = self.log().into_iter().find(|l| l.contains(needle));
            if found.is_none() {
                if let Ok(Some(status)) = self.process.try_wait() {
                    let since = *exited.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(1) {
                        panic!(
                            "echoloop exited with {status} before {what}: {:?}",
                            self.log()
                        );
                    }
                }
            }
            found.is_some()
        });
        found.unwrap()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the child.
    pub fn signal(&self, sig: i32) {
        let pid = self.process.id() as i32;
        // SAFETY: kill(2) with a pid we spawned and own; no memory involved.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then (once the drain has begun) SIGTERM again: the second
    /// signal must end the process within a few seconds, whatever is owed,
    /// killed by the signal itself (exit status 143 in a shell).
    pub fn second_signal_exits_promptly(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.signal(libc::SIGTERM);
        self.wait_log("shutdown notice", "shutting down");
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    }

    /// Waits (bounded) for the child to exit and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until("echoloop to exit", || {
            status = self.process.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    /// The child's resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(&self.process.id().to_string()).expect("child status")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

// ----- pattern streams -------------------------------------------------------

/// The byte at stream offset `pos` of a test stream: period 251 (prime, so it
/// never lines up with power-of-two chunk sizes), checked without keeping a copy.
pub fn pattern(pos: u64) -> u8 {
    (pos % 251) as u8
}

/// Writes up to `total` pattern bytes on a thread; the returned counter says
/// how far it got. The writer stops quietly when the server closes.
pub fn pattern_writer(stream: &TcpStream, total: u64) -> (Arc<AtomicU64>, thread::JoinHandle<()>) {
    let mut w = stream.try_clone().unwrap();
    w.set_write_timeout(None).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let progress = written.clone();
    let handle = thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut pos = 0u64;
        while pos < total {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = pattern(pos + i as u64);
            }
            if w.write_all(&chunk).is_err() {
                return;
            }
            pos += chunk.len() as u64;
            progress.store(pos, Ordering::Relaxed);
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    (written, handle)
}

/// Waits until the writer has made no progress for 300 ms: the server has
/// stopped reading (backpressure) and holds output for us. Calls `sample`
/// on every poll (to watch RSS meanwhile, say).
pub fn wait_for_stall(written: &AtomicU64, mut sample: impl FnMut()) {
    let mut last = (u64::MAX, Instant::now());
    wait_until("writer to stall", || {
        sample();
        let now = written.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        now > 0 && last.1.elapsed() > Duration::from_millis(300)
    });
}

/// Starts a pattern writer of `total` bytes on each stream and waits until
/// all of them have stalled (they stall together, so this takes about one
/// stall period, not one per stream).
pub fn stalled_writers(streams: &[TcpStream], total: u64) -> Vec<JoinHandle<()>> {
    let (progress, writers): (Vec<_>, Vec<_>) =
        streams.iter().map(|s| pattern_writer(s, total)).unzip();
    for written in &progress {
        wait_for_stall(written, || {});
    }
    writers
}

/// One stalled pattern writer (see [`stalled_writers`]).
pub fn stalled_writer(stream: &TcpStream, total: u64) -> JoinHandle<()> {
    stalled_writers(std::slice::from_ref(stream), total)
        .pop()
        .unwrap()
}

/// Reads until EOF, checking the pattern; returns the count. A reset instead
/// of EOF fails: it would mean owed bytes may have been destroyed.
pub fn read_pattern_to_eof(s: &mut TcpStream) -> u64 {
    let mut buf = vec![0u8; 128 * 1024];
    let mut pos = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return pos,
            Ok(n) => {
                for (i, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(b, pattern(pos + i as u64), "offset {}", pos + i as u64);
                }
                pos += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("after {pos} bytes: {e} (expected a clean EOF)"),
        }
    }
}
