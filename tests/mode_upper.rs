//! `--mode upper` over real sockets: ASCII letters upper-cased, every other
//! byte (UTF-8 included) unchanged, on TCP and per UDP datagram.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};

use common::{read_n, send_all_then_fin, start, test_config, IO_TIMEOUT};
use echoloop::{Config, Mode};

fn upper_config() -> Config {
    Config {
        mode: Mode::Upper,
        ..test_config()
    }
}

/// What the server must answer: only `a`..=`z` change.
fn expected(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|&b| if b.is_ascii_lowercase() { b - 32 } else { b })
        .collect()
}

/// Every byte value once, in order.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// Sends one datagram from a fresh socket and returns the reply.
fn udp_roundtrip(server: SocketAddr, data: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.send_to(data, server).unwrap();
    let mut buf = vec![0; 65_536];
    let (n, from) = sock.recv_from(&mut buf).expect("udp reply");
    assert_eq!(from, server, "the reply comes from the server's socket");
    buf.truncate(n);
    buf
}

/// TCP: lowercase ASCII comes back upper-cased, request by request, and
/// the whole stream is answered byte for byte before the server's FIN.
#[test]
fn tcp_upper_cases_ascii_letters() {
    let server = start(upper_config());
    let mut s = server.connect();
    s.write_all(b"hello, world\n").unwrap();
    assert_eq!(read_n(&mut s, 13), b"HELLO, WORLD\n");
    s.write_all(b"Mixed Case 123 [abc] {xyz}\n").unwrap();
    assert_eq!(read_n(&mut s, 27), b"MIXED CASE 123 [ABC] {XYZ}\n");
    let tail = b"the quick brown fox jumps over the lazy dog";
    assert_eq!(send_all_then_fin(&mut s, tail), expected(tail));
    let stats = server.stop();
    assert_eq!(stats.bytes_in, stats.bytes_out);
}

/// UDP: each datagram is answered with its upper-cased copy, and datagrams
/// stay separate (no merging, no state carried between them).
#[test]
fn udp_upper_cases_each_datagram() {
    let server = start(upper_config());
    let addr = server.udp.expect("udp enabled");
    assert_eq!(udp_roundtrip(addr, b"hello, udp"), b"HELLO, UDP");
    assert_eq!(udp_roundtrip(addr, b"a"), b"A");
    assert_eq!(udp_roundtrip(addr, b"Z9z"), b"Z9Z");
    let stats = server.wait_stats("3 datagrams answered", |s| s.datagrams_out >= 3);
    assert_eq!(stats.datagrams_in, 3);
    assert_eq!(stats.datagrams_dropped, 0);
}

/// Non-ASCII bytes pass through untouched on TCP and UDP: UTF-8 text keeps
/// its multi-byte characters (`ö` stays `ö`, not `Ö`), and of all 256 byte
/// values only `a`..=`z` change.
#[test]
fn non_ascii_bytes_are_left_alone() {
    let server = start(upper_config());
    let text = "hello, wörld ß é 日本".as_bytes();
    let want_text = "HELLO, WöRLD ß é 日本".as_bytes();
    assert_eq!(expected(text), want_text);

    let mut s = server.connect();
    s.write_all(text).unwrap();
    assert_eq!(read_n(&mut s, text.len()), want_text);
    let bytes = all_bytes();
    s.write_all(&bytes).unwrap();
    let got = read_n(&mut s, 256);
    for (b, (&sent, &back)) in bytes.iter().zip(&got).enumerate() {
        let want = if sent.is_ascii_lowercase() {
            sent.to_ascii_uppercase()
        } else {
            sent
        };
        assert_eq!(back, want, "byte value {b} came back as {back}");
    }

    let udp = server.udp.expect("udp enabled");
    assert_eq!(udp_roundtrip(udp, text), want_text);
    assert_eq!(udp_roundtrip(udp, &bytes), expected(&bytes));
}
