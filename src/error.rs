//! Setup errors: everything that can stop a server from starting or running.
//!
//! One enum per operation, in the manner of HdrHistogram's `errors` module:
//! [`ConfigError`] for [`Config::validate`](crate::Config::validate) (a
//! setting that cannot work, fixed by changing a flag), and [`Error`] for
//! [`Server::bind`](crate::Server::bind) and [`Server::run`](crate::Server::run),
//! whose variants name the step that failed. Each variant's doc says what to
//! change. Tests and embedders match variants, never message text.
//!
//! Per-connection trouble (a reset, a malformed frame) is never an `Error`: it
//! is logged, counted and closes that one connection, and `run()` carries on.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A setting [`Config::validate`](crate::Config::validate) refuses. `flag` is
/// the command-line name of the setting (without the leading `--`); the
/// [`Config`](crate::Config) field has the same name with `_` for `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value is below the smallest that works: raise it to at least `min`.
    #[error("--{flag} must be at least {min}")]
    TooSmall {
        /// The setting, e.g. `max-conns`.
        flag: &'static str,
        /// The smallest accepted value.
        min: u64,
    },
    /// The value is above the largest accepted: lower it to at most `max`.
    #[error("--{flag} cannot exceed {max}")]
    TooLarge {
        /// The setting, e.g. `max-frame`.
        flag: &'static str,
        /// The largest accepted value.
        max: u64,
    },
    /// A duration longer than a year (`MAX_DURATION`), which only
    /// risks overflowing a deadline: for "never", `--idle-timeout` and
    /// `--stats-interval` take 0.
    #[error("--{flag} cannot exceed 31536000 seconds (a year)")]
    DurationTooLong {
        /// The setting, e.g. `idle-timeout`.
        flag: &'static str,
    },
    /// `--mode files` serves a directory: give it with `--root DIR`.
    #[error("--mode files needs --root DIR")]
    MissingRoot,
    /// `--root` only means something to `--mode files`: drop it, or use that
    /// mode.
    #[error("--root only applies to --mode files")]
    RootWithoutFiles,
    /// The chat room lives in one reactor: use `--reactors 1` with
    /// `--mode chat`.
    #[error("--mode chat needs --reactors 1 (the room lives in one reactor)")]
    ChatNeedsOneReactor,
    /// Every reactor needs at least one connection slot: raise `--max-conns`
    /// to at least `--reactors`.
    #[error("--max-conns must be at least --reactors ({reactors})")]
    FewerConnsThanReactors {
        /// The `--reactors` setting.
        reactors: usize,
    },
}

/// Why a server could not start ([`Server::bind`](crate::Server::bind)), or
/// why its event loop stopped ([`Server::run`](crate::Server::run)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work; fix the flag the [`ConfigError`] names.
    #[error("invalid setting: {0}")]
    Config(#[from] ConfigError),
    /// The open-files limit (`ulimit -n`) leaves fewer connection slots than
    /// there are reactors: raise the limit, or use fewer `--reactors`.
    #[error("the open-files limit leaves room for {allowed} connections, fewer than --reactors {reactors} (raise it with ulimit -n)")]
    FdLimit {
        /// Connections the limit allows.
        allowed: usize,
        /// The `--reactors` setting.
        reactors: usize,
    },
    /// The TCP address could not be bound (in use, not local, no permission):
    /// pick another `--listen`, or stop what holds it.
    #[error("cannot listen on tcp {addr}: {source}; choose another --listen")]
    BindTcp {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The UDP address could not be bound: pick another `--udp`, or
    /// `--no-udp`.
    #[error("cannot bind udp {addr}: {source}; choose another --udp, or --no-udp")]
    BindUdp {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The `--metrics` address could not be bound: pick another.
    #[error("cannot listen on --metrics {addr}: {source}; choose another address")]
    BindMetrics {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// `--root` is missing or unreadable: point it at a readable directory.
    #[error("cannot serve files from --root {path}: {source}")]
    Root {
        /// The directory asked for.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// `--root` exists but is not a directory: point it at one.
    #[error("cannot serve files from --root {path}: not a directory")]
    RootNotDir {
        /// The path asked for.
        path: PathBuf,
    },
    /// The OS refused to create a poller (epoll) or its waker; usually the
    /// open-files limit is exhausted: raise `ulimit -n`.
    #[error("cannot create the event loop's poller: {0}")]
    Poller(#[source] io::Error),
    /// The SIGINT/SIGTERM handlers (and their self-pipe) could not be
    /// installed, usually for want of file descriptors: raise `ulimit -n`,
    /// or (as an embedder) leave `Config::handle_signals` off and stop the
    /// server with a [`ShutdownHandle`](crate::ShutdownHandle).
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] io::Error),
    /// A socket could not be registered with the poller: out of memory, or
    /// past the epoll limit `fs.epoll.max_user_watches` (raise it).
    #[error("cannot register the {what} with the poller: {source}")]
    Register {
        /// Which socket: `tcp listener`, `udp socket` or `metrics listener`.
        what: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// Waiting for events failed (not an interruption, which is retried);
    /// the reactor stopped, and stopped the others. Nothing a setting can
    /// fix: the kernel refused `epoll_wait`; the OS error it carries says why.
    #[error("waiting for events failed: {0}")]
    Wait(#[source] io::Error),
    /// A reactor thread (`--reactors` above 1) could not be started: lower
    /// `--reactors`, or raise the process's thread limit.
    #[error("cannot start reactor thread {index}: {source}")]
    Spawn {
        /// Which reactor (0 is the first).
        index: usize,
        /// What the OS said.
        source: io::Error,
    },
    /// A reactor thread panicked (a bug: please report it); the others were
    /// stopped.
    #[error("reactor thread {index} panicked")]
    ReactorPanicked {
        /// Which reactor (0 is the first).
        index: usize,
    },
}

impl Error {
    /// True for errors in what the user asked for (a setting that cannot
    /// work), as opposed to what the system refused; the binary exits 2 for
    /// these, like for a bad flag.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Config(_) | Error::FdLimit { .. })
    }
}
