//! Graceful shutdown: through a `ShutdownHandle` in-process, and through
//! SIGTERM/SIGINT on the built binary. Output already owed is flushed, the
//! process exits 0, and a second signal exits at once.

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, read_pattern_to_eof, spawn_binary, stalled_writer, start, test_config};

/// `ShutdownHandle::shutdown` stops accepting, lets a connection that owes
/// output flush it all, closes it cleanly, and `run` returns the counters.
#[test]
fn shutdown_handle_flushes_owed_output() {
    let server = start(test_config());
    let mut s = server.connect();
    let writer = stalled_writer(&s, 64 << 20);
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
    let _writer = stalled_writer(&s, 64 << 20);
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
    let writer = stalled_writer(&s, 64 << 20);

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
    let _writer = stalled_writer(&s, 64 << 20);

    server.second_signal_exits_promptly();
    assert!(server.log().iter().any(|l| l.contains("second signal")));
    // The bytes still owed to the client are lost, and counted.
    let stopped = server.wait_log("final counters", "stopped:");
    assert!(stopped.contains("drain_aborts=1 "), "{stopped}");
    drop(s);
}
