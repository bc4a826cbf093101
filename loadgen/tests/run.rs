//! In-process runs against the tiny peers in `common`: what loadgen measures and detects.

mod common;

use std::time::{Duration, Instant};

use common::{closed_port, quick, tcp_peer, udp_peer, Behaviour, Scratch};
use loadgen::{ConnectFailure, Error, Protocol};

/// Closed loop over TCP with pipelining: messages flow, every echo verifies, all
/// connections open, and latencies are recorded.
#[test]
fn closed_loop_tcp_is_clean() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    cfg.pipeline = 8;
    cfg.threads = 2;
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(r.messages() > 200, "{}", r.to_text());
    assert_eq!(r.errors.total(), 0);
    let c = r.connections.as_ref().unwrap();
    assert_eq!((c.opened, c.failed, c.broken), (4, 0, 0));
    assert!(r.histogram.min() > 0);
}

/// Closed loop over UDP: datagrams verify, nothing is lost on loopback.
#[test]
fn closed_loop_udp_is_clean() {
    let peer = udp_peer(None);
    let mut cfg = quick(peer.addr);
    cfg.protocol = Protocol::Udp;
    cfg.pipeline = 4;
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(r.messages() > 200, "{}", r.to_text());
    assert_eq!(r.errors.total(), 0, "{}", r.to_text());
}

/// UDP loss is counted as lost (not a failure) and fails the run past --max-loss.
#[test]
fn udp_loss_is_counted_and_judged_by_max_loss() {
    let peer = udp_peer(Some(10));
    let mut cfg = quick(peer.addr);
    cfg.protocol = Protocol::Udp;
    cfg.udp_timeout = Duration::from_millis(50);
    cfg.pipeline = 4;
    let r = loadgen::run(&cfg).unwrap();
    let loss = r.errors.lost as f64 / r.sent as f64;
    assert!((0.05..0.15).contains(&loss), "loss {loss}: {}", r.to_text());
    assert!(r.passed(), "loss alone must not fail: {}", r.to_text());
    cfg.max_loss = Some(0.01);
    let r = loadgen::run(&cfg).unwrap();
    assert!(!r.passed());
    assert!(r.failures().iter().any(|f| f.contains("max-loss")));
}

/// A peer that flips one byte is caught: corrupt is counted and the run fails.
#[test]
fn corrupting_peer_is_detected() {
    let peer = tcp_peer(Behaviour::FlipByteAt(1000));
    let r = loadgen::run(&quick(peer.addr)).unwrap();
    assert_eq!(r.errors.corrupt, 1, "{}", r.to_text());
    assert_eq!(
        r.errors.missing + r.errors.duplicate + r.errors.reordered,
        0
    );
    assert!(!r.passed());
}

/// Open loop meets its rate: at 2000 msg/s the measured rate is within 5 %, and the
/// schedule was kept.
#[test]
fn open_loop_meets_rate() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    cfg.rate = Some(2000.0);
    cfg.duration = Duration::from_millis(1000);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    let rate = r.msgs_per_sec();
    assert!(
        (1900.0..=2100.0).contains(&rate),
        "rate {rate}: {}",
        r.to_text()
    );
    // "Late" means more than 1 ms behind schedule: on a shared CI machine a
    // descheduled thread makes some late without missing the rate, so this
    // only catches a generator that lost its schedule outright (a third late
    // was seen with four other builds running on two cores).
    let s = r.schedule.unwrap();
    assert!(s.late_sends * 2 < r.messages(), "{}", r.to_text());
}

/// Coordinated omission: a server that stops answering for 300 ms during an open-loop
/// run shows that stall in max and p99, because latency counts from the schedule.
#[test]
fn stall_shows_in_open_loop_tail() {
    let stall = Duration::from_millis(300);
    let peer = tcp_peer(Behaviour::Stall {
        after: Duration::from_millis(400),
        length: stall,
    });
    let mut cfg = quick(peer.addr);
    cfg.rate = Some(1000.0);
    cfg.duration = Duration::from_millis(1000);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    let max = Duration::from_nanos(r.histogram.max());
    let p99 = Duration::from_nanos(r.histogram.value_at_quantile(0.99));
    assert!(
        max >= Duration::from_millis(250),
        "max {max:?}: {}",
        r.to_text()
    );
    assert!(
        p99 >= Duration::from_millis(150),
        "p99 {p99:?}: {}",
        r.to_text()
    );
    // The schedule kept going through the stall: all messages were offered.
    assert!(r.msgs_per_sec() > 900.0, "{}", r.to_text());
}

/// --framed speaks u32 length + payload, verified against a real framed echo.
#[test]
fn framed_mode_round_trips() {
    let peer = tcp_peer(Behaviour::Framed);
    let mut cfg = quick(peer.addr);
    cfg.framed = true;
    cfg.size = 100;
    cfg.pipeline = 4;
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed() && r.messages() > 100, "{}", r.to_text());
    assert_eq!(r.wire_bytes, Some(104));
}

/// A server that hangs up owing echoes is noticed at once, even when the last echo and the
/// FIN arrive together in one readiness event (the short read must not end the read loop
/// then: the EOF behind the data would never raise another edge). The connection counts as
/// broken (it was up, then the peer closed it) with "server closed the connection", and
/// with no connection left the run ends long before `--duration`.
#[test]
fn hang_up_with_data_is_noticed_at_once() {
    let peer = tcp_peer(Behaviour::HangUpOwing {
        read: 128,
        echo: 64,
    });
    let mut cfg = quick(peer.addr);
    cfg.connections = 1;
    cfg.pipeline = 2;
    cfg.duration = Duration::from_secs(5);
    let started = Instant::now();
    let r = loadgen::run(&cfg).unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: {}",
        r.to_text()
    );
    let c = r.connections.as_ref().unwrap();
    assert_eq!((c.broken, c.failed), (1, 0), "{}", r.to_text());
    let why = r.conn_error.as_deref().unwrap_or_default();
    assert!(
        why.contains("server closed the connection with 1 messages owed"),
        "{why}: {}",
        r.to_text()
    );
    assert!(!r.passed());
}

/// A server that upper-cases (echoloop `--mode upper`) fails the run, and the report says
/// what differed: which connection and message, the first differing byte, and both values
/// (a lower-case letter expected, its upper case received).
#[test]
fn first_error_names_the_differing_byte() {
    let peer = tcp_peer(Behaviour::Upper);
    // One bad echo is enough: a slow open loop keeps the CPU free for the timing tests.
    let mut cfg = quick(peer.addr);
    (cfg.connections, cfg.rate) = (1, Some(200.0));
    (cfg.warmup, cfg.duration) = (Duration::ZERO, Duration::from_millis(200));
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.errors.corrupt > 0 && !r.passed(), "{}", r.to_text());
    let what = r.first_error.clone().unwrap_or_default();
    // "conn C seq S: byte B differs (expected 0xWW, got 0xGG)..."
    let (head, tail) = what.split_once(": byte ").expect(&what);
    assert!(
        head.starts_with("conn ") && head.contains(" seq "),
        "{what}"
    );
    let hex = |key: &str| {
        let at = tail.find(key).expect(&what) + key.len();
        u8::from_str_radix(&tail[at..at + 2], 16).expect(&what)
    };
    let (expected, got) = (hex("expected 0x"), hex("got 0x"));
    assert!(expected.is_ascii_lowercase(), "{what}");
    assert_eq!(got, expected.to_ascii_uppercase(), "{what}");
    assert!(tail.contains(" differs ("), "{what}");
    let text = r.to_text();
    assert!(text.contains(&format!("  first error  {what}\n")), "{text}");
}

/// A server that answers with a message of its own and hangs up (echoloop's framed mode
/// answering a non-framed client with an error frame): the first error quotes what it
/// sent, escaped, whether that is shorter than one message (left over at the EOF) or
/// longer (an echo-sized chunk of junk, quoted with what followed it).
#[test]
fn first_error_quotes_a_server_message() {
    const REPLY: &[u8] = b"\0\0\0\x2aerror: frame length 2618 exceeds max-frame 1048576";
    let peer = tcp_peer(Behaviour::Reply(REPLY));
    for (size, needle) in [(1024, "not an echo, then closed"), (16, "; received ")] {
        let mut cfg = quick(peer.addr);
        (cfg.connections, cfg.size) = (1, size);
        let r = loadgen::run(&cfg).unwrap();
        assert!(!r.passed(), "{}", r.to_text());
        let what = r.first_error.clone().unwrap_or_default();
        assert!(what.starts_with("conn 0 seq 0: "), "{size}: {what}");
        assert!(what.contains(needle), "{size}: {what}");
        let quoted = r#""\x00\x00\x00*error: frame length 2618 exceeds max-frame 1048576""#;
        assert!(what.ends_with(quoted), "{size}: {what}");
        let why = r.conn_error.as_deref().unwrap_or_default();
        assert!(why.contains("server closed the connection"), "{why}");
        assert!(r.to_text().contains("  conn error   server closed"));
    }
}

/// Library settings the command line cannot reach are not validated against a cap:
/// `Duration::MAX` for the connect and drain timeouts means "never", and the deadlines
/// built from them saturate instead of overflowing. A clean run still ends as soon as
/// nothing is owed.
#[test]
fn endless_library_timeouts_saturate() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    cfg.connect_timeout = Duration::MAX;
    cfg.drain_timeout = Duration::MAX;
    let started = Instant::now();
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A refused target is a clear error, quickly, not a hang.
#[test]
fn refused_target_is_an_error() {
    let mut cfg = quick(closed_port());
    cfg.duration = Duration::from_secs(5);
    let started = Instant::now();
    let err = loadgen::run(&cfg).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let refused = ConnectFailure::Os {
        kind: std::io::ErrorKind::ConnectionRefused,
        text: "Connection refused".into(),
    };
    assert!(
        matches!(&err, Error::Connect { failed: 4, reason, .. } if *reason == refused),
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(err.exit_code(), 1);
}

/// Ramp-up honours --connect-rate: 5 connections at 10/s spread over ~400 ms.
#[test]
fn ramp_up_honours_connect_rate() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    cfg.connections = 5;
    cfg.connect_rate = Some(10.0);
    cfg.warmup = Duration::from_millis(500);
    cfg.duration = Duration::from_millis(200);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    let accepted = peer.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 5);
    let span = accepted[4].0 - accepted[0].0;
    assert!(span >= Duration::from_millis(350), "span {span:?}");
}

/// Open loop with a slow ramp (--connect-rate): the schedule starts when the last
/// connection is up, so no message comes due on a connection still connecting, none is
/// skipped, and no backlog goes out as a burst that would be charged to the server as
/// latency; the measured window gets exactly the asked rate.
#[test]
fn open_loop_ramp_starts_at_full_strength() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    (cfg.rate, cfg.connect_rate) = (Some(1000.0), Some(10.0));
    (cfg.warmup, cfg.duration) = (Duration::ZERO, Duration::from_millis(500));
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    let s = r.schedule.unwrap();
    assert_eq!((s.not_sent, s.not_sent_measured), (0, 0), "{}", r.to_text());
    let p99 = Duration::from_nanos(r.histogram.value_at_quantile(0.99));
    assert!(
        p99 < Duration::from_millis(200),
        "a burst was charged: {}",
        r.to_text()
    );
    assert!((490..=510).contains(&r.messages()), "{}", r.to_text());
    let phase = r.connections.as_ref().unwrap().phase;
    assert!(
        phase >= Duration::from_millis(290),
        "ramp of 4 at 10/s: {phase:?}"
    );
}

/// --bind sets the source address of every connection.
#[test]
fn bind_sets_source_address() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    cfg.bind = vec!["127.0.0.1".parse().unwrap()];
    cfg.duration = Duration::from_millis(200);
    assert!(loadgen::run(&cfg).unwrap().passed());
    let accepted = peer.accepted.lock().unwrap();
    assert!(accepted.iter().all(|(_, from)| from.ip() == cfg.bind[0]));
}

/// Merging the interval logs of two runs gives exactly the sum of their histograms.
#[test]
fn merge_equals_sum_of_runs() {
    let tmp = Scratch::new();
    let peer = tcp_peer(Behaviour::Echo);
    let (a, b) = (tmp.path("a.hlog"), tmp.path("b.hlog"));
    let mut cfg = quick(peer.addr);
    cfg.duration = Duration::from_millis(1300);
    cfg.hlog = Some(a.clone());
    let ra = loadgen::run(&cfg).unwrap();
    cfg.duration = Duration::from_millis(300);
    cfg.hlog = Some(b.clone());
    let rb = loadgen::run(&cfg).unwrap();
    let merged = loadgen::merge::merge_files(&[a.clone(), b]).unwrap();
    let mut sum = ra.histogram.clone();
    sum.add(&rb.histogram).unwrap();
    assert_eq!(merged.messages(), ra.messages() + rb.messages());
    for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(
            merged.histogram.value_at_quantile(q),
            sum.value_at_quantile(q),
            "q {q}"
        );
    }
    assert_eq!(merged.histogram.max(), sum.max());
    assert_eq!(merged.wire_bytes, Some(64));
    // Two runs one after the other: ~1.6 s of intervals in all (plus drains).
    assert!(
        merged.duration >= Duration::from_millis(1500),
        "{:?}",
        merged.duration
    );
    // The first log has one line per second: two intervals for 1.3 s.
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
            .count(),
        2
    );
}

/// Warm-up is not recorded: a run whose whole traffic is warm-up measures only the
/// short measured window.
#[test]
fn warmup_is_excluded() {
    let peer = tcp_peer(Behaviour::Echo);
    let mut cfg = quick(peer.addr);
    cfg.rate = Some(1000.0);
    cfg.warmup = Duration::from_millis(600);
    cfg.duration = Duration::from_millis(200);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    // 0.8 s of traffic was sent, 0.2 s of it measured: about 200 messages.
    assert!(r.sent >= 700, "sent {}", r.sent);
    assert!((190..=210).contains(&r.messages()), "{}", r.to_text());
}

/// Open loop over UDP split over two threads: the schedule is shared exactly (every
/// message due in the measured time is measured) and nothing is lost on loopback.
#[test]
fn open_loop_udp_two_threads() {
    let peer = udp_peer(None);
    let mut cfg = quick(peer.addr);
    cfg.protocol = Protocol::Udp;
    cfg.threads = 2;
    cfg.connections = 5;
    cfg.rate = Some(2000.0);
    cfg.duration = Duration::from_millis(500);
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert!((950..=1050).contains(&r.messages()), "{}", r.to_text());
    assert_eq!(r.errors.lost, 0, "{}", r.to_text());
}
