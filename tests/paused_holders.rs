//! Connections the memory budget (`--max-memory`) stopped reading, when
//! their input ends: the peer's FIN, or a graceful shutdown that takes only
//! the input the kernel already holds. What such a connection holds either
//! can never become a reply (the start of a frame whose rest will never
//! come) and is dropped at once, or is owed to the peer and is served as
//! soon as the peer takes it; neither waits for `--idle-timeout` or
//! `--drain-timeout`.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    connect, pattern_writer, read_pattern_to_eof, stalled_writers, start, test_config, Running,
};
use echoloop::{Config, Mode};

const MIB: usize = 1024 * 1024;

/// A framed server with a 1 MiB budget, and `clients` clients that each
/// announced a 1 MiB frame and sent `sent` bytes of it (round robin, so the
/// server takes some from each before the budget engages). Returns once
/// the budget has engaged: it pauses the holders as they are visited.
fn framed_holders(
    clients: usize,
    sent: usize,
    drain_timeout: Duration,
) -> (Running, Vec<TcpStream>) {
    let server = start(Config {
        mode: Mode::Framed,
        udp: None,
        max_memory: MIB,
        drain_timeout,
        ..test_config()
    });
    let mut conns: Vec<TcpStream> = (0..clients).map(|_| connect(server.tcp)).collect();
    let mut data = (MIB as u32).to_be_bytes().to_vec();
    data.resize(4 + sent, 7);
    for c in &conns {
        c.set_nonblocking(true).unwrap();
    }
    let mut pos = vec![0usize; clients];
    let deadline = Instant::now() + common::WAIT;
    while pos.iter().any(|&n| n < data.len()) {
        assert!(Instant::now() < deadline, "clients could not send: {pos:?}");
        let mut progress = false;
        for (c, pos) in conns.iter_mut().zip(pos.iter_mut()) {
            let end = data.len().min(*pos + 64 * 1024);
            match c.write(&data[*pos..end]) {
                Ok(n) => {
                    *pos += n;
                    progress |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("client write: {e}"),
            }
        }
        if !progress {
            // The kernel buffers are full: wait for the server to read.
            thread::sleep(Duration::from_millis(5));
        }
    }
    let held = server.wait_stats("the budget to engage", |s| s.memory_held > MIB as u64);
    eprintln!(
        "held {} KiB, pauses {}, read {} of {} bytes",
        held.memory_held / 1024,
        held.memory_pauses,
        held.bytes_in,
        clients * data.len()
    );
    (server, conns)
}

/// Bytes in `s`'s send queue the peer's kernel has not acknowledged
/// (SIOCOUTQ). 0 after `shutdown(Write)`: the FIN has reached the server.
fn unacked(s: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points at
    // `n` for the duration of the call.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
    n as usize
}

/// A paused framed client whose FIN reached the server mid-frame can never
/// complete that frame: the server drops it (counted in `partial_frames`,
/// as a partial frame at EOF always is), gives its bytes back and closes
/// the connection cleanly, at once rather than at the idle timeout (300 s
/// here). Clients that did not half-close are slowed down, not dropped
/// (unless given the overdraft past the budget, which they cannot use to
/// finish their frame: see `tests/overdraft.rs`).
/// 40 clients send 48 KiB each (1.9 MiB against the 1 MiB budget): the
/// first ones are read whole, the later ones only 4 KiB before the budget
/// pauses them, and the rest of theirs fits the server's receive window,
/// so each FIN arrives. (A FIN behind more than the window cannot arrive
/// while the server does not read: see `a_drain_with_paused_...`.)
#[test]
fn a_paused_framed_holder_whose_fin_arrives_is_released_at_once() {
    const CLIENTS: usize = 40;
    let (server, clients) = framed_holders(CLIENTS, 48 * 1024, Duration::from_secs(2));
    let (mut closing, mut staying): (Vec<_>, Vec<_>) = clients
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    for (_, c) in &closing {
        c.shutdown(Shutdown::Write).unwrap();
    }
    common::wait_until("every FIN acknowledged by the server", || {
        closing.iter().all(|(_, c)| unacked(c) == 0)
    });
    let half = (CLIENTS / 2) as u64;
    // A holder whose overdraft ran out (it read part of its frame with it,
    // then stalled) lost its frame too, and closes once it half-closes or
    // after the linger time: each frame is counted once either way.
    let closed = server.wait_stats("the half-closed holders closed", |s| {
        s.partial_frames >= half && s.active <= CLIENTS as u64 - half
    });
    for (i, c) in &mut closing {
        c.set_nonblocking(false).unwrap();
        let mut b = [0u8; 1];
        // A FIN, not a reset, and no reply: the frame was never complete.
        assert_eq!(c.read(&mut b).unwrap(), 0, "client {i}");
    }
    let mut ran_out = 0;
    for (i, c) in &mut staying {
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) => ran_out += 1,
            other => panic!("client {i} was answered or closed: {other:?}"),
        }
    }
    assert!(ran_out <= closed.overdraft_expiries, "{ran_out} {closed:?}");
    // The others half-close too (paused or, with memory given back,
    // resumed): all gone, nothing held.
    for (_, c) in &staying {
        c.shutdown(Shutdown::Write).unwrap();
    }
    let end = server.wait_stats("every holder closed, its bytes released", |s| {
        s.active == 0 && s.memory_held == 0
    });
    assert_eq!(end.partial_frames, CLIENTS as u64);
    assert_eq!(end.protocol_errors, 0);
}

/// A graceful shutdown with paused framed holders, half of them
/// half-closed, ends at once: the input the kernel holds for each (all the
/// drain takes) cannot complete its frame, so nothing is owed to anyone
/// and nobody waits for the budget, which with every holder paused would
/// never fall. Before, the drain waited out its whole timeout and counted
/// every holder in `drain_aborts`. 20 clients send 200 KB each: most of it
/// waits in the kernel, and the half-closed ones' FINs, queued behind
/// more than the server's receive windows take, do not even reach it.
#[test]
fn a_drain_with_paused_framed_holders_ends_without_its_timeout() {
    const CLIENTS: usize = 20;
    let (server, clients) = framed_holders(CLIENTS, 200_000, Duration::from_secs(30));
    for c in clients.iter().step_by(2) {
        c.shutdown(Shutdown::Write).unwrap();
    }
    let started = Instant::now();
    let end = server.stop();
    let took = started.elapsed();
    eprintln!("drain took {took:?}: {end:?}");
    assert!(took < Duration::from_secs(10), "drain took {took:?}");
    assert_eq!(end.drain_aborts, 0);
    assert_eq!(end.partial_frames, CLIENTS as u64);
    assert_eq!(end.memory_held, 0);
    drop(clients);
}

/// Echo: a client whose connection the budget paused, because it was owed
/// replies it had not read yet, sends the rest of its input and its FIN,
/// then reads. Everything it sent comes back, then EOF, while other
/// clients that read nothing keep the server over its budget: its bytes
/// are owed back, so nothing is dropped, and as soon as the reader has
/// taken what it was owed its connection reads again, though no new input
/// arrives to announce it (re-registering for READABLE when the output
/// drained raises the event: see `Conn::interest`).
#[test]
fn a_paused_echo_client_that_half_closes_and_reads_gets_every_byte() {
    const STALLERS: usize = 6;
    // Each staller is owed up to `--max-pending` (256 KiB): 1.5 MiB held.
    let server = start(Config {
        udp: None,
        max_memory: MIB,
        ..test_config()
    });
    let stallers: Vec<TcpStream> = (0..STALLERS).map(|_| connect(server.tcp)).collect();
    let _writers = stalled_writers(&stallers, 64 * MIB as u64);
    server.wait_stats("the budget engaged by the stallers", |s| {
        s.memory_held > MIB as u64
    });
    // The stallers are all in place: a pause from now on is the reader's.
    let pauses = server.stats().memory_pauses;
    // The reader: a writer thread sends TOTAL bytes and its FIN; it stalls
    // once the server is paused on it with replies unread.
    const TOTAL: u64 = 16 * MIB as u64;
    let mut reader = connect(server.tcp);
    let (written, writer) = pattern_writer(&reader, TOTAL);
    common::wait_for_stall(&written, || {});
    server.wait_stats("the reader paused too", |s| s.memory_pauses > pauses);
    eprintln!(
        "reader wrote {} KiB before it stalled",
        written.load(std::sync::atomic::Ordering::Relaxed) / 1024
    );
    let started = Instant::now();
    assert_eq!(read_pattern_to_eof(&mut reader), TOTAL);
    eprintln!("read back in {:?}", started.elapsed());
    writer.join().unwrap();
    drop(stallers);
}
