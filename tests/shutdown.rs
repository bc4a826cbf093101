//! Graceful shutdown: through a `ShutdownHandle` in-process, and through
//! SIGTERM/SIGINT on the built binary. Output already owed is flushed, the
//! process exits 0, and a second signal exits at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, spawn_binary, start, test_config, wait_until};

fn pattern(pos: u64) -> u8 {
    (pos % 251) as u8
}

/// Writes up to `total` pattern bytes on a thread; the returned counter says
/// how far it got. The writer stops quietly when the server closes.
fn pattern_writer(stream: &TcpStream, total: u64) -> (Arc<AtomicU64>, thread::JoinHandle<()>) {
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
/// stopped reading (backpressure) and holds output for us.
fn wait_for_stall(written: &AtomicU64) {
    let mut last = (u64::MAX, Instant::now());
    wait_until("writer to stall", || {
        let now = written.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        now > 0 && last.1.elapsed() > Duration::from_millis(300)
    });
}

/// Reads until EOF, checking the pattern; returns the count. A reset instead
/// of EOF fails: it would mean owed bytes may have been destroyed.
fn read_pattern_to_eof(s: &mut TcpStream) -> u64 {
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

/// `ShutdownHandle::shutdown` stops accepting, lets a connection that owes
/// output flush it all, closes it cleanly, and `run` returns the counters.
#[test]
fn shutdown_handle_flushes_owed_output() {
    let server = start(test_config());
    let mut s = server.connect();
    let (written, writer) = pattern_writer(&s, 64 << 20);
    wait_for_stall(&written);
    assert!(server.stats().backpressure_pauses >= 1);

    let tcp = server.tcp;
    let stopper = thread::spawn(move || server.stop());
    let received = read_pattern_to_eof(&mut s);
    let stats = stopper.join().unwrap();
    writer.join().unwrap();
    assert_eq!(
        received, stats.bytes_out,
        "every byte the server sent arrived"
    );
    assert!(received > 0);
    assert_eq!(stats.drain_aborts, 0);
    assert_eq!(stats.active, 0);
    // The listener is gone.
    assert!(TcpStream::connect_timeout(&tcp, Duration::from_secs(2)).is_err());
}

/// A client that never reads cannot hold shutdown past the drain timeout;
/// the abandoned output is counted.
#[test]
fn drain_timeout_bounds_shutdown() {
    let mut config = test_config();
    config.drain_timeout = Duration::from_millis(500);
    let server = start(config);
    let s = server.connect();
    let (written, _writer) = pattern_writer(&s, 64 << 20);
    wait_for_stall(&written);
    let started = Instant::now();
    let stats = server.stop();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "returned before the drain timeout"
    );
    assert!(took < Duration::from_secs(5), "drain took {took:?}");
    assert_eq!(stats.drain_aborts, 1);
    drop(s);
}

/// Idle connections do not delay shutdown.
#[test]
fn idle_connections_close_at_once_on_shutdown() {
    let mut config = test_config();
    config.drain_timeout = Duration::from_secs(30);
    let server = start(config);
    let mut clients: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    server.wait_stats("all accepted", |s| s.active == 20);
    let started = Instant::now();
    let stats = server.stop();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.closed, 20);
    for c in &mut clients {
        assert_eq!(common::read_to_end(c).len(), 0, "clean EOF");
    }
}

/// SIGTERM on the built binary: owed output is flushed, the final counters
/// are logged, and the exit status is 0.
#[test]
fn sigterm_flushes_and_exits_zero() {
    let mut server = spawn_binary(&["--listen", "127.0.0.1:0"]);
    let mut s = connect(server.tcp);
    let (written, writer) = pattern_writer(&s, 64 << 20);
    wait_for_stall(&written);

    server.signal(libc::SIGTERM);
    server.wait_log("shutdown notice", "shutting down");
    let received = read_pattern_to_eof(&mut s);
    let status = server.wait_exit();
    writer.join().unwrap();
    assert!(status.success(), "exit status {status}");
    let stopped = server.wait_log("final counters", "stopped:");
    assert!(
        stopped.contains(&format!("bytes_out={received} ")),
        "client got {received} bytes; server says {stopped}"
    );
    assert!(stopped.contains("drain_aborts=0 "), "{stopped}");
}

/// SIGINT (Ctrl-C) with nothing connected exits 0 promptly.
#[test]
fn sigint_with_no_clients_exits_zero() {
    let mut server = spawn_binary(&["--listen", "127.0.0.1:0"]);
    server.signal(libc::SIGINT);
    assert!(server.wait_exit().success());
}

/// A second signal during a long drain exits at once.
#[test]
fn second_signal_exits_at_once() {
    let mut server = spawn_binary(&["--listen", "127.0.0.1:0", "--drain-timeout", "600"]);
    let s = connect(server.tcp);
    let (written, _writer) = pattern_writer(&s, 64 << 20);
    wait_for_stall(&written);

    server.signal(libc::SIGTERM);
    server.wait_log("shutdown notice", "shutting down");
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    server.wait_exit();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.log().iter().any(|l| l.contains("second signal")));
    drop(s);
}
