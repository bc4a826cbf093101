//! `--mode framed` over real sockets: `u32` big-endian length + payload
//! frames, each echoed whole however TCP splits or merges them; oversize
//! headers refused without allocating; partial frames at EOF dropped.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream, UdpSocket};

use common::{is_closed, read_n, read_to_end, self_rss_kib, start, test_config, Rng, IO_TIMEOUT};
use echoloop::{Config, Mode};

fn framed_config() -> Config {
    Config {
        mode: Mode::Framed,
        ..test_config()
    }
}

/// This process's peak virtual size in KiB (`VmPeak`). Allocating the 4 GiB a
/// header claims would show here even if the pages were never touched (and
/// so never counted in RSS).
fn vm_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmPeak:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One frame: length header, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// `count` frames of random sizes in `0..=max_len` with random payloads.
fn random_frames(rng: &mut Rng, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let len = rng.range(0, max_len);
            frame(&rng.bytes(len))
        })
        .collect()
}

/// Writes `chunks` (flushing each) on one thread while this one reads the
/// echo, so neither side can fill the other's buffers and stall. Returns
/// exactly as many bytes as were written.
fn write_chunks_read_echo(s: &mut TcpStream, chunks: &[&[u8]]) -> Vec<u8> {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut writer = s.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for c in chunks {
                writer.write_all(c).unwrap();
                writer.flush().unwrap();
            }
        });
        read_n(s, total)
    })
}

/// Byte-at-a-time delivery: each frame dribbles in one byte per write (with
/// Nagle off, so they travel as separate segments), and each is echoed
/// exactly once, whole, as soon as its last byte arrives.
#[test]
fn byte_at_a_time_frames_are_echoed_whole() {
    let server = start(framed_config());
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    let mut rng = Rng::new(0xB17E);
    let mut frames = random_frames(&mut rng, 30, 300);
    frames.push(frame(b""));
    frames.push(frame(b"last"));
    for f in &frames {
        for b in f {
            s.write_all(std::slice::from_ref(b)).unwrap();
            s.flush().unwrap();
        }
        assert_eq!(&read_n(&mut s, f.len()), f, "frame echoed whole");
    }
    // Nothing extra was sent: the stream ends right after the last frame.
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).is_empty());
    let stats = server.stop();
    assert_eq!(stats.partial_frames, 0);
    assert_eq!(stats.protocol_errors, 0);
}

/// Many frames in one write (the "sticky packets" case) are all echoed, in
/// order, byte for byte, including empty frames among them.
#[test]
fn many_frames_in_one_write_are_all_echoed() {
    let server = start(framed_config());
    let mut s = server.connect();
    let mut rng = Rng::new(0x57_1C_4E);
    let stream = random_frames(&mut rng, 2000, 200).concat();
    assert_eq!(write_chunks_read_echo(&mut s, &[&stream]), stream);
}

/// Random splits: on several connections at once, a stream of frames (some
/// up to 100 KiB, so they span many reads) written in random-sized pieces
/// comes back identical; the split never shows in the echo.
#[test]
fn random_splits_on_several_connections_echo_every_frame() {
    let server = start(framed_config());
    std::thread::scope(|scope| {
        for seed in 1..=4u64 {
            let mut s = server.connect();
            scope.spawn(move || {
                let mut rng = Rng::new(seed * 7919);
                let mut frames = random_frames(&mut rng, 200, 2000);
                frames.extend(random_frames(&mut rng, 4, 100 * 1024));
                frames.push(frame(b""));
                let stream = frames.concat();
                let mut chunks = Vec::new();
                let mut pos = 0;
                while pos < stream.len() {
                    let n = rng.range(1, 5000).min(stream.len() - pos);
                    chunks.push(&stream[pos..pos + n]);
                    pos += n;
                }
                let echo = write_chunks_read_echo(&mut s, &chunks);
                assert!(echo == stream, "connection {seed}: echo differs");
            });
        }
    });
    let stats = server.stop();
    assert_eq!(stats.accepted, 4);
    assert_eq!(stats.protocol_errors, 0);
}

/// An empty frame (length 0) is a frame: its 4-byte header comes back alone,
/// and frames around it are unaffected.
#[test]
fn empty_frame_is_echoed() {
    let server = start(framed_config());
    let mut s = server.connect();
    s.write_all(&frame(b"")).unwrap();
    assert_eq!(read_n(&mut s, 4), [0, 0, 0, 0]);
    let stream = [frame(b"a"), frame(b""), frame(b""), frame(b"bc")].concat();
    s.write_all(&stream).unwrap();
    assert_eq!(read_n(&mut s, stream.len()), stream);
}

/// A header claiming 4 GiB - 1 with a small max-frame: frames before it are
/// echoed, then one error frame `error: frame length N exceeds max-frame M`,
/// then the server closes. The claimed size is never allocated: the
/// process's RSS barely moves, and neither does its peak virtual size
/// (which an untouched 4 GiB allocation would still raise).
#[test]
fn oversize_length_gets_an_error_frame_and_a_close_without_allocating() {
    let server = start(Config {
        max_frame: 1024,
        ..framed_config()
    });
    let rss_before = self_rss_kib();
    let peak_before = vm_peak_kib();
    let mut s = server.connect();
    let mut data = frame(b"before");
    data.extend_from_slice(&u32::MAX.to_be_bytes());
    data.extend_from_slice(&[0xAB; 1000]); // the start of the "payload"
    s.write_all(&data).unwrap();

    assert_eq!(read_n(&mut s, 10), frame(b"before"));
    let len = u32::from_be_bytes(read_n(&mut s, 4).try_into().unwrap()) as usize;
    let text = String::from_utf8(read_n(&mut s, len)).unwrap();
    assert_eq!(
        text,
        "error: frame length 4294967295 exceeds max-frame 1024"
    );
    // The server sent FIN after the error frame; our further input is
    // discarded, not answered.
    s.write_all(b"ignored").unwrap();
    assert!(is_closed(&mut s), "server closes after the error frame");
    s.shutdown(Shutdown::Write).unwrap();

    let stats = server.wait_stats("the connection closed", |s| s.closed == 1);
    assert_eq!(stats.protocol_errors, 1);
    let growth_kib = self_rss_kib().saturating_sub(rss_before);
    assert!(
        growth_kib < 32 * 1024,
        "RSS grew by {growth_kib} KiB after a 4 GiB header"
    );
    // Other tests' threads may reserve arenas and stacks meanwhile (well
    // under 2 GiB in all); a 4 GiB buffer could not hide under this bound.
    let peak_growth_kib = vm_peak_kib().saturating_sub(peak_before);
    assert!(
        peak_growth_kib < 2 * 1024 * 1024,
        "peak virtual size grew by {peak_growth_kib} KiB after a 4 GiB header"
    );
}

/// A frame cut off by EOF (a partial payload, or a partial header) is
/// counted in `partial_frames` and not echoed; complete frames before it are.
#[test]
fn partial_frame_at_eof_is_counted_not_echoed() {
    let server = start(framed_config());

    let mut s = server.connect();
    let mut data = frame(b"whole");
    data.extend_from_slice(&[0, 0, 0, 10]);
    data.extend_from_slice(b"abc"); // 3 of 10 payload bytes
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), frame(b"whole"));

    let mut s = server.connect();
    s.write_all(&[0, 0]).unwrap(); // half a header
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).is_empty());

    let stats = server.wait_stats("both closed", |s| s.closed == 2);
    assert_eq!(stats.partial_frames, 2);
    assert_eq!(stats.protocol_errors, 0);
}

/// UDP in framed mode echoes each datagram as it is: no frame parsing, so
/// even a datagram whose "header" is absurd comes back unchanged.
#[test]
fn udp_datagrams_are_echoed_as_is() {
    let server = start(framed_config());
    let addr = server.udp.expect("udp enabled");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = vec![0; 65_536];
    let bogus = [0xFF, 0xFF, 0xFF, 0xFF, b'x'];
    for dgram in [&frame(b"hello")[..], &bogus, b"no header at all"] {
        sock.send_to(dgram, addr).unwrap();
        let (n, from) = sock.recv_from(&mut buf).expect("udp reply");
        assert_eq!(from, addr);
        assert_eq!(&buf[..n], dgram);
    }
    let stats = server.stats();
    assert_eq!(stats.protocol_errors, 0);
}
