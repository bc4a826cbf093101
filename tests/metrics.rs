//! `--metrics`: the HTTP endpoint served from the reactor's loop, over real
//! sockets on loopback. (`tests/prometheus.rs` checks the output with the
//! real Prometheus tools.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{self, sample};
use common::{connect, pattern_writer, start, test_config, wait_until, Running};
use echoloop::{Config, Server};

fn metrics_config() -> Config {
    Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..test_config()
    }
}

fn metrics_addr(server: &Running) -> SocketAddr {
    server.metrics.expect("metrics endpoint bound")
}

/// Every counter, gauge and histogram is in a scrape, with values that
/// match what the clients did.
#[test]
fn a_scrape_reports_connections_traffic_and_the_loop() {
    let server = start(metrics_config());
    let addr = metrics_addr(&server);
    for _ in 0..3 {
        let mut c = server.connect();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
    }
    server.wait_stats("3 connections closed", |s| s.closed == 3);

    let response = http::get(addr, "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(response.header("connection"), Some("close"));
    let text = response.body;
    let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name} in\n{text}"));
    assert_eq!(value("echoloop_accepted_total"), 3.0);
    assert_eq!(value("echoloop_closed_total"), 3.0);
    assert_eq!(value("echoloop_bytes_in_total"), 15.0);
    assert_eq!(value("echoloop_bytes_out_total"), 15.0);
    assert_eq!(value("echoloop_active"), 0.0);
    assert_eq!(value("echoloop_pending_bytes"), 0.0);
    assert_eq!(value("echoloop_paused_conns"), 0.0);
    assert!(text.contains("# TYPE echoloop_accepted_total counter\n"));
    assert!(text.contains("# TYPE echoloop_active gauge\n"));
    // Every logged counter (`name=value`, as the log line has them) is
    // exported (figures kept in microseconds, in seconds).
    let logged = server.stats().to_string();
    for field in logged.split(' ') {
        let field = field.split('=').next().unwrap();
        let name = match field.strip_suffix("_us") {
            Some(base) => format!("{base}_seconds"),
            None => field.to_string(),
        };
        assert!(text.contains(&format!("\necholoop_{name}")), "{name}");
    }
    // The loop turned at least once per connection; each histogram's +Inf
    // bucket is its count.
    for h in ["echoloop_poll_events", "echoloop_turn_duration_seconds"] {
        let count = value(&format!("{h}_count"));
        assert!(count >= 3.0, "{h}_count {count}");
        let inf = format!("{h}_bucket{{le=\"+Inf\"}} {count}\n");
        assert!(text.contains(&inf), "{inf} in\n{text}");
    }
    assert!(
        value("echoloop_poll_events_sum") >= 6.0,
        "accept + read per connection"
    );
    server.stop();
}

/// The gauges follow a client that stops reading: its output piles up to
/// max-pending, reading pauses, and both gauges return to 0 once it leaves.
#[test]
fn gauges_show_pending_output_and_a_paused_connection() {
    let max_pending = 64 * 1024;
    let server = start(Config {
        max_pending,
        ..metrics_config()
    });
    let addr = metrics_addr(&server);
    let stream = connect(server.tcp);
    // Sends far more than the kernel buffers and max-pending hold, reading
    // nothing back.
    let (_written, writer) = pattern_writer(&stream, 64 * 1024 * 1024);
    let mut text = String::new();
    wait_until("a paused connection in the scrape", || {
        text = http::scrape(addr);
        sample(&text, "echoloop_paused_conns") == Some(1.0)
    });
    let pending = sample(&text, "echoloop_pending_bytes").unwrap();
    assert!(pending >= max_pending as f64, "pending {pending}\n{text}");
    assert!(sample(&text, "echoloop_backpressure_pauses_total").unwrap() >= 1.0);

    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);
    writer.join().unwrap();
    server.wait_stats("the connection closed", |s| s.active == 0);
    let text = http::scrape(addr);
    assert_eq!(sample(&text, "echoloop_paused_conns"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "echoloop_pending_bytes"), Some(0.0), "{text}");
    server.stop();
}

/// Only `GET /metrics` (and `HEAD`) is served: another path is 404, another
/// method 405, anything malformed or oversized 400; the server closes the
/// connection after every response.
#[test]
fn anything_but_get_metrics_is_refused() {
    let server = start(metrics_config());
    let addr = metrics_addr(&server);
    assert_eq!(http::get(addr, "/").status, 404);
    assert_eq!(http::get(addr, "/metrics/x").status, 404);
    assert_eq!(http::get(addr, "/metrics?name=x").status, 200);
    let post = http::raw(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    for bad in [
        &b"hello\r\n\r\n"[..],
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n", // then EOF: incomplete
        b"\x00\xff\xfe\r\n\r\n",
    ] {
        let r = http::raw(addr, bad);
        assert_eq!(r.status, 400, "{:?} -> {r:?}", String::from_utf8_lossy(bad));
    }
    // A head that never ends is cut at 8 KiB: answered 400, not buffered on.
    let mut endless = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    endless.resize(64 * 1024, b'a');
    let r = http::raw(addr, &endless);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("too large"), "{r:?}");
    // HEAD: the headers of a scrape, no body.
    let head = http::raw_bytes(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    // The echo service is untouched by all of this.
    assert_eq!(server.stats().accepted, 0);
    server.stop();
}

/// A client that connects and says nothing holds a slot for at most the
/// scrape timeout (5 s), and does not delay anyone else meanwhile.
#[test]
fn a_silent_client_is_closed_after_the_timeout_without_blocking_scrapes() {
    let server = start(metrics_config());
    let addr = metrics_addr(&server);
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert!(http::scrape(addr).contains("echoloop_accepted_total"));
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or_else(|e| {
        panic!(
            "expected a close by the server, got {e} ({:?}) after {:?}",
            e.kind(),
            started.elapsed()
        )
    });
    let waited = started.elapsed();
    assert_eq!(n, 0, "no response to no request");
    assert!(
        waited >= Duration::from_millis(4500),
        "closed after {waited:?}, before the 5 s timeout"
    );
    server.stop();
}

/// At most 8 scrape connections are open at once; a ninth waits in the
/// backlog and is served as soon as a slot frees (no new readiness edge
/// announces it, so the endpoint must accept again by itself).
#[test]
fn a_scraper_past_the_slot_limit_is_served_when_one_frees() {
    let server = start(metrics_config());
    let addr = metrics_addr(&server);
    let mut silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // All 8 are accepted (a scrape through a free slot would prove nothing:
    // wait until the server holds them by checking a 9th is not answered).
    let mut ninth = TcpStream::connect(addr).unwrap();
    ninth.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut first = [0u8; 1];
    let early = ninth.read(&mut first);
    assert!(
        early.is_err(),
        "answered while all slots were taken: {early:?}"
    );
    // One silent client leaves: its slot goes to the ninth.
    drop(silent.pop());
    ninth.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut response = Vec::new();
    ninth.read_to_end(&mut response).unwrap();
    let response = http::parse(&response);
    assert_eq!(response.status, 200);
    drop(silent);
    server.stop();
}

/// With several reactors one endpoint reports them all: every connection is
/// counted whichever reactor the kernel gave it to.
#[test]
fn several_reactors_report_the_sum() {
    let server = start(Config {
        reactors: 2,
        ..metrics_config()
    });
    let addr = metrics_addr(&server);
    for _ in 0..12 {
        let mut c = server.connect();
        c.write_all(b"x").unwrap();
        c.read_exact(&mut [0u8; 1]).unwrap();
    }
    server.wait_stats("12 closed", |s| s.closed == 12);
    let text = http::scrape(addr);
    assert_eq!(sample(&text, "echoloop_accepted_total"), Some(12.0));
    assert_eq!(sample(&text, "echoloop_closed_total"), Some(12.0));
    server.stop();
}

/// The default server opens no metrics listener.
#[test]
fn metrics_are_off_by_default() {
    let server = Server::bind(test_config()).unwrap();
    assert_eq!(server.metrics_addr(), None);
    assert_eq!(Config::default().metrics, None);
}

/// `--metrics` on an address in use fails to start (exit 1), naming it.
#[test]
fn metrics_address_in_use_exits_1_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(["--listen", "127.0.0.1:0", "--metrics", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--metrics") && stderr.contains(&addr),
        "{stderr}"
    );
}

/// The binary prints the metrics address on its start-up line, so a script
/// can find a port-0 endpoint.
#[test]
fn the_start_up_line_names_the_metrics_address() {
    let mut child = common::spawn_binary(&["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let line = child.wait_log("metrics address in the log", "metrics on http://");
    let url = line.split("metrics on http://").nth(1).unwrap();
    let addr: SocketAddr = url.trim_end_matches("/metrics").trim().parse().unwrap();
    assert!(http::scrape(addr).contains("echoloop_accepted_total 0\n"));
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit().success());
}

/// `--help` explains `--metrics` and `--check`.
#[test]
fn help_explains_the_metrics_and_check_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--metrics <ADDR>") && help.contains("Prometheus"),
        "{help}"
    );
    assert!(
        help.contains("--check") && help.contains("without opening any"),
        "{help}"
    );
}

/// The endpoint listens on IPv6 as well.
#[test]
fn metrics_over_ipv6() {
    let server = start(Config {
        metrics: Some("[::1]:0".parse().unwrap()),
        ..test_config()
    });
    let addr = metrics_addr(&server);
    assert!(addr.is_ipv6());
    assert!(http::scrape(addr).contains("echoloop_accepted_total 0\n"));
    server.stop();
}
