//! Where connections come from: the source addresses of a run (`--bind`, or chosen for a
//! loopback target), and the TCP socket each connection starts from.
//!
//! # Ports are the limit
//!
//! A TCP connection is one (source address, source port, target address, target port)
//! tuple, and a source address has only the ephemeral range of ports (32768-60999 by
//! default: 28,232). Worse, the kernel looks for a free port by walking that range, and the
//! walk gets slower as the range fills: measured here (`examples/source_ports.rs`, 19,000
//! connections to one echoloop), one source address took 3.9 s of `connect()` calls, p99
//! 0.8 ms per call; four addresses 0.41 s, p99 60 us. So a loopback run spreads its
//! connections over `127.0.0.2`, `127.0.0.3`, ... (all of 127/8 is local on Linux), one
//! address per [`AUTO_PER_ADDRESS`] connections. `127.0.0.1` is left alone: other clients on
//! the machine use its ports, and a 19,000-connection run would starve them.
//!
//! # When the port is chosen
//!
//! `bind(ip, 0)` makes the kernel pick the port *at bind time*, before it knows the
//! destination, so it must be free for every destination: each bound socket uses up one port
//! of the whole machine (a `connect()` from any address then skips ports that a bind holds,
//! TIME_WAIT included), and on one address the search slows sharply past half the range
//! (measured: 13.3 s for 19,000, and a second run at once failed 4,746 binds with "Address
//! already in use"). With `IP_BIND_ADDRESS_NO_PORT` set first, `bind` only fixes the
//! address and `connect()` picks the port, unique per 4-tuple, sharing ports with other
//! destinations and reusing loopback TIME_WAIT tuples (`tcp_tw_reuse=2`, the default). That
//! is what loadgen does; three runs of 19,000 back to back all connected at full speed.
//! Choosing ports ourselves (`SO_REUSEADDR` + `bind(ip, port)`) was no faster (0.40 s) and
//! holds ports against every other program's connects, and closing with `SO_LINGER` 0 (a
//! reset instead of TIME_WAIT) gained nothing on loopback while the server sees every close
//! as an error; loadgen closes normally.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::RunConfig;

/// Connections per automatic loopback source address: well inside the part of the port
/// range where the kernel's search is fast, so one address serves up to 4096.
pub(crate) const AUTO_PER_ADDRESS: usize = 4096;

/// Most source addresses `--bind` may list (ranges expanded).
pub(crate) const MAX_SOURCES: usize = 65_536;

/// The source addresses of a run, used round-robin by connection id; empty means the
/// kernel's choice. `--bind` wins; otherwise an IPv4 loopback target on Linux gets
/// `127.0.0.2` and up, one address per [`AUTO_PER_ADDRESS`] connections, if this host
/// lets a socket bind there (a sandbox may give loopback only `127.0.0.1`).
pub(crate) fn plan(cfg: &RunConfig) -> Vec<IpAddr> {
    if !cfg.bind.is_empty() {
        return cfg.bind.clone();
    }
    let first = Ipv4Addr::new(127, 0, 0, 2);
    match cfg.target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && cfg!(target_os = "linux") => {
            if let Err(e) = std::net::UdpSocket::bind((first, 0)) {
                log::debug!("sources: cannot bind {first} ({e}); the kernel chooses");
                return Vec::new();
            }
            let n = cfg.connections.div_ceil(AUTO_PER_ADDRESS) as u32;
            (0..n)
                .map(|k| IpAddr::V4(Ipv4Addr::from(u32::from(first) + k)))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Why a `--bind` item is not an address or a range of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the command line's parser
pub(crate) enum BindError {
    #[error("'{0}' is not an IP address (e.g. 127.0.0.2 or 127.0.0.2-127.0.0.9)")]
    NotAnAddress(String),
    #[error("'{0}': both ends must be IPv4 or both IPv6")]
    MixedFamilies(String),
    #[error("'{0}': the range runs backwards")]
    Backwards(String),
    #[error("'{0}': more than {MAX_SOURCES} addresses")]
    TooMany(String),
}

/// Parses one `--bind` item: an address, or an inclusive range `FIRST-LAST` of the same
/// family (`127.0.0.2-127.0.0.9`, `fd00::1-fd00::ff`), at most [`MAX_SOURCES`] long.
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the command line's parser
pub(crate) fn parse_bind_item(text: &str) -> Result<Vec<IpAddr>, BindError> {
    let ip = |s: &str| {
        s.trim()
            .parse::<IpAddr>()
            .map_err(|_| BindError::NotAnAddress(s.to_string()))
    };
    let Some((a, b)) = text.split_once('-') else {
        return Ok(vec![ip(text)?]);
    };
    let (first, last) = (ip(a)?, ip(b)?);
    let (lo, hi) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return Err(BindError::MixedFamilies(text.to_string())),
    };
    if hi < lo {
        return Err(BindError::Backwards(text.to_string()));
    }
    if hi - lo >= MAX_SOURCES as u128 {
        return Err(BindError::TooMany(text.to_string()));
    }
    Ok((lo..=hi)
        .map(|n| match first {
            // In range: both ends are IPv4, so n fits in a u32.
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(n.into()),
        })
        .collect())
}

/// A non-blocking TCP socket from `source` (if any), with the connect to `target` started.
/// The port is left to `connect()` (see the module docs).
pub(crate) fn start_connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    // Latency is the point: never let Nagle hold a small message back.
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        crate::sys::bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // The normal case: the handshake goes on; WRITABLE says when it is done.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(target: &str, connections: usize) -> RunConfig {
        RunConfig {
            connections,
            ..RunConfig::new(target.parse().unwrap())
        }
    }

    /// A loopback IPv4 target gets one 127.0.0.x source per 4096 connections, from
    /// 127.0.0.2; `--bind` wins; other targets get the kernel's choice.
    #[test]
    fn automatic_sources() {
        let ips = |c: &RunConfig| plan(c).iter().map(|ip| ip.to_string()).collect::<Vec<_>>();
        if cfg!(target_os = "linux") {
            assert_eq!(ips(&cfg("127.0.0.1:7", 50)), ["127.0.0.2"]);
            assert_eq!(ips(&cfg("127.0.0.1:7", 4096)), ["127.0.0.2"]);
            let many = ips(&cfg("127.0.0.1:7", 19_000));
            assert_eq!(
                many,
                [
                    "127.0.0.2",
                    "127.0.0.3",
                    "127.0.0.4",
                    "127.0.0.5",
                    "127.0.0.6"
                ]
            );
        }
        assert!(plan(&cfg("[::1]:7", 19_000)).is_empty());
        assert!(plan(&cfg("10.1.2.3:7", 19_000)).is_empty());
        let mut explicit = cfg("127.0.0.1:7", 19_000);
        explicit.bind = vec!["127.0.0.1".parse().unwrap()];
        assert_eq!(ips(&explicit), ["127.0.0.1"]);
    }

    /// `--bind` items: one address or an inclusive range of one family, bounded.
    #[test]
    fn bind_items() {
        let one = parse_bind_item("127.0.0.9").unwrap();
        assert_eq!(one, ["127.0.0.9".parse::<IpAddr>().unwrap()]);
        let range = parse_bind_item("127.0.0.254-127.0.1.1").unwrap();
        let text: Vec<String> = range.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(
            text,
            ["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"]
        );
        assert_eq!(parse_bind_item("fd00::1-fd00::3").unwrap().len(), 3);
        assert_eq!(
            parse_bind_item("10.0.0.0-10.0.255.255").unwrap().len(),
            MAX_SOURCES
        );
        for bad in [
            "x",
            "127.0.0.2-",
            "127.0.0.9-127.0.0.2",
            "127.0.0.1-::1",
            "10.0.0.0-10.1.0.0",
        ] {
            assert!(parse_bind_item(bad).is_err(), "{bad}");
        }
    }
}
