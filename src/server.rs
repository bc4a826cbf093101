//! `Server`: binds the sockets, then hands them to the reactor.
//!
//! Binding and running are separate steps so a caller can learn the real
//! addresses (port 0 picks a free port) and take a shutdown handle before the
//! server starts blocking its thread.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use log::{debug, info, warn};
use mio::net::{TcpListener, UdpSocket};
use mio::{Poll, Waker};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::config::{Config, Mode, DEFAULT_MAX_CONNS};
use crate::error::Error;
use crate::metrics::{LoopMetrics, MetricsShard};
use crate::reactor::{Reactor, SIGNALS, WAKER};
use crate::shutdown::ShutdownHandle;
use crate::signals::SignalSet;
use crate::stats::{Stats, StatsSnapshot};

/// File descriptors kept back from `--max-conns` for the listener, the UDP
/// socket, epoll, signal pipes, logging and the like.
const RESERVED_FDS: u64 = 32;

/// Descriptors each reactor holds besides its connections: epoll, the
/// waker, the listener and the UDP socket.
const FDS_PER_REACTOR: u64 = 4;

/// Listen backlog of the metrics endpoint: scrapers are few.
const METRICS_BACKLOG: u32 = 64;

/// Requested UDP socket buffer size, each way (see `udp_socket`).
const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A bound, not yet running, echoloop server.
#[derive(Debug)]
pub struct Server {
    pub(crate) config: Config,
    /// One set of sockets per reactor (`--reactors`, usually one).
    shards: Vec<Shard>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) stats: Stats,
    /// `--root`, canonicalised once so every request resolves against it.
    pub(crate) root: Option<PathBuf>,
    tcp_addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
}

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

impl Server {
    /// Validates `config`, binds the TCP listener and the UDP socket (one of
    /// each per reactor), and sets up the pollers. Does not serve anything
    /// until [`Server::run`].
    pub fn bind(mut config: Config) -> Result<Server, Error> {
        config.validate()?;
        let root = match (&config.root, config.mode) {
            (Some(path), Mode::Files) => Some(check_root(path)?),
            _ => None,
        };
        let n = config.reactors;
        config.max_conns = clamp_to_fd_limit(config.max_conns, config.mode, n);
        if config.max_conns < n {
            return Err(Error::Config(format!(
                "the open-files limit leaves room for {} connections, fewer than --reactors {n} (raise it with ulimit -n)",
                config.max_conns
            )));
        }
        let reuse_port = n > 1;
        let (mut tcp_addr, mut udp_addr) = (config.listen, config.udp);
        if reuse_port {
            // SO_REUSEPORT would let us share a port another server holds;
            // bind once without it first, so "address in use" is still an
            // error, and so port 0 resolves to one port for every reactor.
            (tcp_addr, udp_addr) = probe_addresses(&config)?;
        }
        let (mut metrics_listener, metrics_addr) = match config.metrics {
            Some(addr) => {
                let listener = tcp_listener(addr, METRICS_BACKLOG, false)
                    .map_err(|source| Error::BindMetrics { addr, source })?;
                let bound = listener.local_addr()?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        let loop_metrics = config.metrics.map(|_| Arc::new(LoopMetrics::default()));
        let mut shards = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for index in 0..n {
            let listener =
                tcp_listener(tcp_addr, config.backlog, reuse_port).map_err(|source| {
                    Error::BindTcp {
                        addr: tcp_addr,
                        source,
                    }
                })?;
            tcp_addr = listener.local_addr()?;
            let udp = match udp_addr {
                Some(addr) => {
                    let socket = udp_socket(addr, reuse_port)
                        .map_err(|source| Error::BindUdp { addr, source })?;
                    udp_addr = Some(socket.local_addr()?);
                    Some(socket)
                }
                None => None,
            };
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), WAKER)?);
            // Signals go to one reactor, which passes them on to the others.
            let signals = if config.handle_signals && index == 0 {
                Some(SignalSet::install(poll.registry(), SIGNALS)?)
            } else {
                None
            };
            // Share max_conns out; the first reactors take the remainder.
            let max_conns = config.max_conns / n + usize::from(index < config.max_conns % n);
            shards.push(Shard {
                poll,
                listener,
                udp,
                max_conns,
                index,
                metrics: loop_metrics.as_ref().map(|m| MetricsShard {
                    listener: metrics_listener.take(),
                    loop_metrics: m.clone(),
                }),
                reactors: n,
                signals,
            });
        }
        let shutdown = ShutdownHandle {
            wakers: wakers.into(),
            requested: Arc::new(AtomicBool::new(false)),
            abort: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicUsize::new(n)),
        };
        Ok(Server {
            config,
            shards,
            shutdown,
            stats: Stats::default(),
            root,
            tcp_addr,
            udp_addr,
            metrics_addr,
        })
    }

    /// The address the TCP listener is bound to (with the real port).
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The UDP socket's address, or `None` when UDP is off.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The metrics endpoint's address (with the real port), or `None` when
    /// `--metrics` is off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that stops the server gracefully from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// A live view of the server's counters, readable while it runs.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The settings in force (after clamping `max_conns` to the fd limit).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves until shutdown (a `ShutdownHandle`, or SIGINT/SIGTERM when
    /// `config.handle_signals`), then returns the final counters. Blocks the
    /// calling thread, which runs the first reactor; any others get a thread
    /// each. Errors if a poller fails or a reactor thread cannot be started;
    /// either stops every reactor.
    pub fn run(self) -> Result<StatsSnapshot, Error> {
        let Server {
            config,
            shards,
            shutdown,
            stats,
            root,
            tcp_addr,
            udp_addr,
            metrics_addr,
        } = self;
        info!(
            "echoloop listening tcp={tcp_addr} udp={} mode={:?} max_conns={} reactors={}",
            udp_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            config.mode,
            config.max_conns,
            config.reactors,
        );
        if let Some(addr) = metrics_addr {
            info!("metrics on http://{addr}/metrics");
        }
        // A reactor holds `Rc`s (it is single-threaded by design), so each is
        // built on the thread that runs it.
        let serve = |shard: Shard| {
            // One reactor failing, or panicking, stops all of them.
            let _guard = AbortOnPanic(&shutdown);
            let result = Reactor::new(shard, &config, &shutdown, &stats, root.as_deref())
                .and_then(Reactor::run);
            if result.is_err() {
                shutdown.abort();
            }
            result
        };
        let mut shards = shards.into_iter();
        let first = shards.next().expect("bind creates at least one shard");
        let results = std::thread::scope(|scope| {
            let mut others = Vec::new();
            let mut results = Vec::new();
            for shard in shards {
                let name = format!("echoloop-reactor-{}", shard.index);
                let spawned = std::thread::Builder::new()
                    .name(name)
                    .spawn_scoped(scope, || serve(shard));
                match spawned {
                    Ok(thread) => others.push(thread),
                    Err(e) => {
                        results.push(Err(Error::Poll(e)));
                        break;
                    }
                }
            }
            if results.is_empty() {
                results.push(serve(first));
            } else {
                // Those already started see the abort at their first poll.
                shutdown.abort();
            }
            for thread in others {
                let panicked = || Err(Error::Poll(io::Error::other("a reactor thread panicked")));
                results.push(thread.join().unwrap_or_else(|_| panicked()));
            }
            results
        });
        results.into_iter().collect::<Result<Vec<()>, Error>>()?;
        let snap = stats.snapshot();
        info!("stopped: {snap}");
        Ok(snap)
    }
}

/// Aborts every reactor if the thread it lives on unwinds from a panic,
/// so the others do not run on (or wait) without it.
struct AbortOnPanic<'a>(&'a ShutdownHandle);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
    }
}

/// Binds the TCP and UDP addresses once without SO_REUSEPORT and releases
/// them, returning the ports actually bound. There is a window between the
/// probe and the real binds in which another process could take the port;
/// the real binds then fail, or (if it too uses SO_REUSEPORT) share it.
fn probe_addresses(config: &Config) -> Result<(SocketAddr, Option<SocketAddr>), Error> {
    let tcp = tcp_listener(config.listen, config.backlog, false)
        .and_then(|l| l.local_addr())
        .map_err(|source| Error::BindTcp {
            addr: config.listen,
            source,
        })?;
    let udp = match config.udp {
        Some(addr) => Some(
            udp_socket(addr, false)
                .and_then(|u| u.local_addr())
                .map_err(|source| Error::BindUdp { addr, source })?,
        ),
        None => None,
    };
    Ok((tcp, udp))
}

/// A listening TCP socket built with socket2, so we can set SO_REUSEADDR (a
/// restarted server can bind while old connections sit in TIME_WAIT) and the
/// backlog before `listen`.
fn tcp_listener(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    if addr.is_ipv6() {
        // [::1] means IPv6 only, not also IPv4-mapped addresses.
        socket.set_only_v6(true)?;
    }
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

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
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

/// `--root` must be a readable directory; returns its canonical path.
fn check_root(path: &Path) -> Result<PathBuf, Error> {
    let fail = |reason: String| Error::Root {
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path.canonicalize().map_err(|e| fail(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(fail("not a directory".into()));
    }
    std::fs::read_dir(&canonical).map_err(|e| fail(e.to_string()))?;
    Ok(canonical)
}

/// Keeps `max_conns` below the open-files limit: a server that accepts past it
/// would hit EMFILE on every accept instead of holding clients in the
/// backlog. In `files` mode a connection may also hold an open file.
fn clamp_to_fd_limit(max_conns: usize, mode: Mode, reactors: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return max_conns;
    };
    let per_conn = if mode == Mode::Files { 2 } else { 1 };
    let reserved = RESERVED_FDS + FDS_PER_REACTOR * reactors as u64;
    let allowed = (limit.saturating_sub(reserved) / per_conn).max(1);
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    if max_conns > allowed {
        let msg = format!(
            "max_conns={max_conns} exceeds what the open-files limit allows; using max_conns={allowed} (raise it with ulimit -n)"
        );
        // Lowering a limit the user never set is worth knowing, not a warning.
        if max_conns == DEFAULT_MAX_CONNS {
            info!("{msg}");
        } else {
            warn!("{msg}");
        }
        return allowed;
    }
    max_conns
}

/// The soft RLIMIT_NOFILE, if it can be read.
// rlim_t is u64 on Linux but not on every platform: the casts are for those.
#[allow(clippy::unnecessary_cast)]
fn open_files_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which is valid and
    // properly aligned for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    (rc == 0 && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur as u64)
}

/// Raises the soft open-files limit to the hard limit, so the server can hold
/// as many connections as the administrator allows. Called by the binary, not
/// by the library: changing process limits is the embedder's decision.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above; setrlimit reads the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return None;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    Some(rl.rlim_cur as u64)
}
