//! Measures how long one chat flood holds up everyone else's lines.
//!
//! Joins MEMBERS clients to an echoloop `--mode chat` server, then member 0
//! sends FLOOD bytes of one-byte lines (`x\n` repeated) in one `write`, and
//! member 1 sends one line (`probe`) right after. One thread reads every
//! member (a mio poll over all of them, as a chat client library would) and
//! notes when the probe line reaches each member other than member 1.
//!
//! Prints how long after the probe was sent it reached the members (median
//! and the last one), and when the whole flood had reached every member.
//! Fails (exit 1) if a member is disconnected or misses a byte.
//!
//! ```text
//! cargo build --release --bin echoloop --example chat_burst
//! target/release/echoloop --mode chat --listen 127.0.0.1:0 --no-udp &   # note tcp=
//! target/release/examples/chat_burst 127.0.0.1:PORT 500
//! ```
//!
//! Only loopback addresses are accepted: this is a load tool.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

/// How long the whole measurement may take before it is declared failed.
const DEADLINE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_burst: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: chat_burst ADDR MEMBERS [FLOOD_BYTES]";
    let addr: SocketAddr = args
        .first()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err("ADDR must be a loopback address".into());
    }
    let members: usize = args
        .get(1)
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("MEMBERS: {e}"))?;
    let flood: usize = match args.get(2) {
        Some(s) => s.parse().map_err(|e| format!("FLOOD_BYTES: {e}"))?,
        None => 64 * 1024,
    };
    if !(3..=20_000).contains(&members) || !(2..=64 << 20).contains(&flood) {
        return Err("MEMBERS must be 3..=20000 and FLOOD_BYTES 2..=64 MiB".into());
    }
    let r = measure(addr, members, flood / 2).map_err(|e| e.to_string())?;
    println!(
        "members={members} flood_lines={} probe_ms p50={:.1} max={:.1} flood_done_ms={:.1}",
        flood / 2,
        ms(r.probe_p50),
        ms(r.probe_max),
        ms(r.flood_done)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Result_ {
    probe_p50: Duration,
    probe_max: Duration,
    flood_done: Duration,
}

/// One member as the reader sees it.
struct Member {
    sock: mio::net::TcpStream,
    /// Bytes received since the burst began.
    got: usize,
    /// Bytes it must receive in all: the flood (not for member 0) and the
    /// probe line (not for member 1).
    want: usize,
    probe_at: Option<Instant>,
}

fn measure(addr: SocketAddr, n: usize, lines: usize) -> io::Result<Result_> {
    let deadline = Instant::now() + DEADLINE;
    let mut writers = Vec::with_capacity(n);
    let mut poll = Poll::new()?;
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        let r = s.try_clone()?;
        r.set_nonblocking(true)?;
        let mut sock = mio::net::TcpStream::from_std(r);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)?;
        members.push(Member {
            sock,
            got: 0,
            want: 0,
            probe_at: None,
        });
        writers.push(s);
    }
    // Joins: member i hears of every member after it. Read until the last
    // join notice reached member 0, then discard everything so far.
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let join_bytes: Vec<usize> = (0..n)
        .map(|i| {
            (i + 1..n)
                .map(|j| format!("* {} joined\n", writers[j].local_addr().unwrap()).len())
                .sum()
        })
        .collect();
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            drain(&mut members[ev.token().0], &mut buf, None)?;
        }
        if members.iter().zip(&join_bytes).all(|(m, &j)| m.got >= j) {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("timed out waiting for join notices"));
        }
    }
    let prefix = |i: usize| format!("{}: ", writers[i].local_addr().unwrap()).len();
    for (i, m) in members.iter_mut().enumerate() {
        m.got = 0;
        m.want = if i == 0 { 0 } else { lines * (prefix(0) + 2) };
        if i != 1 {
            m.want += prefix(1) + "probe\n".len();
        }
    }
    let burst = "x\n".repeat(lines);
    // The flood goes out as fast as the kernel takes it (one write, unless
    // its buffer is smaller), then the probe right after. Members are read
    // all along, so none of them falls behind.
    let mut flood = burst.as_bytes();
    let mut sent = None;
    while members.iter().any(|m| m.got < m.want) {
        if !flood.is_empty() {
            match writers[0].write(flood) {
                Ok(k) => flood = &flood[k..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if flood.is_empty() {
                sent = Some(Instant::now());
                writers[1].write_all(b"probe\n")?;
            }
        }
        let wait = if flood.is_empty() { 100 } else { 1 };
        poll.poll(&mut events, Some(Duration::from_millis(wait)))?;
        for ev in events.iter() {
            drain(&mut members[ev.token().0], &mut buf, Some(b'p'))?;
        }
        if Instant::now() > deadline {
            let short = members.iter().filter(|m| m.got < m.want).count();
            return Err(io::Error::other(format!(
                "timed out: {short} members still short of bytes"
            )));
        }
    }
    let sent = sent.ok_or_else(|| io::Error::other("flood never sent"))?;
    let flood_done = sent.elapsed();
    let mut probe: Vec<Duration> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, m)| m.probe_at.map_or(Duration::MAX, |t| t - sent))
        .collect();
    probe.sort();
    if members.iter().any(|m| m.got != m.want) {
        return Err(io::Error::other(
            "a member received more bytes than sent to it",
        ));
    }
    Ok(Result_ {
        probe_p50: probe[probe.len() / 2],
        probe_max: *probe.last().unwrap(),
        flood_done,
    })
}

/// Reads a member until `WouldBlock`, noting when `mark` first appears.
fn drain(m: &mut Member, buf: &mut [u8], mark: Option<u8>) -> io::Result<()> {
    loop {
        match m.sock.read(buf) {
            Ok(0) => return Err(io::Error::other("a member was disconnected")),
            Ok(k) => {
                m.got += k;
                if let Some(b) = mark {
                    if m.probe_at.is_none() && buf[..k].contains(&b) {
                        m.probe_at = Some(Instant::now());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
