//! loadgen against the real echoloop server, started in-process on port 0.

mod common;

use std::time::Duration;

use common::echoloop::start;
use common::quick;
use loadgen::Protocol;

/// Closed-loop TCP against echoloop, pipelined over two threads: zero errors.
#[test]
fn tcp_closed_loop_zero_errors() {
    let server = start(echoloop::Mode::Echo);
    let mut cfg = quick(server.tcp);
    cfg.connections = 8;
    cfg.threads = 2;
    cfg.pipeline = 4;
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(
        r.messages() > 200 && r.errors.total() == 0,
        "{}",
        r.to_text()
    );
    assert_eq!(r.connections.as_ref().map(|c| c.opened), Some(8));
}

/// Closed-loop UDP against echoloop: zero errors, nothing lost.
#[test]
fn udp_closed_loop_zero_errors() {
    let server = start(echoloop::Mode::Echo);
    let mut cfg = quick(server.udp);
    cfg.protocol = Protocol::Udp;
    cfg.pipeline = 2;
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(
        r.messages() > 200 && r.errors.total() == 0,
        "{}",
        r.to_text()
    );
}

/// Pipelined UDP against echoloop, batched (`sendmmsg`/`recvmmsg`, on Linux) and plain
/// (`--udp-batch 1`): both verify every datagram and lose none.
#[test]
fn udp_batched_and_plain_clients_agree() {
    let server = start(echoloop::Mode::Echo);
    for batch in [32, 1] {
        let mut cfg = quick(server.udp);
        cfg.protocol = Protocol::Udp;
        cfg.pipeline = 16;
        cfg.udp_batch = batch;
        let r = loadgen::run(&cfg).unwrap();
        assert!(r.passed(), "batch {batch}: {}", r.to_text());
        assert!(
            r.messages() > 1000 && r.errors.total() == 0,
            "batch {batch}: {}",
            r.to_text()
        );
    }
}

/// Open loop against echoloop meets the rate with zero errors.
#[test]
fn open_loop_rate_against_echoloop() {
    let server = start(echoloop::Mode::Echo);
    let mut cfg = quick(server.tcp);
    cfg.rate = Some(2000.0);
    cfg.duration = Duration::from_millis(1000);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(
        (1900.0..=2100.0).contains(&r.msgs_per_sec()),
        "{}",
        r.to_text()
    );
}

/// --framed against echoloop's framed mode, with 1 KiB frames: zero errors.
#[test]
fn framed_against_echoloop() {
    let server = start(echoloop::Mode::Framed);
    let mut cfg = quick(server.tcp);
    cfg.framed = true;
    cfg.size = 1024;
    cfg.pipeline = 4;
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(r.messages() > 200, "{}", r.to_text());
}

/// echoloop's `upper` mode changes letters: loadgen must call that corruption.
#[test]
fn upper_mode_is_corruption() {
    let server = start(echoloop::Mode::Upper);
    let mut cfg = quick(server.tcp);
    cfg.duration = Duration::from_millis(200);
    // A slow open loop: a few bad echoes are enough, the CPU stays free for timing tests.
    (cfg.connections, cfg.rate) = (1, Some(200.0));
    let r = loadgen::run(&cfg).unwrap();
    assert!(!r.passed());
    assert!(r.errors.corrupt > 0, "{}", r.to_text());
    // The report says what differed.
    let what = r.first_error.clone().unwrap_or_default();
    assert!(
        what.starts_with("conn ") && what.contains(" differs (expected 0x"),
        "{what}"
    );
}

/// echoloop's framed mode answers a non-framed loadgen with an error frame and hangs up:
/// the report quotes the server's message.
#[test]
fn framed_server_error_is_quoted() {
    let server = start(echoloop::Mode::Framed);
    let mut cfg = quick(server.tcp);
    cfg.connections = 1;
    let r = loadgen::run(&cfg).unwrap();
    assert!(!r.passed(), "{}", r.to_text());
    let what = r.first_error.clone().unwrap_or_default();
    assert!(
        what.contains("error: frame length ") && what.contains(" exceeds max-frame "),
        "{}",
        r.to_text()
    );
}
