//! echo, upper and framed over TCP, every mode over UDP, and the failures a
//! user meets first: nothing listening, a silent server, a cut reply, bad
//! usage.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use echoloop::{Config, Mode};

use super::common::{start, test_config, Rng};
use super::run;

fn mode(mode: Mode) -> Config {
    Config {
        mode,
        ..test_config()
    }
}

/// echo: every line comes back whole, including a 1 MiB line (many reads,
/// sent in pieces), bytes that are not UTF-8, and a last line without its
/// newline.
#[test]
fn echo_lines_come_back_whole() {
    let server = start(mode(Mode::Echo));
    let mut input = b"hello\n\xff\xfe not utf-8\n".to_vec();
    let mut long: Vec<u8> = Rng::new(13)
        .bytes(1024 * 1024)
        .into_iter()
        .map(|b| if b == b'\n' { b'.' } else { b })
        .collect();
    long.push(b'\n');
    input.extend_from_slice(&long);
    input.extend_from_slice(b"no newline at the end");
    let out = run(&[&server.tcp.to_string()], &input);
    out.assert_code(0);
    assert!(out.stdout == input, "stdout differs from the input");
    server.wait_stats("bytes counted", |s| s.bytes_in == input.len() as u64);
}

/// upper: ASCII letters upper-cased, UTF-8 untouched, over TCP and UDP.
#[test]
fn upper_over_tcp_and_udp() {
    let server = start(mode(Mode::Upper));
    let tcp = server.tcp.to_string();
    let out = run(&["--mode", "upper", &tcp], "hello, wörld\nß z\n".as_bytes());
    assert_eq!(out.assert_code(0).stdout(), "HELLO, WöRLD\nß Z\n");
    let udp = server.udp.unwrap().to_string();
    let out = run(
        &["--udp", "--mode", "upper", &udp],
        "hello, wörld\n".as_bytes(),
    );
    assert_eq!(out.assert_code(0).stdout(), "HELLO, WöRLD\n");
}

/// framed: each line travels as one frame (4-byte length + payload) and is
/// printed from the echoed frame; an empty line is an empty frame.
#[test]
fn framed_lines_travel_as_frames() {
    let server = start(mode(Mode::Framed));
    let input = "first\n\nthird, a little longer\n";
    let out = run(
        &["--mode", "framed", &server.tcp.to_string()],
        input.as_bytes(),
    );
    assert_eq!(out.assert_code(0).stdout(), input);
    // Three frames: 4 header bytes each plus the payloads, no newlines.
    let wire = 3 * 4 + "first".len() + "third, a little longer".len();
    server.wait_stats("frames counted", |s| s.bytes_in == wire as u64);
}

/// framed: a frame over the server's --max-frame is answered with an error
/// frame and a close; the client prints the frames before it and reports
/// the server's message, exit 1.
#[test]
fn framed_error_frame_is_reported() {
    let server = start(Config {
        max_frame: 8,
        ..mode(Mode::Framed)
    });
    let input = "ok\nthis line is too long\nnever sent\n";
    let out = run(
        &["--mode", "framed", &server.tcp.to_string()],
        input.as_bytes(),
    );
    out.assert_code(1)
        .assert_stderr("the server answered with an error: frame length 21 exceeds max-frame 8");
    assert_eq!(out.stdout(), "ok\n");
}

/// UDP: one datagram per line (the newline not sent), the empty line
/// included, each answered and printed.
#[test]
fn udp_one_datagram_per_line() {
    let server = start(mode(Mode::Echo));
    let udp = server.udp.unwrap().to_string();
    let out = run(&["--udp", &udp], b"one\n\nthree\n");
    assert_eq!(out.assert_code(0).stdout(), "one\n\nthree\n");
    let stats = server.wait_stats("datagrams", |s| s.datagrams_out == 3);
    assert_eq!(stats.datagrams_in, 3);
}

/// Host names and IPv6 work over TCP and UDP: `localhost:PORT` (every
/// address the name resolves to is tried, as it may be ::1 as well as
/// 127.0.0.1) and `[::1]:PORT` where the machine has IPv6 loopback.
#[test]
fn localhost_and_ipv6_addresses() {
    let server = start(mode(Mode::Echo));
    let tcp = format!("localhost:{}", server.tcp.port());
    assert_eq!(
        run(&[&tcp], b"by name\n").assert_code(0).stdout(),
        "by name\n"
    );
    let udp = format!("localhost:{}", server.udp.unwrap().port());
    let out = run(&["--udp", &udp], b"by name\n");
    assert_eq!(out.assert_code(0).stdout(), "by name\n");

    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if TcpListener::bind(v6).is_err() {
        eprintln!("skipping the IPv6 half: no IPv6 loopback on this machine");
        return;
    }
    let server = start(Config {
        listen: v6,
        udp: Some(v6),
        ..mode(Mode::Echo)
    });
    let out = run(&[&server.tcp.to_string()], b"over v6\n");
    assert_eq!(out.assert_code(0).stdout(), "over v6\n");
    let out = run(&["--udp", &server.udp.unwrap().to_string()], b"over v6\n");
    assert_eq!(out.assert_code(0).stdout(), "over v6\n");
}

/// A line too long for one datagram is reported and skipped, not cut or
/// split; the next line still goes; exit 1.
#[test]
fn udp_line_too_long_for_a_datagram_is_skipped() {
    let server = start(mode(Mode::Echo));
    let udp = server.udp.unwrap().to_string();
    let mut input = vec![b'x'; 65_508];
    input.extend_from_slice(b"\nfits\n");
    let out = run(&["--udp", &udp], &input);
    out.assert_code(1)
        .assert_stderr("line 1: 65508 bytes do not fit in one datagram (at most 65507); not sent")
        .assert_stderr("1 lines were too long for one datagram");
    assert_eq!(out.stdout(), "fits\n");
    assert_eq!(server.stats().datagrams_in, 1);
}

/// A lost datagram (here: a peer that never answers) is reported per line
/// after --timeout, the client carries on with the next line, and the exit
/// status says how many were lost.
#[test]
fn udp_loss_is_reported_and_skipped() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = run(&["--udp", "--timeout", "0.3", &addr], b"a\nb\n");
    out.assert_code(1)
        .assert_stderr("line 1: no reply within 0.3 s")
        .assert_stderr("line 2: no reply within 0.3 s")
        .assert_stderr("2 of 2 datagrams got no reply");
    assert!(out.stdout.is_empty());
    assert!(started.elapsed() < Duration::from_secs(20));
    // Both lines really were sent, one datagram each.
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    for want in [&b"a"[..], b"b"] {
        let n = silent.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], want);
    }
}

/// The classic UDP client bug: a late reply to line 1, arriving while the
/// client waits for line 2's, must not be taken for line 2's answer. The peer
/// here answers line 1 only after line 2 arrived (so after the client gave
/// up on it), then answers line 2.
#[test]
fn udp_late_reply_is_not_taken_for_the_next() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let answering = thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n1, from) = peer.recv_from(&mut buf).unwrap();
        let first = buf[..n1].to_vec();
        let (n2, _) = peer.recv_from(&mut buf).unwrap();
        peer.send_to(&first, from).unwrap();
        peer.send_to(&buf[..n2], from).unwrap();
    });
    let out = run(&["--udp", "--timeout", "0.5", &addr], b"first\nsecond\n");
    answering.join().unwrap();
    out.assert_code(1)
        .assert_stderr("line 1: no reply")
        .assert_stderr("line 2: ignored a 5-byte datagram")
        .assert_stderr("1 of 2 datagrams got no reply");
    assert_eq!(out.stdout(), "second\n");
}

/// Nothing listening on a UDP port: the ICMP answer is reported as such.
#[test]
fn udp_port_unreachable_is_reported() {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = run(&["--udp", &addr], b"anyone?\n");
    out.assert_code(1)
        .assert_stderr(&format!("nothing is listening on UDP {addr}"));
}

/// Nothing listening on a TCP port: one clear line and exit 1.
#[test]
fn refused_connection_is_reported() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = run(&[&addr], b"hello\n");
    out.assert_code(1)
        .assert_stderr(&format!("cannot connect to {addr}: Connection refused"));
}

/// A server that accepts but never answers: the read timeout ends the wait
/// and says how much of the reply came.
#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = run(&["--timeout", "0.3", &addr], b"hello\n");
    out.assert_code(1)
        .assert_stderr("no reply within 0.3 s: got 0 of the 6 bytes of the echoed line");
    drop(listener);
}

/// A server that closes halfway through a reply: reported as a cut, with
/// how far it got, and the partial reply is not printed as an answer.
#[test]
fn reply_cut_short_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let half_echo = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = Vec::new();
        BufReader::new(&stream)
            .read_until(b'\n', &mut line)
            .unwrap();
        (&stream).write_all(&line[..3]).unwrap();
    });
    let out = run(&[&addr], b"hello\n");
    half_echo.join().unwrap();
    out.assert_code(1).assert_stderr(
        "the server closed the connection after 3 of the 6 bytes of the echoed line",
    );
    assert!(out.stdout.is_empty());
}

/// TCP is a stream: a reply arriving in two pieces (here a peer that sends
/// `he`, pauses, then `llo\n`) is printed whole, not as the first read.
#[test]
fn reply_in_pieces_is_reassembled() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let slow_echo = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(&stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap() > 0 {
            (&stream).write_all(&line[..2]).unwrap();
            // Not synchronisation: it makes the two pieces separate reads.
            thread::sleep(Duration::from_millis(50));
            (&stream).write_all(&line[2..]).unwrap();
            line.clear();
        }
    });
    let out = run(&[&addr], b"hello\nworld\n");
    slow_echo.join().unwrap();
    assert_eq!(out.assert_code(0).stdout(), "hello\nworld\n");
}

/// Bad usage exits 2 with a message, before any traffic.
#[test]
fn bad_usage_exits_2() {
    for args in [
        &["--mode", "nope", "127.0.0.1:1"][..],
        &["--mode", "files", "127.0.0.1:1"],
        &["127.0.0.1:1", "stray-name"],
        &["--timeout", "0", "127.0.0.1:1"],
        &["--mode", "files", "127.0.0.1:1", "a\nb"],
        &["--mode", "files", "127.0.0.1:1", ".."],
        &[
            "--mode",
            "files",
            "-o",
            "/nonexistent/dir",
            "127.0.0.1:1",
            "x",
        ],
        &[],
    ] {
        let out = run(args, b"");
        out.assert_code(2);
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}
