//! Connections at scale, against the real echoloop in-process: the connect phase, honest
//! verdicts about connections (fewer than asked, broken), and churn.

mod common;

use std::time::{Duration, Instant};

use common::echoloop::{start, start_with};
use common::{never_accepting, poll_until, quick, raise_open_files};

/// 2,000 connections, no --connect-rate: all open in a bounded time, every handshake has
/// its latency, the server accepted each one once, and the measured window has them all.
/// (Client and server share this process: on a machine whose hard open-files limit cannot
/// hold both sides of 2,000, as many as it can.)
#[test]
fn two_thousand_connections_open_at_once() {
    let n = 2000.min(raise_open_files().saturating_sub(300) / 2) as usize;
    if n < 2000 {
        eprintln!("open-files limit too low for 2,000 connections: testing {n}");
    }
    let server = start_with(echoloop::Mode::Echo, n + 100);
    let mut cfg = quick(server.tcp);
    cfg.connections = n;
    cfg.warmup = Duration::from_millis(200);
    cfg.duration = Duration::from_millis(500);
    let started = Instant::now();
    let r = loadgen::run(&cfg).unwrap();
    let took = started.elapsed();
    assert!(r.passed(), "{}", r.to_text());
    let c = r.connections.as_ref().unwrap();
    let n = n as u64;
    assert_eq!((c.opened, c.failed, c.broken), (n, 0, 0), "{}", r.to_text());
    assert_eq!(c.latency.len(), n);
    assert!(c.phase < Duration::from_secs(15), "{:?}", c.phase);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(server.stats.snapshot().accepted, n);
}

/// A listener that never accepts (backlog 1): a couple of handshakes complete into its
/// backlog, every other connect times out, and the run fails saying it opened fewer than
/// asked, rather than measuring what it could.
#[test]
fn never_accepting_listener_fails_the_run() {
    let listener = never_accepting();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut cfg = quick(addr);
    cfg.connections = 8;
    cfg.connect_timeout = Duration::from_millis(500);
    cfg.drain_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let r = loadgen::run(&cfg).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let c = r.connections.as_ref().unwrap();
    assert!(
        c.opened < 8 && c.initial_failed == 8 - c.opened,
        "{}",
        r.to_text()
    );
    let failures = r.failures().join(", ");
    assert!(failures.contains("opened fewer than asked"), "{failures}");
    assert!(
        r.to_text().contains("connect timed out after 500ms"),
        "{}",
        r.to_text()
    );
    assert!(!r.passed());
}

/// A server that goes away mid-run closes every connection: each is "broken" (it was up),
/// not "failed", the run fails saying so, and it ends without waiting out --duration.
#[test]
fn server_gone_mid_run_is_broken() {
    let mut server = start(echoloop::Mode::Echo);
    let mut cfg = quick(server.tcp);
    (cfg.warmup, cfg.duration) = (Duration::ZERO, Duration::from_secs(10));
    let run = std::thread::spawn(move || loadgen::run(&cfg));
    // Traffic is flowing on all four connections, then the server shuts down.
    let stats = server.stats.clone();
    poll_until(Duration::from_secs(10), || {
        stats.snapshot().bytes_out > 64 * 400
    });
    let started = Instant::now();
    server.stop();
    let r = run.join().unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited out the run"
    );
    let c = r.connections.as_ref().unwrap();
    assert_eq!((c.opened, c.failed, c.broken), (4, 0, 4), "{}", r.to_text());
    assert!(r.failures().contains(&"4 connections broken".to_string()));
    assert!(
        r.to_text().contains("0 failed, 4 broken"),
        "{}",
        r.to_text()
    );
    let why = r.conn_error.clone().unwrap_or_default();
    assert!(why.contains("server closed the connection"), "{why}");
}

/// --reconnect-after 10: every connection closes after 10 echoes and reconnects, so
/// connects are a tenth of the messages (within the last, partial round of each
/// connection), the server accepted each one, every handshake is in the connect
/// histogram, and the churn rate is reported.
#[test]
fn reconnect_after_measures_churn() {
    let server = start(echoloop::Mode::Echo);
    let mut cfg = quick(server.tcp);
    cfg.reconnect_after = Some(10);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    let c = r.connections.as_ref().unwrap();
    let n = cfg.connections as u64;
    assert!(c.opened > 10 * n, "{}", r.to_text());
    assert!(
        r.sent <= 10 * c.opened && r.sent >= 10 * (c.opened - n),
        "{}",
        r.to_text()
    );
    // In the measured window: one connect per ten messages, give or take a round at
    // each end of the window on each connection.
    let (connects, tenths) = (c.measured as i64, r.messages() as i64 / 10);
    assert!(
        (connects - tenths).abs() <= 2 * n as i64 + 1,
        "{}",
        r.to_text()
    );
    assert_eq!(c.latency.len(), c.opened);
    assert!(c.per_sec() > 0.0 && r.to_text().contains("  churn        "));
    let stats = server.stats.clone();
    poll_until(Duration::from_secs(5), || {
        stats.snapshot().accepted >= c.opened
    });
    assert_eq!(stats.snapshot().accepted, c.opened);
}
