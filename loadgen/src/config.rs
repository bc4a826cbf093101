//! Run settings: a validated [`RunConfig`] (the command line in `cli.rs` builds one).
//!
//! This module owns every default and every rule about which settings make sense together.
//! It does no IO, so it is unit-tested directly.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::payload::{HEADER_LEN, MAX_DATAGRAM};
use crate::shard::Shard;

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

/// Largest TCP message (UDP: [`MAX_DATAGRAM`]); the `--framed` prefix is a u32.
pub const MAX_SIZE: usize = 16 << 20;
/// Highest `--rate`: one message per ns, the schedule's resolution.
pub const MAX_RATE: f64 = 1e9;
/// Most buffer memory a run may allocate ([`crate::conn::run_bytes`]): a setting past it is
/// a typo more often than a plan, and would end in an allocation failure mid-run.
pub const MAX_BUFFER_BYTES: u64 = 4 << 30;

/// A setting that cannot be used; the message names the flag and says what would work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A flag's value is out of range or inconsistent with another flag.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag at fault, without its dashes.
        flag: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
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
/// syntax in library use, or from the command line with [`RunArgs::into_config`].
#[derive(Debug, Clone)]
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
    /// Empty: an IPv4 loopback target gets 127.0.0.2 and up ([`crate::source::plan`]),
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

impl RunConfig {
    /// The command line defaults, aimed at `target`, without progress output.
    pub fn new(target: SocketAddr) -> Self {
        RunConfig {
            target,
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

    /// The connections this process runs: its shard's share of `connections`.
    pub fn owned(&self) -> usize {
        self.shard.owned(self.connections)
    }

    /// Checks ranges and combinations; every error names the flag to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_sizes()?;
        check_duration("duration", self.duration)?;
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be longer than zero"));
        }
        check_duration("warmup", self.warmup)?;
        check_duration("udp-timeout", self.udp_timeout)?;
        if self.protocol == Protocol::Udp && self.udp_timeout.is_zero() {
            return Err(invalid("udp-timeout", "must be greater than 0"));
        }
        check_rate("rate", self.rate)?;
        if self.rate.is_some() && self.pipeline != 1 {
            let why = "cannot be combined with --rate (open loop sends on its schedule; \
                       a pipeline applies to the closed loop only)";
            return Err(invalid("pipeline", why));
        }
        if self.rate.is_some_and(|r| r > MAX_RATE) {
            let why = format!("at most {MAX_RATE:e} messages/s (one per ns)");
            return Err(invalid("rate", why));
        }
        check_rate("connect-rate", self.connect_rate)?;
        // No upper bound: deadlines saturate, and a library caller may mean "never".
        if self.drain_timeout.is_zero() {
            return Err(invalid("drain-timeout", "must be greater than 0"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect-timeout", "must be greater than 0"));
        }
        match (self.reconnect_after, self.protocol) {
            (Some(0), _) => return Err(invalid("reconnect-after", "must be at least 1")),
            (Some(_), Protocol::Udp) => {
                let why = "is for TCP (a UDP socket has no connection to churn)";
                return Err(invalid("reconnect-after", why));
            }
            _ => {}
        }
        if self.bind.len() > crate::source::MAX_SOURCES {
            let why = format!("at most {} addresses", crate::source::MAX_SOURCES);
            return Err(invalid("bind", why));
        }
        if let Some(loss) = self.max_loss {
            if !(0.0..=1.0).contains(&loss) {
                return Err(invalid(
                    "max-loss",
                    "must be a fraction 0..1 or a percentage",
                ));
            }
        }
        if self
            .bind
            .iter()
            .any(|ip| ip.is_ipv4() != self.target.is_ipv4())
        {
            return Err(invalid(
                "bind",
                "source and target must both be IPv4 or both IPv6",
            ));
        }
        self.check_budget()
    }

    /// Counts and sizes: each in range, so nothing below allocates without bound.
    fn check_sizes(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            let why = format!("must be between 1 and {MAX_CONNECTIONS}");
            return Err(invalid("connections", why));
        }
        if self.size < HEADER_LEN {
            let why = format!("{} bytes is below the {HEADER_LEN}-byte header", self.size);
            return Err(invalid("size", why));
        }
        let (what, max_size) = match self.protocol {
            Protocol::Udp => ("UDP datagram", MAX_DATAGRAM),
            Protocol::Tcp => ("TCP message", MAX_SIZE),
        };
        if self.size > max_size {
            let why = format!("a {what} holds at most {max_size} bytes");
            return Err(invalid("size", why));
        }
        if !(1..=MAX_UDP_BATCH).contains(&self.udp_batch) {
            let why = format!("must be between 1 and {MAX_UDP_BATCH}");
            return Err(invalid("udp-batch", why));
        }
        if !(1..=MAX_PIPELINE).contains(&self.pipeline) {
            let why = format!("must be between 1 and {MAX_PIPELINE}");
            return Err(invalid("pipeline", why));
        }
        if self.owned() == 0 {
            let why = format!(
                "shard {} of --connections {} owns no connection: use at least {} connections",
                self.shard, self.connections, self.shard.count
            );
            return Err(invalid("shard", why));
        }
        if self.threads == 0 || self.threads > self.owned().min(MAX_THREADS) {
            let why = format!(
                "must be between 1 and the connections this process runs (at most {MAX_THREADS})"
            );
            return Err(invalid("threads", why));
        }
        Ok(())
    }

    /// The buffers of all connections together stay under [`MAX_BUFFER_BYTES`].
    fn check_budget(&self) -> Result<(), ConfigError> {
        let bytes = crate::conn::run_bytes(self);
        if bytes <= MAX_BUFFER_BYTES {
            return Ok(());
        }
        let why = format!(
            "{} connections would need about {} MiB of buffers (at most {} MiB): \
             lower --connections, --pipeline or --size",
            self.connections,
            bytes >> 20,
            MAX_BUFFER_BYTES >> 20
        );
        Err(invalid("connections", why))
    }
}

fn check_rate(flag: &'static str, rate: Option<f64>) -> Result<(), ConfigError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(invalid(flag, "must be a positive number")),
        _ => Ok(()),
    }
}

fn check_duration(flag: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d > MAX_DURATION {
        return Err(invalid(flag, "must be at most 365 days"));
    }
    Ok(())
}

/// Parses "500ms", "10s", "2m", "1h", "250us" or a bare number of seconds ("1.5").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 500ms, 10s or 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use us, ms, s, m or h)"
            ))
        }
    };
    if seconds.is_nan() || seconds < 0.0 {
        return Err(format!("'{text}' is not a non-negative duration"));
    }
    // Validation caps durations at a year; this only keeps a huge value from panicking.
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("'{text}' is too long (at most 365 days)"))
}

/// Parses "1%" as 0.01 and "0.01" as 0.01.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a fraction"))?;
    Ok(value / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations accept the units the issue names, and reject junk with a hint.
    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").unwrap_err().contains("500ms"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-1s").is_err());
        // Past what a Duration holds: an error, not a panic.
        let huge = parse_duration("1000000000000000000000000h").unwrap_err();
        assert!(huge.contains("too long"), "{huge}");
        assert!(parse_duration("99999999999999999999999").is_err());
    }

    /// `--max-loss` takes a fraction or a percentage.
    #[test]
    fn fractions_parse() {
        assert_eq!(parse_fraction("1%"), Ok(0.01));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("x").is_err());
    }

    /// Validation names the flag at fault.
    #[test]
    fn validation_names_the_flag() {
        let ok = RunConfig::new("127.0.0.1:1".parse().unwrap());
        assert_eq!(ok.validate(), Ok(()));
        let small = RunConfig {
            size: HEADER_LEN - 1,
            ..ok.clone()
        };
        assert!(matches!(
            small.validate(),
            Err(ConfigError::Invalid { flag: "size", .. })
        ));
        let threads = RunConfig {
            threads: 51,
            ..ok.clone()
        };
        assert!(matches!(
            threads.validate(),
            Err(ConfigError::Invalid {
                flag: "threads",
                ..
            })
        ));
        let rate = RunConfig {
            rate: Some(0.0),
            ..ok.clone()
        };
        assert!(matches!(
            rate.validate(),
            Err(ConfigError::Invalid { flag: "rate", .. })
        ));
        let v6 = RunConfig {
            bind: vec!["::1".parse().unwrap()],
            ..ok
        };
        assert!(matches!(
            v6.validate(),
            Err(ConfigError::Invalid { flag: "bind", .. })
        ));
    }

    /// The flag `validate` names for the defaults changed by `change`, or "ok".
    fn flag_for(change: impl FnOnce(&mut RunConfig)) -> &'static str {
        let mut cfg = RunConfig::new("127.0.0.1:1".parse().unwrap());
        change(&mut cfg);
        match cfg.validate() {
            Err(ConfigError::Invalid { flag, .. }) => flag,
            Ok(()) => "ok",
        }
    }

    /// Durations, rates, counts and the buffer budget are bounded, so no setting can panic,
    /// overflow a deadline, spin or allocate without bound; each error names its flag.
    #[test]
    fn limits_name_the_flag() {
        let over = MAX_DURATION + Duration::from_secs(1);
        assert_eq!(flag_for(|c| c.duration = MAX_DURATION), "ok");
        assert_eq!(flag_for(|c| c.duration = over), "duration");
        assert_eq!(flag_for(|c| c.warmup = over), "warmup");
        assert_eq!(flag_for(|c| c.udp_timeout = Duration::MAX), "udp-timeout");
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, MAX_RATE * 2.0] {
            assert_eq!(flag_for(|c| c.rate = Some(r)), "rate", "{r}");
            let want = if r > 0.0 && r.is_finite() {
                "ok"
            } else {
                "connect-rate"
            };
            assert_eq!(flag_for(|c| c.connect_rate = Some(r)), want, "{r}");
        }
        assert_eq!(flag_for(|c| c.rate = Some(MAX_RATE)), "ok");
        // Open loop has no pipeline; a zero UDP timeout would count every datagram lost.
        assert_eq!(
            flag_for(|c| (c.rate, c.pipeline) = (Some(10.0), 4)),
            "pipeline"
        );
        assert_eq!(flag_for(|c| (c.rate, c.pipeline) = (Some(10.0), 1)), "ok");
        let udp_zero = |c: &mut RunConfig| {
            (c.protocol, c.udp_timeout) = (Protocol::Udp, Duration::ZERO);
        };
        assert_eq!(flag_for(udp_zero), "udp-timeout");
        assert_eq!(
            flag_for(|c| c.connections = MAX_CONNECTIONS + 1),
            "connections"
        );
        assert_eq!(flag_for(|c| c.size = MAX_SIZE + 1), "size");
        let huge_pipeline = |c: &mut RunConfig| {
            (c.pipeline, c.connections) = (u32::MAX as usize, MAX_CONNECTIONS);
        };
        assert_eq!(flag_for(huge_pipeline), "pipeline");
        let threads = |c: &mut RunConfig| (c.threads, c.connections) = (MAX_THREADS + 1, 5000);
        assert_eq!(flag_for(threads), "threads");
        // A shard must own a connection, and its threads share only what it owns.
        let shard =
            |c: &mut RunConfig| (c.shard, c.connections) = (Shard { index: 2, count: 3 }, 2);
        assert_eq!(flag_for(shard), "shard");
        let threads = |c: &mut RunConfig| {
            (c.shard, c.connections, c.threads) = (Shard { index: 2, count: 3 }, 7, 3);
        };
        assert_eq!(flag_for(threads), "threads");
        // Each in range, together too much: the buffer budget names --connections.
        let budget = |c: &mut RunConfig| (c.pipeline, c.connections) = (MAX_PIPELINE, 100_000);
        assert_eq!(flag_for(budget), "connections");
        let open = |c: &mut RunConfig| (c.rate, c.connections) = (Some(MAX_RATE), 1_000_000);
        assert_eq!(flag_for(open), "connections");
        // The most connections fit at the defaults, closed loop and open loop at 1M/s.
        assert_eq!(flag_for(|c| c.connections = MAX_CONNECTIONS), "ok");
        let open = |c: &mut RunConfig| (c.rate, c.connections) = (Some(1e6), MAX_CONNECTIONS);
        assert_eq!(flag_for(open), "ok");
    }
}
