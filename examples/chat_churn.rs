//! Measures how long a chat line takes to reach the room while other
//! clients connect and reset in a loop (connection churn).
//!
//! Joins MEMBERS clients to an echoloop `--mode chat` server, starts CHURN
//! threads that each connect and reset (SO_LINGER 0) as fast as they can,
//! waits a second, then has member 1 send PROBES one-line messages (`~`),
//! each once the previous one reached everyone, 10 ms apart. One thread
//! reads every member (a mio poll over all of them) and notes when each
//! probe reached the last of the other members. `~` appears in no notice
//! and no address, so counting it in the byte stream finds the probes.
//!
//! Prints the churn rate achieved and, over the probes, the time from
//! sending a probe until every other member had it: p50, p90 and max.
//! CHURN 0 measures the same without churn. A probe still missing somewhere
//! after 200 ms is reported on stderr, with how many members wait for it
//! (all of them: the server has not handed it out; a few: their sockets).
//! Fails (exit 1) if a member is disconnected or a probe is lost.
//!
//! ```text
//! cargo build --release --bin echoloop --example chat_churn
//! target/release/echoloop --mode chat --listen 127.0.0.1:0 --no-udp &   # note tcp=
//! target/release/examples/chat_churn 127.0.0.1:PORT 100 2 200
//! ```
//!
//! Only loopback addresses are accepted: this is a load tool.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

/// How long the whole measurement may take before it is declared failed.
const DEADLINE: Duration = Duration::from_secs(120);
/// Churn before the first probe, so the room is as busy as it gets.
const WARMUP: Duration = Duration::from_secs(1);
/// A probe slower than this is reported on stderr, with who still waits.
const SLOW: Duration = Duration::from_millis(200);
/// Pause between one probe reaching everyone and the next being sent.
const GAP: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_churn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(
    args: &[String],
    i: usize,
    name: &str,
    default: Option<T>,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match (args.get(i), default) {
        (Some(s), _) => s.parse().map_err(|e| format!("{name}: {e}")),
        (None, Some(d)) => Ok(d),
        (None, None) => Err("usage: chat_churn ADDR MEMBERS [CHURN_THREADS] [PROBES]".into()),
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = arg(&args, 0, "ADDR", None)?;
    if !addr.ip().is_loopback() {
        return Err("ADDR must be a loopback address".into());
    }
    let members: usize = arg(&args, 1, "MEMBERS", None)?;
    let churn: usize = arg(&args, 2, "CHURN_THREADS", Some(2))?;
    let probes: usize = arg(&args, 3, "PROBES", Some(200))?;
    if !(3..=10_000).contains(&members) || churn > 64 || !(1..=100_000).contains(&probes) {
        return Err("MEMBERS must be 3..=10000, CHURN_THREADS 0..=64, PROBES 1..=100000".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let result = measure(addr, members, probes, churn, &stop, &churned);
    stop.store(true, Relaxed);
    let (lags, rate) = result.map_err(|e| e.to_string())?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    println!(
        "members={members} churn_threads={churn} churn_per_s={rate:.0} probes={} \
         all_members_ms p50={:.1} p90={:.1} max={:.1}",
        lags.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*lags.last().unwrap())
    );
    Ok(())
}

/// Connects and resets in a loop until `stop`, counting connections. At
/// the lowest priority (nice 19), so that the thread reading the members
/// runs as soon as they have bytes: what is measured is the server's lag,
/// not this process's scheduling.
fn churn(addr: SocketAddr, stop: &AtomicBool, churned: &AtomicU64) {
    // SAFETY: setpriority takes no pointers; on Linux `who` 0 is the calling
    // thread. Failing (other systems) only makes the measurement noisier.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    while !stop.load(Relaxed) {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                churned.fetch_add(1, Relaxed);
            }
            // The backlog is full or the port search failed: try again.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// One member as the reader sees it.
struct Member {
    sock: mio::net::TcpStream,
    /// Probe lines (`~` bytes) received.
    probes: usize,
}

fn measure(
    addr: SocketAddr,
    n: usize,
    probes: usize,
    threads: usize,
    stop: &Arc<AtomicBool>,
    churned: &Arc<AtomicU64>,
) -> io::Result<(Vec<Duration>, f64)> {
    let deadline = Instant::now() + DEADLINE;
    let mut poll = Poll::new()?;
    let mut members = Vec::with_capacity(n);
    let mut sender = None;
    for i in 0..n {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        let r = s.try_clone()?;
        r.set_nonblocking(true)?;
        let mut sock = mio::net::TcpStream::from_std(r);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)?;
        members.push(Member { sock, probes: 0 });
        if i == 1 {
            sender = Some(s);
        }
    }
    let mut sender = sender.expect("n >= 3");
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut read_all = |poll: &mut Poll, members: &mut [Member], wait| -> io::Result<()> {
        poll.poll(&mut events, Some(wait))?;
        for ev in events.iter() {
            drain(&mut members[ev.token().0], &mut buf)?;
        }
        Ok(())
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, churned) = (Arc::clone(stop), Arc::clone(churned));
            std::thread::spawn(move || churn(addr, &stop, &churned))
        })
        .collect();
    let warm = Instant::now() + WARMUP;
    while Instant::now() < warm {
        read_all(&mut poll, &mut members, Duration::from_millis(10))?;
    }
    let (c0, t0) = (churned.load(Relaxed), Instant::now());
    let mut lags = Vec::with_capacity(probes);
    for k in 1..=probes {
        let sent = Instant::now();
        sender.write_all(b"~\n")?;
        let mut noted = false;
        loop {
            let missing: Vec<usize> = (0..n)
                .filter(|&i| i != 1 && members[i].probes < k)
                .collect();
            if missing.is_empty() {
                break;
            }
            if !noted && sent.elapsed() > SLOW {
                // Which members wait says where it is stuck: all of them
                // (the server has not read it) or a few (their sockets).
                noted = true;
                eprintln!(
                    "probe {k}: {} members still without it after {SLOW:?}, first {}",
                    missing.len(),
                    missing[0]
                );
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("timed out on probe {k}")));
            }
            read_all(&mut poll, &mut members, Duration::from_millis(100))?;
        }
        lags.push(sent.elapsed());
        let next = Instant::now() + GAP;
        while Instant::now() < next {
            read_all(&mut poll, &mut members, next - Instant::now())?;
        }
    }
    let rate = (churned.load(Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for w in workers {
        let _ = w.join();
    }
    lags.sort();
    Ok((lags, rate))
}

/// Reads a member until `WouldBlock`, counting probe lines.
fn drain(m: &mut Member, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match m.sock.read(buf) {
            Ok(0) => return Err(io::Error::other("a member was disconnected")),
            Ok(k) => m.probes += buf[..k].iter().filter(|&&b| b == b'~').count(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
