//! How fast can one thread open N TCP connections to one target, by how the source address
//! and port are chosen? The measurement behind loadgen's source-address policy (see "Source
//! addresses and ports" in loadgen/README.md).
//!
//! ```text
//! source_ports TARGET N STRATEGY FIRST_IP ADDRS ROUNDS [fin|rst]
//! ```
//!
//! Each round opens N non-blocking connections from `ADDRS` source addresses starting at
//! `FIRST_IP` (round-robin), timing every `connect()` call, then polls until all are
//! established, then closes them all (`fin`: a normal close, leaving TIME_WAIT behind;
//! `rst`: SO_LINGER 0) and starts the next round at once, so later rounds meet the
//! TIME_WAIT sockets of earlier ones. Strategies:
//!
//! - `kernel`: no bind, the kernel picks address and port at `connect()`;
//! - `bind`: `bind(ip, 0)`: the port is picked at bind time, unique on that address;
//! - `noport`: `IP_BIND_ADDRESS_NO_PORT` + `bind(ip, 0)`: the port is picked at `connect()`,
//!   unique per 4-tuple;
//! - `explicit`: `SO_REUSEADDR` + `bind(ip, port)` with ports chosen here, 32768 + i / ADDRS.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

fn open(target: SocketAddr, strategy: &str, ip: IpAddr, port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    match strategy {
        "kernel" => {}
        "bind" => s.bind(&SocketAddr::new(ip, 0).into())?,
        "noport" => {
            loadgen::bind_address_no_port(&s)?;
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        "explicit" => {
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::new(ip, port).into())?;
        }
        // main() accepts only the four strategies above.
        other => unreachable!("strategy {other} was checked"),
    }
    match s.connect(&target.into()) {
        Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => Err(e),
        _ => Ok(s),
    }
}

const USAGE: &str = "usage: source_ports TARGET N STRATEGY FIRST_IP ADDRS ROUNDS [fin|rst]
  TARGET    ip:port of the server (127.0.0.1:PORT)
  N         connections per round
  STRATEGY  kernel | bind | noport | explicit
  FIRST_IP  first source address (127.0.0.2)
  ADDRS     source addresses, at least 1
  ROUNDS    rounds back to back";

const STRATEGIES: [&str; 4] = ["kernel", "bind", "noport", "explicit"];

/// Bad arguments: say what was wrong and how to call it, exit 2 (no panic).
fn usage(what: &str) -> ! {
    eprintln!("source_ports: {what}\n{USAGE}");
    std::process::exit(2);
}

/// Argument `i`, parsed, or the usage.
fn arg<T: std::str::FromStr>(a: &[String], i: usize, name: &str) -> T {
    a.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage(&format!("bad or missing {name}")))
}

fn main() -> io::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let target: SocketAddr = arg(&a, 1, "TARGET");
    let n: usize = arg(&a, 2, "N");
    let strategy: String = arg(&a, 3, "STRATEGY");
    if !STRATEGIES.contains(&strategy.as_str()) {
        usage(&format!("unknown STRATEGY {strategy}"));
    }
    let strategy = strategy.as_str();
    let first: Ipv4Addr = arg(&a, 4, "FIRST_IP");
    let addrs: u32 = arg(&a, 5, "ADDRS");
    if addrs == 0 {
        usage("ADDRS must be at least 1");
    }
    let rounds: usize = arg(&a, 6, "ROUNDS");
    let rst = a.get(7).map(String::as_str) == Some("rst");
    for round in 1..=rounds {
        let mut calls =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 40, 3).expect("histogram");
        let mut socks = Vec::with_capacity(n);
        let mut errors = std::collections::BTreeMap::<String, usize>::new();
        let started = Instant::now();
        for i in 0..n {
            let ip = IpAddr::V4(Ipv4Addr::from(u32::from(first) + i as u32 % addrs));
            let port = 32768 + (i as u32 / addrs) as u16;
            let t = Instant::now();
            let r = open(target, strategy, ip, port);
            calls.saturating_record(t.elapsed().as_nanos() as u64);
            match r {
                Ok(s) => socks.push(TcpStream::from_std(s.into())),
                Err(e) => *errors.entry(e.to_string()).or_default() += 1,
            }
        }
        let called = started.elapsed();
        let poll_start = Instant::now();
        let (mut poll, mut events) = (Poll::new()?, Events::with_capacity(1024));
        for (i, s) in socks.iter_mut().enumerate() {
            poll.registry().register(s, Token(i), Interest::WRITABLE)?;
        }
        let mut done = vec![false; socks.len()];
        let mut pending = socks.len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while pending > 0 && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))?;
            for ev in events.iter() {
                let i = ev.token().0;
                if !done[i] {
                    done[i] = true;
                    pending -= 1;
                    if let Ok(Some(e)) = socks[i].take_error() {
                        *errors.entry(format!("SO_ERROR {e}")).or_default() += 1;
                    }
                }
            }
        }
        let established = poll_start.elapsed();
        let us = |q: f64| calls.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "round {round} {strategy} addrs={addrs} n={n}: connect() loop {:.3} s ({:.0}/s), \
             per call us p50 {:.1} p99 {:.1} max {:.1}; all writable after +{:.3} s ({pending} not); \
             errors {errors:?}",
            called.as_secs_f64(),
            socks.len() as f64 / called.as_secs_f64(),
            us(0.5),
            us(0.99),
            calls.max() as f64 / 1000.0,
            established.as_secs_f64()
        );
        for s in socks {
            if rst {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            }
        }
    }
    Ok(())
}
