//! TCP echo is exact: every byte back once, in order, for any write pattern,
//! on many connections at once, over IPv4 and IPv6 loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;

use common::{connect, read_n, send_all_then_fin, start, test_config, Rng};

/// 256 connections at once, each writing random data in random-sized chunks
/// while a second thread per connection reads: every stream comes back
/// byte-for-byte, and the counters agree with what was sent.
#[test]
fn many_concurrent_connections_echo_random_chunks_exactly() {
    const CONNS: usize = 256;
    let server = start(test_config());
    let addr = server.tcp;

    // Open every connection before any traffic, so they are really concurrent.
    let streams: Vec<TcpStream> = (0..CONNS).map(|_| connect(addr)).collect();
    server.wait_stats("all connections accepted", |s| s.active == CONNS as u64);

    let mut total = 0u64;
    let workers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let mut rng = Rng::new(0x5eed + i as u64);
            let len = rng.range(1, 96 * 1024);
            let data = rng.bytes(len);
            total += len as u64;
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || echo_in_random_chunks(stream, &data, &mut rng))
                .unwrap()
        })
        .collect();
    for w in workers {
        w.join().expect("connection worker panicked");
    }

    let stats = server.stop();
    assert_eq!(stats.accepted, CONNS as u64);
    assert_eq!(stats.bytes_in, total);
    assert_eq!(stats.bytes_out, total);
    assert_eq!(stats.active, 0);
}

/// Writes `data` in random chunks from a writer thread, reads it back here,
/// and checks it.
fn echo_in_random_chunks(stream: TcpStream, data: &[u8], rng: &mut Rng) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = stream;
    let chunks: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let n = rng.range(1, 9000).min(data.len() - at);
            out.push(data[at..at + n].to_vec());
            at += n;
        }
        out
    };
    let expected = data.len();
    let sender = thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            for c in chunks {
                writer.write_all(&c).unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        })
        .unwrap();
    let back = read_n(&mut reader, expected);
    assert!(back == data, "echoed bytes differ");
    // After our FIN the server flushes and closes: EOF, nothing extra.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "{} unexpected bytes after echo",
        rest.len()
    );
    sender.join().unwrap();
}

/// One byte at a time, with a read after each: the smallest message works and
/// nothing is held back waiting for more.
#[test]
fn single_bytes_come_back_one_at_a_time() {
    let server = start(test_config());
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    for b in 0..=255u8 {
        s.write_all(&[b]).unwrap();
        assert_eq!(read_n(&mut s, 1), [b]);
    }
}

/// A large stream (48 MiB) written and read concurrently on one connection
/// arrives intact: exercises short writes, queued output and backpressure
/// on the server with a client that does read.
#[test]
fn large_stream_echoes_exactly() {
    let server = start(test_config());
    let s = server.connect();
    let mut rng = Rng::new(7);
    let block = rng.bytes(1 << 20);
    const BLOCKS: usize = 48;
    let mut writer = s.try_clone().unwrap();
    let block2 = block.clone();
    let sender = thread::spawn(move || {
        for _ in 0..BLOCKS {
            writer.write_all(&block2).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = s;
    let mut buf = vec![0u8; block.len()];
    for i in 0..BLOCKS {
        reader.read_exact(&mut buf).unwrap();
        assert!(buf == block, "block {i} differs");
    }
    assert_eq!(common::read_to_end(&mut reader).len(), 0);
    sender.join().unwrap();
}

/// Half-close: data and FIN arrive together; the server still echoes all of
/// it, then closes its side. (Regression: the FIN seen in the same read batch
/// must not lose the data before it.)
#[test]
fn half_close_flushes_everything_then_closes() {
    let server = start(test_config());
    for size in [0usize, 1, 100, 70_000, 1 << 20] {
        let mut s = server.connect();
        let data = Rng::new(size as u64 + 1).bytes(size);
        let back = send_all_then_fin(&mut s, &data);
        assert_eq!(back.len(), data.len(), "size {size}");
        assert!(back == data, "size {size}: bytes differ");
    }
    let stats = server.wait_stats("all closed", |s| s.active == 0);
    assert_eq!(stats.closed, 5);
}

/// A client that resets its connection (close with unread data pending)
/// is closed quietly and the server keeps serving others.
#[test]
fn reset_by_peer_closes_quietly() {
    let server = start(test_config());
    {
        let mut s = server.connect();
        s.write_all(&[1u8; 200_000]).unwrap();
        // Dropping with unread echo in our receive queue makes the kernel
        // send RST instead of FIN.
    }
    server.wait_stats("reset connection closed", |s| s.closed == 1);
    let mut s = server.connect();
    assert_eq!(send_all_then_fin(&mut s, b"still here"), b"still here");
}

/// IPv6 loopback works for TCP and UDP.
#[test]
fn ipv6_loopback_echoes() {
    let any6: SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::TcpListener::bind(any6).is_err() {
        eprintln!("skipping: no IPv6 loopback on this machine");
        return;
    }
    let mut config = test_config();
    config.listen = any6;
    config.udp = Some(any6);
    let server = start(config);
    assert!(server.tcp.is_ipv6());
    let mut s = connect(server.tcp);
    assert_eq!(send_all_then_fin(&mut s, b"over v6"), b"over v6");

    let udp = server.udp.unwrap();
    assert!(udp.is_ipv6());
    let sock = std::net::UdpSocket::bind(any6).unwrap();
    sock.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    sock.send_to(b"dgram v6", udp).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"dgram v6");
    assert_eq!(from, udp);
}
