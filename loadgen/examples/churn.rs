//! A churn client for soak tests: connect, a few verified echoes, close
//! (our FIN, then wait for the server's), again and again, at a steady rate.
//! loadgen keeps long-lived connections busy; this one makes sure connections
//! that come and go leave nothing behind in the server.
//!
//! ```text
//! cargo build --release -p loadgen --example churn
//! target/release/examples/churn 127.0.0.1:7878 --duration 60 [--framed] [--rate 200] [--echoes 3]
//! ```
//!
//! Prints one summary line and exits 0; exits 1 on the first error (a
//! refused or reset connection, a wrong or missing byte, a missing EOF).
//! Only loopback targets are accepted.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long any one socket call may block.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    target: SocketAddr,
    duration: Duration,
    framed: bool,
    /// Connections per second.
    rate: u32,
    echoes: u32,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: churn ADDR [--duration SECS] [--framed] [--rate CONNS_PER_SEC] [--echoes N]";
    let target: SocketAddr = args
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    if !target.ip().is_loopback() {
        return Err("ADDR must be a loopback address".into());
    }
    let mut a = Args {
        target,
        duration: Duration::from_secs(10),
        framed: false,
        rate: 200,
        echoes: 3,
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match flag.as_str() {
            "--duration" => a.duration = Duration::from_secs(value("--duration")?.min(86_400)),
            "--rate" => a.rate = value("--rate")?.clamp(1, 100_000) as u32,
            "--echoes" => a.echoes = value("--echoes")?.clamp(1, 10_000) as u32,
            "--framed" => a.framed = true,
            _ => return Err(format!("unknown argument {flag}; {usage}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("churn: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let gap = Duration::from_secs(1) / args.rate;
    let mut next = started;
    let (mut conns, mut echoes) = (0u64, 0u64);
    while started.elapsed() < args.duration {
        if let Err(e) = one_connection(&args, conns, &mut echoes) {
            eprintln!("churn: connection {conns} failed: {e}");
            return ExitCode::FAILURE;
        }
        conns += 1;
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!(
        "churn: {conns} connections, {echoes} echoes verified, 0 errors in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// Connect, `echoes` round trips of a message unique to (`n`, i), then a
/// clean close: our FIN, the server's EOF.
fn one_connection(args: &Args, n: u64, echoes: &mut u64) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&args.target, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    for i in 0..args.echoes {
        let payload = format!("churn {n} {i} ").repeat(4);
        let msg = if args.framed {
            let mut f = (payload.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(payload.as_bytes());
            f
        } else {
            payload.into_bytes()
        };
        s.write_all(&msg)?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back)?;
        if back != msg {
            return Err(io::Error::other(format!("echo {i} differs")));
        }
        *echoes += 1;
    }
    s.shutdown(Shutdown::Write)?;
    let mut rest = [0u8; 64];
    match s.read(&mut rest)? {
        0 => Ok(()),
        k => Err(io::Error::other(format!("{k} unexpected bytes before EOF"))),
    }
}
