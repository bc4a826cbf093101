//! Run settings: a validated [`RunConfig`] (the command line in `cli.rs` builds one).
//!
//! This module owns every default and every limit; the rules about which settings make
//! sense together are in `validate.rs`. It does no IO.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::shard::Shard;
use crate::start::StartAtError;

/// Longest `--duration`, `--warmup` or `--udp-timeout`: a year is more than any run needs,
/// and keeps every deadline (ns since the start, in a u64) far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most connections: each needs a port (~28k per `--bind` address) and a descriptor.
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// Most reactor threads; each has its own buffers, and more than the cores only adds switches.
pub const MAX_THREADS: usize = 1024;
/// Most messages in flight per connection (closed loop).
pub const MAX_PIPELINE: usize = 65_536;
/// Largest `--udp-batch`: the kernel's `UIO_MAXIOV`, the most one `sendmmsg` takes.
pub const MAX_UDP_BATCH: usize = 1024;

/// `--udp-batch` by default: the server's default too; at 64-byte datagrams a batch of
/// 32 amortises the syscall well, and larger ones rarely fill.
pub const DEFAULT_UDP_BATCH: usize = 32;

/// Largest TCP message (UDP: [`crate::payload::MAX_DATAGRAM`]); the `--framed` prefix is a u32.
pub const MAX_SIZE: usize = 16 << 20;
/// Highest `--rate`: one message per ns, the schedule's resolution.
pub const MAX_RATE: f64 = 1e9;
/// Most buffer memory a run may allocate (`budget.rs`): a setting past it is
/// a typo more often than a plan, and would end in an allocation failure mid-run.
pub const MAX_BUFFER_BYTES: u64 = 4 << 30;

/// A setting that cannot be used; the message names the flag and says what would work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// `--start-at` does not fit the clock (checked when a run starts).
    #[error("--start-at: {0}")]
    StartAt(#[from] StartAtError),
    /// A flag's value is out of range or inconsistent with another flag.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag at fault, without its dashes.
        flag: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
}

impl ConfigError {
    /// The flag at fault, without its dashes.
    pub fn flag(&self) -> &'static str {
        match self {
            ConfigError::StartAt(_) => "start-at",
            ConfigError::Invalid { flag, .. } => flag,
        }
    }
}

pub(crate) fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// Transport used to reach the echo endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// One stream per connection; the echo must come back in order, byte for byte.
    Tcp,
    /// One connected datagram socket per "connection"; each message is one datagram.
    Udp,
}

/// Everything a run needs, validated. Build it with [`RunConfig::new`] and struct update
/// syntax in library use, or from the command line with `cli::RunArgs::into_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The echo endpoint.
    pub target: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// TCP connections, or UDP sockets, spread round-robin over the threads.
    pub connections: usize,
    /// Message size in bytes, header included (the framed prefix is extra).
    pub size: usize,
    /// Closed loop: messages kept in flight per connection.
    pub pipeline: usize,
    /// Measured time; what completes outside it is not recorded.
    pub duration: Duration,
    /// Time before measuring starts: traffic flows, nothing is recorded.
    pub warmup: Duration,
    /// Open loop: total messages per second on a fixed schedule. `None` = closed loop.
    pub rate: Option<f64>,
    /// Reactor threads; each owns every `threads`-th connection.
    pub threads: usize,
    /// New connections per second during ramp-up. `None` = all at once.
    pub connect_rate: Option<f64>,
    /// Source addresses, used round-robin by connection id (each gives ~28k ports).
    /// Empty: an IPv4 loopback target gets 127.0.0.2 and up (`source.rs`),
    /// others the kernel's choice.
    pub bind: Vec<IpAddr>,
    /// Prefix each message with a u32 big-endian length, as echoloop's framed mode expects.
    pub framed: bool,
    /// UDP: a datagram not answered within this time is counted lost.
    pub udp_timeout: Duration,
    /// UDP: fail the run when the lost fraction exceeds this (0.01 = 1 %). `None` = never.
    pub max_loss: Option<f64>,
    /// UDP, Linux: datagrams per `sendmmsg`/`recvmmsg` (`udp_batch.rs`); 1 is one
    /// `send`/`recv` per datagram, the only way elsewhere. Invariant: `1..=MAX_UDP_BATCH`.
    pub udp_batch: usize,
    /// A TCP connect still pending after this long counts as failed. Long enough for the
    /// kernel's SYN retransmissions when a server's backlog overflows (Linux 6.5+ resends
    /// after 1, 2, 3, 4 and 8 s: `tcp_syn_linear_timeouts`; older kernels after 1, 3, 7 s).
    pub connect_timeout: Duration,
    /// TCP: each connection closes after this many echoed messages and a new one opens at
    /// once, measuring churn. `None`: connections live for the whole run.
    pub reconnect_after: Option<u64>,
    /// After the measured time, how long TCP echoes still owed are awaited before they
    /// count as missing. Generous: a server that stalls for seconds is slow, not lossy,
    /// and a run whose connections all break ends at once anyway.
    pub drain_timeout: Duration,
    /// Print a progress line (or bar, on a terminal) per second on stderr.
    pub progress: bool,
    /// Write an HdrHistogram interval log here, one histogram per second.
    pub hlog: Option<PathBuf>,
    /// `--shard I/N`: this process runs the connections `I, I+N, ...` of `connections`, and
    /// its share of `rate` on the run's schedule (`shard.rs`). `0/1`: the whole run.
    pub shard: Shard,
    /// `--start-at`: the measured window starts at this wall-clock time (`start.rs`);
    /// `None`: `warmup` after the connect phase.
    pub start_at: Option<SystemTime>,
}

/// `tcp` or `udp`, as reports and the JSON `settings` name it.
impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl RunConfig {
    /// The defaults (see [`RunConfig::default`]) aimed at `target`.
    pub fn new(target: SocketAddr) -> Self {
        RunConfig {
            target,
            ..RunConfig::default()
        }
    }

    /// The connections this process runs: its shard's share of `connections`.
    pub fn owned(&self) -> usize {
        self.shard.owned(self.connections)
    }
}

/// The one definition of every default: the command line's defaults are these (its
/// `--help` shows them, and a test checks that parsing no flags gives this, progress
/// aside), and library callers start from them with [`RunConfig::new`].
impl Default for RunConfig {
    /// echoloop's default address, `127.0.0.1:7878`, without progress output.
    fn default() -> Self {
        RunConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 7878)),
            protocol: Protocol::Tcp,
            connections: 50,
            size: 64,
            pipeline: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            rate: None,
            threads: 1,
            connect_rate: None,
            bind: Vec::new(),
            framed: false,
            udp_timeout: Duration::from_secs(1),
            max_loss: None,
            udp_batch: DEFAULT_UDP_BATCH,
            connect_timeout: Duration::from_secs(10),
            reconnect_after: None,
            drain_timeout: Duration::from_secs(10),
            progress: false,
            hlog: None,
            shard: Shard::default(),
            start_at: None,
        }
    }
}
