//! The command line: clap arguments in, a validated [`RunConfig`] out. Flag help is
//! here; defaults and the rules about which settings make sense together are in
//! `config.rs`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::config::{invalid, ConfigError, Protocol, RunConfig};
use crate::shard::Shard;

/// One `--bind` item: an address or a range of them.
#[derive(Debug, Clone)]
pub struct Sources(pub Vec<IpAddr>);

fn parse_sources(text: &str) -> Result<Sources, crate::source::BindError> {
    crate::source::parse_bind_item(text).map(Sources)
}

/// What `--help` ends with: what the exit status means, the one thing scripts need.
const AFTER_HELP: &str = "Exit status: 0 the run passed (merge: every shard passed); 1 it failed \
(data errors, lost data, failed or broken connections, a failed, missing or cut-short shard, \
a file that cannot be written or read); 2 usage error (the message names the flag). \
More in loadgen/README.md.";

/// `loadgen [run flags]` or `loadgen merge FILE...`.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// `merge`, or nothing for a load run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of a load run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add the histograms of several .hlog files into one report.
    Merge(MergeArgs),
}

/// Flags of `loadgen merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval logs written by `--hlog`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Outputs, as for a run.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Where the report goes.
#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// One JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Percentile distribution in HdrHistogram .hgrm text form.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Latency-by-percentile plot (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// Flags of a load run; see the README for what each does.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Echo endpoint, host:port.
    #[arg(long, default_value_t = RunConfig::default().target.to_string(), value_name = "ADDR")]
    pub target: String,
    /// UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// Connections (for UDP: sockets).
    #[arg(long, default_value_t = RunConfig::default().connections, value_name = "N")]
    pub connections: usize,
    /// Message size in bytes, at least the 16-byte header.
    #[arg(long, default_value_t = RunConfig::default().size, value_name = "BYTES")]
    pub size: usize,
    /// Messages in flight per connection (closed loop).
    #[arg(long, default_value_t = RunConfig::default().pipeline, value_name = "K")]
    pub pipeline: usize,
    /// Measured time: 500ms, 1.5s, 10s, 2m, 1h 30m, or bare seconds (1.5); every DUR
    /// flag reads the same.
    #[arg(long, default_value_t = RunConfig::default().duration.into(), value_parser = parse_duration, value_name = "DUR")]
    pub duration: humantime::Duration,
    /// Unrecorded time before measuring.
    #[arg(long, default_value_t = RunConfig::default().warmup.into(), value_parser = parse_duration, value_name = "DUR")]
    pub warmup: humantime::Duration,
    /// Open loop: R messages/s in total, on a schedule.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Reactor threads.
    #[arg(long, default_value_t = RunConfig::default().threads, value_name = "N")]
    pub threads: usize,
    /// New connections per second during ramp-up (default: no limit).
    #[arg(long, value_name = "R")]
    pub connect_rate: Option<f64>,
    /// Source addresses, comma-separated; FIRST-LAST is a range [default: for a 127.x.x.x
    /// target, 127.0.0.2 and up, one address per 4096 connections; otherwise the kernel's
    /// choice]
    #[arg(long, value_delimiter = ',', value_parser = parse_sources, value_name = "IP[-IP][,...]")]
    pub bind: Vec<Sources>,
    /// A connect still pending after this long fails the connection.
    #[arg(long, default_value_t = RunConfig::default().connect_timeout.into(), value_parser = parse_duration, value_name = "DUR")]
    pub connect_timeout: humantime::Duration,
    /// TCP: after the measured time, how long echoes still owed are awaited before they
    /// count as missing.
    #[arg(long, default_value_t = RunConfig::default().drain_timeout.into(), value_parser = parse_duration, value_name = "DUR")]
    pub drain_timeout: humantime::Duration,
    /// TCP: each connection closes after N echoed messages and reconnects at once, so the
    /// run measures connections per second (churn).
    #[arg(long, value_name = "N")]
    pub reconnect_after: Option<u64>,
    /// Speak the framed mode (u32 big-endian length + payload).
    #[arg(long)]
    pub framed: bool,
    /// UDP: answer deadline before a datagram counts as lost.
    #[arg(long, default_value_t = RunConfig::default().udp_timeout.into(), value_parser = parse_duration, value_name = "DUR")]
    pub udp_timeout: humantime::Duration,
    /// UDP: datagrams per sendmmsg/recvmmsg call (Linux); 1 sends and receives one
    /// datagram per call, the only way on other platforms.
    #[arg(long, default_value_t = RunConfig::default().udp_batch, value_name = "N")]
    pub udp_batch: usize,
    /// UDP: fail when more than this is lost (0.01 or 1%).
    #[arg(long, value_parser = parse_fraction, value_name = "FRACTION")]
    pub max_loss: Option<f64>,
    /// HdrHistogram interval log (base64 V2 compressed, one per second), ended by a line
    /// with the run's verdict for `loadgen merge`.
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// Run shard I of N (0-based): the connections I, I+N, I+2N, ... of --connections,
    /// and their share of --rate (the total) on the run's schedule.
    #[arg(long, value_parser = Shard::parse, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Start the measured window at this Unix time (seconds, fractions allowed; e.g.
    /// $(date -d '+30 sec' +%s)), connecting and warming up before it. Shards on several
    /// machines need synchronised clocks (NTP).
    #[arg(long, value_parser = crate::start::parse_start_at, value_name = "UNIX_SECS")]
    pub start_at: Option<SystemTime>,
    /// Only parse and validate the flags, print the configuration, and exit (0 valid, 2
    /// not); --start-at is not checked against the clock.
    #[arg(long)]
    pub check: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Report outputs.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RunArgs {
    /// Resolves the target and validates everything.
    pub fn into_config(self) -> Result<RunConfig, ConfigError> {
        let target = resolve(&self.target)?;
        let cfg = RunConfig {
            protocol: if self.udp {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            connections: self.connections,
            size: self.size,
            pipeline: self.pipeline,
            duration: self.duration.into(),
            warmup: self.warmup.into(),
            rate: self.rate,
            threads: self.threads,
            connect_rate: self.connect_rate,
            bind: self.bind.into_iter().flat_map(|s| s.0).collect(),
            connect_timeout: self.connect_timeout.into(),
            drain_timeout: self.drain_timeout.into(),
            reconnect_after: self.reconnect_after,
            framed: self.framed,
            udp_timeout: self.udp_timeout.into(),
            max_loss: self.max_loss,
            udp_batch: self.udp_batch,
            progress: !self.quiet,
            hlog: self.hlog,
            shard: self.shard.unwrap_or_default(),
            start_at: self.start_at,
            ..RunConfig::new(target)
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Why `loadgen --check` rejected a command line (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// clap rejected the flags: an unknown flag, a value that does not parse. Its text
    /// says which, with the usage.
    #[error("{0}")]
    Usage(clap::Error),
    /// `--target` is not `host:port` (the host is not resolved by `--check`).
    #[error("--target: '{0}' is not host:port")]
    Target(String),
    /// A setting is out of range or inconsistent with another; the flag is named.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What `loadgen --check ARGS...` does: parses and validates a run's command line as a run
/// would, except that a host name in `--target` is not resolved (the name of a Kubernetes
/// Service means nothing where the manifest is checked) and `--start-at` is not compared
/// with the clock. Returns the line it prints, or the error (usage errors, exit 2).
/// `args` start with the program name.
pub fn check_args<I, T>(args: I) -> Result<String, CheckError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(CheckError::Usage)?;
    if cli.command.is_some() {
        return Ok("configuration ok: merge".into());
    }
    let mut run = cli.run;
    // Only the syntax of an unresolved host:port: a valid port and a host.
    let target = run.target.clone();
    if target.parse::<SocketAddr>().is_err() {
        let port = target.rsplit_once(':').filter(|(host, _)| !host.is_empty());
        match port.map(|(_, p)| p.parse::<u16>()) {
            Some(Ok(port)) => run.target = SocketAddr::from(([0, 0, 0, 0], port)).to_string(),
            _ => return Err(CheckError::Target(target)),
        }
    }
    let cfg = run.into_config()?;
    Ok(check_summary(&cfg).replace(&cfg.target.to_string(), &target))
}

/// The `configuration ok: ...` line of a valid configuration; nothing is connected or
/// opened.
pub fn check_summary(cfg: &RunConfig) -> String {
    let rate = cfg.rate.map_or("closed loop".to_string(), |r| {
        format!("rate {r}/s in total")
    });
    let start = cfg.start_at.map_or(String::new(), |t| {
        format!(", start-at {:.3}", crate::start::unix_secs(t))
    });
    format!(
        "configuration ok: target {}, shard {} ({} of {} connections), {rate}, duration {:?}, warmup {:?}{start}",
        cfg.target,
        cfg.shard,
        cfg.owned(),
        cfg.connections,
        cfg.duration,
        cfg.warmup
    )
}

fn resolve(target: &str) -> Result<SocketAddr, ConfigError> {
    let mut addrs = target
        .to_socket_addrs()
        .map_err(|e| invalid("target", format!("'{target}': {e} (expected host:port)")))?;
    addrs
        .next()
        .ok_or_else(|| invalid("target", format!("'{target}' resolves to nothing")))
}

/// Why a duration flag's value is not a duration. clap prefixes the flag
/// (`invalid value 'ten' for '--duration <DUR>': ...`), so the text only says what would work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// Neither a number of seconds nor numbers with units.
    #[error("'{0}' is not a duration (e.g. 500ms, 1.5s, 10s, 2m, 1h 30m, or bare seconds: 1.5)")]
    Syntax(String),
    /// More than a `Duration` holds (validation caps every duration at a year anyway).
    #[error("'{0}' is too long (at most 365 days)")]
    TooLong(String),
}

/// Parses a duration as humantime reads it: numbers with units, fractions allowed
/// ("500ms", "1.5s", "10s", "2m", "1h 30m", "250us"; humantime 2.3 added the fractions,
/// hence the minimum version in Cargo.toml), or a bare number of seconds ("1.5", ".5").
/// A leading "." gets its "0" ("0.5s"): humantime wants a digit first, and people write
/// ".5s" as readily as ".5".
pub fn parse_duration(text: &str) -> Result<humantime::Duration, DurationError> {
    let text = text.trim();
    let human = match text.strip_prefix('.') {
        Some(fraction) => format!("0.{fraction}"),
        None => text.to_string(),
    };
    match human.parse::<humantime::Duration>() {
        Ok(d) => return Ok(d),
        // Digits and a unit that do not fit a u64 of ns are still a duration: "too long".
        Err(humantime::DurationError::NumberOverflow) if !human.contains('.') => {
            return Err(DurationError::TooLong(text.to_string()))
        }
        Err(_) => {}
    }
    match human.parse::<f64>() {
        Ok(seconds) if seconds >= 0.0 => Duration::try_from_secs_f64(seconds)
            .map(Into::into)
            .map_err(|_| DurationError::TooLong(text.to_string())),
        _ => Err(DurationError::Syntax(text.to_string())),
    }
}

/// A `--max-loss` value that is not a number or a percentage.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("'{0}' is not a fraction (e.g. 0.01 or 1%)")]
pub struct FractionError(String);

/// Parses "1%" as 0.01 and "0.01" as 0.01.
pub fn parse_fraction(text: &str) -> Result<f64, FractionError> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| FractionError(text.to_string()))?;
    Ok(value / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations accept the units the issue names, fractions with a unit ("1.5s", which
    /// users write) and bare seconds, and reject junk with examples of what works.
    #[test]
    fn durations_parse() {
        let ok = |text: &str| parse_duration(text).map(Duration::from);
        assert_eq!(ok("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(ok("0.5m"), Ok(Duration::from_secs(30)));
        assert_eq!(ok("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(ok("2.5ms"), Ok(Duration::from_micros(2500)));
        assert_eq!(ok(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(ok(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(
            ok("0.1s"),
            Ok(Duration::from_millis(100)),
            "exact, no float"
        );
        assert_eq!(ok("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(ok(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(ok("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(ok("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(ok("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(ok("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(ok("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(ok("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(ok("0s"), Ok(Duration::ZERO));
        assert_eq!(ok("0"), Ok(Duration::ZERO));
        let syntax = |t: &str| DurationError::Syntax(t.to_string());
        assert_eq!(ok("ten"), Err(syntax("ten")));
        let hint = syntax("ten").to_string();
        assert!(hint.contains("500ms") && hint.contains("1.5s"), "{hint}");
        assert_eq!(ok("1.5x"), Err(syntax("1.5x")));
        assert_eq!(ok(""), Err(syntax("")));
        assert_eq!(ok("3x"), Err(syntax("3x")));
        assert_eq!(ok("-1s"), Err(syntax("-1s")));
        assert_eq!(ok("-1"), Err(syntax("-1")));
        // Past what a Duration holds: an error, not a panic.
        let too_long = |t: &str| Err(DurationError::TooLong(t.to_string()));
        assert_eq!(
            ok("1000000000000000000000000h"),
            too_long("1000000000000000000000000h")
        );
        assert_eq!(
            ok("99999999999999999999999"),
            too_long("99999999999999999999999")
        );
    }

    /// Parsing no flags gives the configuration's defaults (with progress on: the
    /// command line shows it unless `--quiet`), so there is one set of defaults.
    #[test]
    fn parsed_defaults_are_the_configs() {
        let cli = Cli::try_parse_from(["loadgen"]).unwrap();
        let want = RunConfig {
            progress: true,
            ..RunConfig::default()
        };
        assert_eq!(cli.run.into_config().unwrap(), want);
    }

    /// `--max-loss` takes a fraction or a percentage.
    #[test]
    fn fractions_parse() {
        assert_eq!(parse_fraction("1%"), Ok(0.01));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert_eq!(parse_fraction("x"), Err(FractionError("x".into())));
    }

    /// The command line defaults are the ones the issue documents.
    #[test]
    fn cli_defaults() {
        let cli = Cli::try_parse_from(["loadgen"]).unwrap();
        let cfg = cli.run.into_config().unwrap();
        assert_eq!(cfg.target, "127.0.0.1:7878".parse().unwrap());
        assert_eq!(
            (cfg.connections, cfg.size, cfg.pipeline, cfg.threads),
            (50, 64, 1, 1)
        );
        assert_eq!(
            (cfg.duration, cfg.warmup),
            (Duration::from_secs(10), Duration::from_secs(1))
        );
        assert_eq!(cfg.protocol, Protocol::Tcp);
        assert!(cfg.rate.is_none() && cfg.progress);
    }

    /// `--bind` splits on commas; `merge` is a subcommand taking files.
    #[test]
    fn cli_lists_and_merge() {
        let cli = Cli::try_parse_from(["loadgen", "--bind", "127.0.0.1,127.0.0.2"]).unwrap();
        assert_eq!(cli.run.bind.len(), 2);
        let cli = Cli::try_parse_from(["loadgen", "merge", "a.hlog", "b.hlog"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Merge(m)) if m.files.len() == 2));
        assert!(Cli::try_parse_from(["loadgen", "merge"]).is_err());
    }

    /// `--shard` and `--start-at` reach the config; `--check` summarises what this
    /// process would run.
    #[test]
    fn cli_shard_and_start_at() {
        let args = [
            "loadgen",
            "--shard",
            "1/3",
            "--connections",
            "10",
            "--start-at",
            "1767225600.5",
        ];
        let cli = Cli::try_parse_from(args).unwrap();
        let cfg = cli.run.into_config().unwrap();
        assert_eq!(cfg.shard, Shard { index: 1, count: 3 });
        assert_eq!(cfg.owned(), 3);
        let summary = check_summary(&cfg);
        assert!(
            summary.contains("shard 1/3 (3 of 10 connections)"),
            "{summary}"
        );
        assert!(summary.contains("start-at 1767225600.500"), "{summary}");
        assert!(Cli::try_parse_from(["loadgen", "--shard", "3/3"]).is_err());
        // --check takes a Service name unresolved; bad values still fail.
        let ok = check_args(["loadgen", "--target", "echoloop:7878", "--shard", "2/3"]).unwrap();
        assert!(
            ok.starts_with("configuration ok: target echoloop:7878, shard 2/3"),
            "{ok}"
        );
        let bad = check_args(["loadgen", "--target", "echoloop", "--shard", "0/3"]);
        assert!(matches!(bad, Err(CheckError::Target(t)) if t == "echoloop"));
        let bad = check_args(["loadgen", "--shard", "2/3", "--connections", "2"]);
        assert!(matches!(
            bad,
            Err(CheckError::Config(ConfigError::Invalid {
                flag: "shard",
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["loadgen", "--start-at", "tomorrow"]).is_err());
    }
}
