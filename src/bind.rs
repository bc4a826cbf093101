//! Binding: the sockets each reactor owns, built with socket2, and the
//! checks that turn a bad address or `--root` into a typed [`Error`].
//!
//! This sits below both `server.rs` (which binds) and `reactor/` (which
//! serves what was bound): [`Shard`] is the hand-over between them.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use log::debug;
use mio::net::{TcpListener, UdpSocket};
use mio::{Poll, Waker};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::config::Config;
use crate::error::Error;
use crate::metrics::MetricsShard;
use crate::signals::SignalSet;
use crate::token::{SIGNALS, WAKER};

/// Listen backlog of the metrics endpoint: scrapers are few.
const METRICS_BACKLOG: u32 = 64;

/// Requested UDP socket buffer size, each way (see `udp_socket`).
const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// What one reactor owns: its poller and its own sockets. With several
/// reactors every shard's listener (and UDP socket) is bound to the same
/// address with SO_REUSEPORT, and the kernel spreads clients across them.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) poll: Poll,
    pub(crate) listener: TcpListener,
    pub(crate) udp: Option<UdpSocket>,
    /// This reactor's share of `max_conns`.
    pub(crate) max_conns: usize,
    /// 0 for the first reactor, which also handles signals and logs stats.
    pub(crate) index: usize,
    /// `--metrics`: every reactor records; the first serves the endpoint.
    pub(crate) metrics: Option<MetricsShard>,
    /// How many reactors there are (each takes this share of `max_memory`).
    pub(crate) reactors: usize,
    /// SIGINT/SIGTERM, for the first reactor when `handle_signals`.
    /// Installed by `bind`, not `run`: `main` prints the bound address
    /// between the two, and a script that signals the server as soon as it
    /// reads that line must find the handlers in place (a signal before
    /// them killed the process outright: no drain, no final counters).
    pub(crate) signals: Option<SignalSet>,
}

/// The addresses to bind: those configured, then (after the first bind)
/// the ones actually bound, so every reactor gets the same port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) tcp: SocketAddr,
    pub(crate) udp: Option<SocketAddr>,
}

/// Binds reactor `index`'s sockets on `addrs` (updated to the bound
/// addresses), creates its poller and waker, and for the first reactor
/// installs the signal handlers when `config.handle_signals`.
pub(crate) fn bind_shard(
    config: &Config,
    index: usize,
    addrs: &mut Addrs,
    metrics: Option<MetricsShard>,
) -> Result<(Shard, Waker), Error> {
    let n = config.reactors;
    let reuse_port = n > 1;
    let (listener, tcp) = bind_tcp(addrs.tcp, config.backlog, reuse_port)?;
    addrs.tcp = tcp;
    let udp = match addrs.udp {
        Some(addr) => {
            let (socket, bound) = bind_udp(addr, reuse_port)?;
            addrs.udp = Some(bound);
            Some(socket)
        }
        None => None,
    };
    let poll = Poll::new().map_err(Error::Poller)?;
    let waker = Waker::new(poll.registry(), WAKER).map_err(Error::Poller)?;
    // Signals go to one reactor, which passes them on to the others.
    let signals = if config.handle_signals && index == 0 {
        Some(SignalSet::install(poll.registry(), SIGNALS).map_err(Error::Signals)?)
    } else {
        None
    };
    // Share max_conns out; the first reactors take the remainder.
    let max_conns = config.max_conns / n + usize::from(index < config.max_conns % n);
    let shard = Shard {
        poll,
        listener,
        udp,
        max_conns,
        index,
        metrics,
        reactors: n,
        signals,
    };
    Ok((shard, waker))
}

/// Binds the TCP listener on `addr`, returning it with the address it got
/// (the real port, when `addr` asked for port 0).
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> Result<(TcpListener, SocketAddr), Error> {
    tcp_listener(addr, backlog, reuse_port)
        .and_then(|l| l.local_addr().map(|bound| (l, bound)))
        .map_err(|source| Error::BindTcp { addr, source })
}

/// Binds the UDP socket on `addr`, returning it with the address it got.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<(UdpSocket, SocketAddr), Error> {
    udp_socket(addr, reuse_port)
        .and_then(|u| u.local_addr().map(|bound| (u, bound)))
        .map_err(|source| Error::BindUdp { addr, source })
}

/// Binds the `--metrics` listener, returning it with the address it got.
pub(crate) fn bind_metrics(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    tcp_listener(addr, METRICS_BACKLOG, false)
        .and_then(|l| l.local_addr().map(|bound| (l, bound)))
        .map_err(|source| Error::BindMetrics { addr, source })
}

/// Binds the TCP and UDP addresses once without SO_REUSEPORT and releases
/// them, returning the ports actually bound. There is a window between the
/// probe and the real binds in which another process could take the port;
/// the real binds then fail, or (if it too uses SO_REUSEPORT) share it.
pub(crate) fn probe_addresses(config: &Config) -> Result<Addrs, Error> {
    let (_, tcp) = bind_tcp(config.listen, config.backlog, false)?;
    let udp = match config.udp {
        Some(addr) => Some(bind_udp(addr, false)?.1),
        None => None,
    };
    Ok(Addrs { tcp, udp })
}

/// A listening TCP socket built with socket2, so we can set SO_REUSEADDR (a
/// restarted server can bind while old connections sit in TIME_WAIT) and the
/// backlog before `listen`.
fn tcp_listener(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, SockProtocol::TCP)?;
    socket.set_reuse_address(true)?;
    // Several reactors: each has its own listener on the same port, and the
    // kernel spreads incoming connections across them.
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The UDP socket, with bigger kernel buffers than the default.
fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, SockProtocol::UDP)?;
    // UDP has no flow control: datagrams that arrive while the receive
    // buffer is full are dropped by the kernel (counted in /proc/net/snmp as
    // RcvbufErrors), before we ever see them. The default buffer (~208 KiB)
    // overflows at a few hundred small datagrams in flight, so ask for more;
    // the kernel caps the request at net.core.rmem_max / wmem_max, and a
    // smaller buffer still works, so failure here is not an error.
    if let Err(e) = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER) {
        debug!("udp SO_RCVBUF not raised error={e}");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_SOCKET_BUFFER) {
        debug!("udp SO_SNDBUF not raised error={e}");
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// A socket of `addr`'s family. An IPv6 one is IPv6 only: `[::1]` means
/// that address, not also the IPv4-mapped ones.
fn new_socket(addr: SocketAddr, ty: Type, protocol: SockProtocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// `--root` must be a readable directory; returns its canonical path.
pub(crate) fn check_root(path: &Path) -> Result<PathBuf, Error> {
    let fail = |source| Error::Root {
        path: path.to_path_buf(),
        source,
    };
    let canonical = path.canonicalize().map_err(fail)?;
    if !canonical.is_dir() {
        return Err(Error::RootNotDir {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_dir(&canonical).map_err(fail)?;
    Ok(canonical)
}
