//! `Server`: binds the sockets, then hands them to the reactor.
//!
//! Binding and running are separate steps so a caller can learn the real
//! addresses (port 0 picks a free port) and take a shutdown handle before the
//! server starts blocking its thread.
//!
//! How each reactor's sockets are built (and its share of `max_conns`) is
//! `bind.rs`; what a reactor does with them is `reactor/`. This file
//! validates the settings, keeps `max_conns` within the open-files limit,
//! binds one set of sockets per reactor, and runs the reactors on threads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use log::{debug, info, warn};

use crate::bind::{bind_metrics, bind_shard, check_root, probe_addresses, Addrs, Shard};
use crate::config::{Config, Mode, DEFAULT_MAX_CONNS};
use crate::error::Error;
use crate::metrics::{LoopMetrics, MetricsShard};
use crate::reactor::Reactor;
use crate::shutdown::ShutdownHandle;
use crate::stats::{Stats, StatsSnapshot};
use crate::sys;

/// File descriptors kept back from `--max-conns` for the listener, the UDP
/// socket, epoll, signal pipes, logging and the like.
const RESERVED_FDS: u64 = 32;

/// Descriptors each reactor holds besides its connections: epoll, the
/// waker, the listener and the UDP socket.
const FDS_PER_REACTOR: u64 = 4;

/// A bound, not yet running, echoloop server.
#[derive(Debug)]
pub struct Server {
    /// The settings in force: validated, `max_conns` clamped to the
    /// open-files limit.
    config: Config,
    /// One set of sockets per reactor (`--reactors`, usually one).
    shards: Vec<Shard>,
    /// Wakes every reactor; handed out by `shutdown_handle`.
    shutdown: ShutdownHandle,
    /// The counters every reactor adds to; handed out by `stats`.
    stats: Stats,
    /// `--root`, canonicalised once so every request resolves against it.
    root: Option<PathBuf>,
    /// The addresses actually bound (port 0 resolved), the same for every
    /// reactor.
    tcp_addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
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
            return Err(Error::FdLimit {
                allowed: config.max_conns,
                reactors: n,
            });
        }
        let reuse_port = n > 1;
        let mut addrs = Addrs {
            tcp: config.listen,
            udp: config.udp,
        };
        if reuse_port {
            // SO_REUSEPORT would let us share a port another server holds;
            // bind once without it first, so "address in use" is still an
            // error, and so port 0 resolves to one port for every reactor.
            addrs = probe_addresses(&config)?;
        }
        let (mut metrics_listener, metrics_addr) = match config.metrics {
            Some(addr) => {
                let (listener, bound) = bind_metrics(addr)?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        let loop_metrics = config.metrics.map(|_| Arc::new(LoopMetrics::default()));
        let mut shards = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for index in 0..n {
            let metrics = loop_metrics.as_ref().map(|m| MetricsShard {
                listener: metrics_listener.take(),
                loop_metrics: m.clone(),
            });
            // Each bind learns the real ports (port 0) for the next.
            let (shard, waker) = bind_shard(&config, index, &mut addrs, metrics)?;
            shards.push(shard);
            wakers.push(waker);
        }
        let shutdown = ShutdownHandle::new(wakers);
        Ok(Server {
            config,
            shards,
            shutdown,
            stats: Stats::default(),
            root,
            tcp_addr: addrs.tcp,
            udp_addr: addrs.udp,
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
                let index = shard.index;
                let spawned = std::thread::Builder::new()
                    .name(format!("echoloop-reactor-{index}"))
                    .spawn_scoped(scope, || serve(shard));
                match spawned {
                    Ok(thread) => others.push((index, thread)),
                    Err(source) => {
                        results.push(Err(Error::Spawn { index, source }));
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
            for (index, thread) in others {
                let panicked = || Err(Error::ReactorPanicked { index });
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

/// The soft RLIMIT_NOFILE, if it can be read and is finite.
fn open_files_limit() -> Option<u64> {
    match sys::fd_limit() {
        Ok(limit) => limit.soft,
        Err(e) => {
            debug!("cannot read the open-files limit error={e}");
            None
        }
    }
}

/// Raises the soft open-files limit to the hard limit, so the server can
/// hold as many connections as the administrator allows, and returns the
/// soft limit then in force (`None`: unlimited, or unreadable). Called by
/// the binary, not by [`Server::bind`]: changing process limits is the
/// embedder's decision.
pub fn raise_fd_limit() -> Option<u64> {
    let limit = match sys::fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read the open-files limit error={e}");
            return None;
        }
    };
    let below_hard = match (limit.soft, limit.hard) {
        (Some(soft), Some(hard)) => soft < hard,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !below_hard {
        return limit.soft;
    }
    let raised = sys::FdLimit {
        soft: limit.hard,
        ..limit
    };
    match sys::set_fd_limit(raised) {
        Ok(()) => limit.hard,
        Err(e) => {
            warn!(
                "cannot raise the open-files limit soft={:?} hard={:?} error={e}",
                limit.soft, limit.hard
            );
            limit.soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConfigError;

    /// An address another socket holds is a `BindTcp` (or `BindUdp`) error
    /// naming that address, not a generic IO error.
    #[test]
    fn an_address_in_use_names_the_socket_and_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let config = Config {
            listen: addr,
            udp: None,
            ..Config::default()
        };
        let err = Server::bind(config).unwrap_err();
        assert!(
            matches!(err, Error::BindTcp { addr: a, .. } if a == addr),
            "{err}"
        );

        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            udp: Some(addr),
            ..Config::default()
        };
        let err = Server::bind(config).unwrap_err();
        assert!(
            matches!(err, Error::BindUdp { addr: a, .. } if a == addr),
            "{err}"
        );
    }

    /// A setting that cannot work is refused before any socket is opened,
    /// as a usage error.
    #[test]
    fn an_unusable_setting_is_a_usage_error() {
        let config = Config {
            backlog: 0,
            ..Config::default()
        };
        let err = Server::bind(config).unwrap_err();
        assert!(err.is_usage());
        let expected = ConfigError::TooSmall {
            flag: "backlog",
            min: 1,
        };
        assert!(matches!(&err, Error::Config(e) if *e == expected), "{err}");
    }
}
