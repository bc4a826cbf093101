//! A relay that damages the echo stream once (`common::proxy`): each fault is counted once,
//! and the stream verifies again after it.

mod common;

use std::time::Duration;

use common::proxy::{proxy, Fault};
use common::{quick, tcp_peer, Behaviour};
use loadgen::payload::Codec;

/// One connection, 8 messages in flight, through a relay that applies `fault`.
fn run_through(fault: Fault) -> loadgen::Report {
    let peer = tcp_peer(Behaviour::Echo);
    let relay = proxy(peer.addr, fault);
    let mut cfg = quick(relay.addr);
    (cfg.connections, cfg.pipeline) = (1, 8);
    cfg.duration = Duration::from_millis(300);
    loadgen::run(&cfg).unwrap()
}

/// Another connection's echo inserted between two messages: one corrupt message, no
/// duplicate (the real echo that follows is in step), nothing missing.
#[test]
fn foreign_echo_is_one_corrupt() {
    let mut foreign = Vec::new();
    Codec::new(64, false).encode_into(77, 0, &mut foreign);
    let r = run_through(Fault::Insert {
        at: 10 * 64,
        bytes: foreign,
    });
    let e = r.errors;
    assert_eq!(
        (e.corrupt, e.duplicate, e.missing, e.reordered),
        (1, 0, 0, 0),
        "{}",
        r.to_text()
    );
    let what = r.first_error.clone().unwrap_or_default();
    assert_eq!(what, "conn 0 seq 10: got the echo of conn 77 seq 0");
    assert!(r.messages() > 100, "{}", r.to_text());
    assert!(!r.passed());
}

/// Ten bytes dropped inside a message: a small corrupt count (that message and the one it
/// cut into), then the stream finds the next header and the rest verify clean.
#[test]
fn dropped_bytes_resync() {
    let r = run_through(Fault::Drop {
        at: 5 * 64 + 20,
        len: 10,
    });
    let e = r.errors;
    assert_eq!(
        (e.corrupt, e.duplicate, e.missing, e.reordered),
        (2, 0, 0, 0),
        "{}",
        r.to_text()
    );
    assert!(r.messages() > 100, "{}", r.to_text());
    assert!(r
        .first_error
        .clone()
        .unwrap_or_default()
        .starts_with("conn 0 seq 5: byte "));
    assert!(!r.passed());
}
