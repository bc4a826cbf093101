//! The server-wide memory budget (`--max-memory`): many clients each
//! holding a partial frame cannot grow the server past the budget, and a
//! new client's small request is still served. The server runs as its own
//! process so its RSS is measured alone.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{connect, read_n, spawn_binary, start, test_config, wait_until};
use echoloop::{Config, Mode};

const MIB: u64 = 1024 * 1024;

/// One frame: length header, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// 200 framed connections each send all but the last byte of a 1 MiB frame
/// (200 MiB the server would have to hold to take them all). With
/// `--max-memory 32 MiB` the server stops reading the biggest holders once
/// it holds 32 MiB: their bytes wait in the kernel, its RSS grows by at most
/// the budget plus a fixed allowance, and a new client's small frame is
/// still echoed at once. (One held client at a time is let past the budget
/// to finish its frame; these never send the last byte, so each such one
/// loses its frame, and its connection, after the overdraft's stall time.)
#[test]
fn partial_frames_cannot_grow_the_server_past_its_budget() {
    const CONNS: usize = 200;
    const BUDGET: u64 = 32 * MIB;
    // The scratch buffer, per-connection state, allocator slack, and what
    // small holders may add over the budget (see memory.rs).
    const ALLOWANCE: u64 = 16 * MIB;
    let budget = BUDGET.to_string();
    let mut server = spawn_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--no-udp",
        "--mode",
        "framed",
        "--max-memory",
        &budget,
    ]);
    let rss_start = server.rss_kib() * 1024;
    let mut clients: Vec<TcpStream> = (0..CONNS).map(|_| connect(server.tcp)).collect();
    for c in &clients {
        c.set_nonblocking(true).unwrap();
    }
    // Every client's frame, less its last byte.
    let whole = frame(&vec![7u8; MIB as usize]);
    let partial = &whole[..whole.len() - 1];
    let mut sent = vec![0usize; CONNS];
    let mut peak = rss_start;
    let mut last_progress = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Round-robin, non-blocking: stop once nobody made progress for 500 ms
    // (the server stopped reading them and the kernel buffers are full).
    while last_progress.elapsed() < Duration::from_millis(500) {
        assert!(Instant::now() < deadline, "writers never stalled");
        let mut progress = false;
        for (c, pos) in clients.iter_mut().zip(sent.iter_mut()) {
            if *pos == partial.len() {
                continue;
            }
            let end = partial.len().min(*pos + 64 * 1024);
            match c.write(&partial[*pos..end]) {
                Ok(n) => {
                    *pos += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("client write: {e}"),
            }
        }
        if progress {
            last_progress = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        peak = peak.max(server.rss_kib() * 1024);
    }
    let total: usize = sent.iter().sum();
    let growth = peak.saturating_sub(rss_start);
    eprintln!(
        "clients sent {} MiB; server rss start={} MiB peak={} MiB growth={} MiB",
        total as u64 / MIB,
        rss_start / MIB,
        peak / MIB,
        growth / MIB
    );
    assert!(
        growth <= BUDGET + ALLOWANCE,
        "server RSS grew {} MiB with a {} MiB budget",
        growth / MIB,
        BUDGET / MIB
    );
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("memory budget reached")),
        "no memory budget warning: {:?}",
        server.log()
    );

    // A new client's small frame is still answered, at once.
    let mut fresh = connect(server.tcp);
    let started = Instant::now();
    fresh.write_all(&frame(b"still served")).unwrap();
    assert_eq!(read_n(&mut fresh, 16), frame(b"still served"));
    eprintln!("small frame echoed in {:?}", started.elapsed());
    peak = peak.max(server.rss_kib() * 1024);
    assert!(peak.saturating_sub(rss_start) <= BUDGET + ALLOWANCE);

    // Nothing else was dropped: the held clients are slowed down, not
    // closed, but for those whose overdraft ran out (each logged).
    let mut probe = [0u8; 1];
    let mut closed = 0;
    for c in &mut clients {
        match c.read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) => closed += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closed += 1,
            other => panic!("a held client was answered: {other:?}"),
        }
    }
    let ran_out = || {
        let log = server.log();
        log.iter()
            .filter(|l| l.contains("overdraft ran out"))
            .count()
    };
    wait_until("a log line for every client closed", || ran_out() >= closed);
    eprintln!("{closed} of {CONNS} held clients closed, their overdraft run out");
    assert!(
        closed < CONNS / 2,
        "{closed} of {CONNS} held clients closed"
    );
    server.signal(libc::SIGKILL);
    wait_until("server gone", || {
        server.process.try_wait().unwrap().is_some()
    });
}

/// Clients held back by the memory budget that then reset their
/// connections are closed at once, and what they held is given back: the
/// budget does not stay engaged after they left. (A paused connection with
/// nothing to send used to be deregistered from the poller, so its reset
/// went unseen until the idle timeout, five minutes by default, and with
/// every big holder paused the total never fell.)
#[test]
fn paused_holders_that_reset_give_their_memory_back() {
    const CONNS: usize = 16;
    let server = start(Config {
        mode: Mode::Framed,
        udp: None,
        max_memory: MIB as usize,
        ..test_config()
    });
    let clients: Vec<TcpStream> = (0..CONNS).map(|_| connect(server.tcp)).collect();
    // Each announces a 1 MiB frame and sends 256 KiB of it: 4 MiB in all,
    // more than the budget; the server takes what it may and pauses them.
    let chunk = vec![7u8; 256 * 1024];
    for mut c in &clients {
        c.write_all(&(MIB as u32).to_be_bytes()).unwrap();
        c.set_nonblocking(true).unwrap();
        let _ = c.write(&chunk);
    }
    let held = server.wait_stats("the budget engaged", |s| {
        s.memory_pauses > 0 && s.memory_held > MIB
    });
    eprintln!(
        "held {} KiB, paused {}",
        held.memory_held / 1024,
        held.memory_pauses
    );
    for c in clients {
        // A reset, as an abrupt client would end.
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    server.wait_stats("reset holders closed and their bytes released", |s| {
        s.active == 0 && s.memory_held == 0
    });
    // With the budget released, a frame bigger than a small request is
    // served again.
    let mut fresh = connect(server.tcp);
    let big = frame(&vec![9u8; 64 * 1024]);
    fresh.write_all(&big).unwrap();
    assert_eq!(read_n(&mut fresh, big.len()), big);
}

/// Chat lines on their way through the room count against the budget, and
/// under it a member's read is cut so that even a read of empty lines (each
/// byte becomes a whole prefixed line for everyone) adds little. 300
/// members each send 4 KiB of newlines at once: without the cut every
/// member's read made a chunk of about 70 KB (20 MiB in all, with the
/// budget at 1 MiB); with it the server's RSS grows by at most the budget
/// plus a fixed allowance while the members read.
#[test]
fn chat_floods_of_empty_lines_stay_within_the_budget() {
    const CONNS: usize = 300;
    const BUDGET: u64 = MIB;
    // The scratch buffer, per-connection state, allocator slack, and the
    // chunks made before the budget engaged (see memory.rs).
    const ALLOWANCE: u64 = 8 * MIB;
    let budget = BUDGET.to_string();
    let server = spawn_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--no-udp",
        "--mode",
        "chat",
        "--max-memory",
        &budget,
    ]);
    let rss_start = server.rss_kib() * 1024;
    let mut members: Vec<TcpStream> = (0..CONNS).map(|_| connect(server.tcp)).collect();
    let flood = vec![b'\n'; 4096];
    for m in &mut members {
        m.write_all(&flood).unwrap();
        m.set_nonblocking(true).unwrap();
    }
    // Members read (and discard) what the room sends them for a while; the
    // whole flood is gigabytes of lines, so the test watches, not finishes.
    let mut peak = rss_start;
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for m in &mut members {
            match m.read(&mut buf) {
                Ok(n) => received += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("member read failed: {e}"),
            }
        }
        peak = peak.max(server.rss_kib() * 1024);
    }
    let growth = peak.saturating_sub(rss_start);
    eprintln!(
        "members received {} MiB; server rss growth {} KiB (budget {} KiB)",
        received / MIB,
        growth / 1024,
        BUDGET / 1024
    );
    assert!(received > 0, "the room delivered nothing");
    assert!(
        growth <= BUDGET + ALLOWANCE,
        "rss grew {} KiB, budget {} KiB + allowance {} KiB",
        growth / 1024,
        BUDGET / 1024,
        ALLOWANCE / 1024
    );
}
