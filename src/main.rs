//! The `echoloop` binary: parse the command line into a `Config`, then
//! either check it (`--check`) or set up logging, bind and run. Every
//! failure is an `echoloop::Error`, printed with `Display`; its kind picks
//! the exit status (2: usage, 1: what the system refused). Everything else
//! lives in the library.

// The binary needs no `unsafe`: the library's `sys` module holds all of it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use clap::Parser;
use echoloop::{Config, Error, Mode, Server};

/// Every flag's default comes from here: `Config::default()` is the one
/// definition (the test at the end pins that parsing no flags gives it).
static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// A duration setting in whole seconds, 0 for "off" (`None`).
fn whole_secs(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_secs())
}

/// A single-threaded, non-blocking TCP and UDP echo server (mio reactor).
///
/// Serves every connection from one thread with bounded memory: replies are
/// written straight back, a client that does not read is paused at
/// --max-pending, the server as a whole holds at most --max-memory, idle
/// connections time out, and SIGINT/SIGTERM drain gracefully: input already
/// received is still answered, then the connections close (a second signal
/// exits at once). Logging follows RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TCP address to listen on (IPv4 or IPv6, e.g. [::1]:7878; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULTS.listen)]
    listen: SocketAddr,

    /// UDP address [default: the same address as --listen].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_udp")]
    udp: Option<SocketAddr>,

    /// Serve TCP only.
    #[arg(long)]
    no_udp: bool,

    /// Protocol spoken on every connection.
    #[arg(long, value_enum, default_value_t = DEFAULTS.mode)]
    mode: Mode,

    /// Most connections at once; further clients wait in the backlog. Also
    /// clamped below the open-files limit (whose soft value is first raised
    /// to the hard one).
    #[arg(long, value_name = "N", default_value_t = DEFAULTS.max_conns)]
    max_conns: usize,

    /// Per-connection high-water mark of unsent output, in bytes: once a
    /// client is owed this many or more (>=), the server stops reading it
    /// until at most half that is left (<=). 1 to 1073741824.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULTS.max_pending)]
    max_pending: usize,

    /// Close a connection once no bytes moved either way for this many
    /// seconds (>=): nothing read from it (its EOF counts), nothing it was
    /// sent (replies, chat lines, file bodies all count, and so does the
    /// kernel still sending it bytes written earlier: a slow but steady
    /// download is not idle); readiness alone is not activity. One still
    /// owed bytes then is reset, freeing what the kernel holds. 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = whole_secs(DEFAULTS.idle_timeout))]
    idle_timeout: u64,

    /// On shutdown, seconds connections get to flush what they are owed;
    /// those still owed bytes then are closed (0: at once).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULTS.drain_timeout.as_secs())]
    drain_timeout: u64,

    /// Listen backlog (pending connections the kernel queues for us).
    #[arg(long, value_name = "N", default_value_t = DEFAULTS.backlog)]
    backlog: u32,

    /// Log the counters every N seconds; 0 = only at shutdown.
    #[arg(long, value_name = "SECS", default_value_t = whole_secs(DEFAULTS.stats_interval))]
    stats_interval: u64,

    /// framed mode: largest frame payload in bytes; a longer frame gets an
    /// error and a close. 1 to 4294967295 (the length prefix is a u32).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULTS.max_frame)]
    max_frame: usize,

    /// chat and files modes: longest line in bytes (newline excluded); a
    /// longer one gets an error and a close. 1 to 67108864.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULTS.max_line)]
    max_line: usize,

    /// files mode: the directory to serve (required there).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Server-wide bound on the bytes held for clients: unsent output,
    /// partial frames and lines, unanswered file requests. Past it (more
    /// than BYTES held) connections holding 4096 bytes or more stop being
    /// read until the total falls to 3/4 of it (<=); a small request from
    /// anyone else is still served. So that framed clients whose frames
    /// together pass it still finish, one paused client at a time may read
    /// past it exactly what completes its frame (the total may pass BYTES by
    /// one --max-frame per reactor); one that then stalls 2 s (or takes 10 s
    /// in all) loses that frame, and its connection if it does not read its
    /// reply. Split evenly between reactors. At least 1048576.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULTS.max_memory)]
    max_memory: usize,

    /// Independent reactor threads sharing the port (SO_REUSEPORT), each
    /// with its own poller and connections; the kernel picks one per client
    /// by address hash, and max-conns is split between them. 1 is the
    /// classic single-threaded server. Not with --mode chat. 1 to 256.
    #[arg(long, value_name = "N", default_value_t = DEFAULTS.reactors)]
    reactors: usize,

    /// Serve Prometheus metrics at http://ADDR/metrics (text format 0.0.4),
    /// from the reactor's own loop. Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,

    /// UDP datagrams per syscall (Linux): up to N per recvmmsg, their replies
    /// in one sendmmsg, which cuts the server's syscalls and CPU per datagram
    /// under load. 1 runs the plain recvfrom/sendto loop (the only one on
    /// other platforms). 1 to 256.
    #[arg(long, value_name = "N", default_value_t = DEFAULTS.udp_batch)]
    udp_batch: usize,

    /// Interrupt moderation for batched UDP, in microseconds: after a read
    /// that found four or more datagrams already waiting, the server pauses
    /// this long before it looks again, so the next recvmmsg takes a fuller
    /// batch: far fewer syscalls and less CPU per datagram under load, for
    /// up to US more latency while datagrams keep arriving that fast. A
    /// lone request-reply client never waits, and when pauses bring no more
    /// than a read without one (a client that sends a burst and waits for
    /// its replies), the server stops pausing for a while. The pause holds the
    /// whole reactor: a TCP request or a signal that arrives during it
    /// waits up to US too (it is skipped in turns that served a TCP
    /// connection, so at most once per request). 0 turns it off; ignored
    /// with --udp-batch 1. 0 to 1000.
    #[arg(long, value_name = "US", default_value_t = DEFAULTS.udp_coalesce.as_micros() as u64)]
    udp_coalesce: u64,

    /// files mode: copy bodies through user space (read + write) instead of
    /// sending them with sendfile straight from the page cache (Linux); for
    /// comparing the two.
    #[arg(long)]
    no_sendfile: bool,

    /// Parse and validate the flags and settings, print the resulting
    /// configuration, and exit (0 if valid, 2 if not) without opening any
    /// socket or file (so addresses in use and --root are not checked). For
    /// deploy pipelines and recipe tests.
    #[arg(long)]
    check: bool,
}

impl Cli {
    fn into_config(self) -> Config {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        // Only the settings a flag sets: the rest keep their one default.
        Config {
            listen: self.listen,
            udp: if self.no_udp {
                None
            } else {
                Some(self.udp.unwrap_or(self.listen))
            },
            mode: self.mode,
            max_conns: self.max_conns,
            max_pending: self.max_pending,
            idle_timeout: secs(self.idle_timeout),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            backlog: self.backlog,
            stats_interval: secs(self.stats_interval),
            max_frame: self.max_frame,
            max_line: self.max_line,
            root: self.root,
            reactors: self.reactors,
            metrics: self.metrics,
            max_memory: self.max_memory,
            // The binary owns the process, so it takes over the signals.
            handle_signals: true,
            udp_batch: self.udp_batch,
            udp_coalesce: Duration::from_micros(self.udp_coalesce),
            sendfile: !self.no_sendfile,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let check_only = cli.check;
    let config = cli.into_config();
    let result = if check_only {
        check(&config)
    } else {
        serve(config)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echoloop: {e}");
            // A setting that cannot work is a usage error, like a bad flag.
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}

/// `--check`: validates the settings and prints them, opening nothing.
fn check(config: &Config) -> Result<(), Error> {
    config.validate()?;
    println!("configuration ok: {config:?}");
    Ok(())
}

/// Binds, prints the bound addresses, and serves until shutdown.
fn serve(config: Config) -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    echoloop::raise_fd_limit();
    let server = Server::bind(config)?;
    // The bound addresses on stdout, whatever RUST_LOG says: with port 0
    // this is how a script learns where to connect.
    let udp = server
        .udp_addr()
        .map_or("off".to_string(), |a| a.to_string());
    let metrics = server
        .metrics_addr()
        .map_or(String::new(), |a| format!(" metrics={a}"));
    println!("tcp={} udp={udp}{metrics}", server.tcp_addr());
    server.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing no flags gives `Config::default()` (with the signals the
    /// binary always handles): the defaults are defined once.
    #[test]
    fn parsed_defaults_are_config_default() {
        let parsed = Cli::parse_from(["echoloop"]).into_config();
        let expected = Config {
            handle_signals: true,
            ..Config::default()
        };
        assert_eq!(parsed, expected);
    }

    /// Each flag's `--help` states the bound `Config::validate` enforces on
    /// it, with the very number the validation uses.
    #[test]
    fn help_states_the_bounds_validation_enforces() {
        use clap::CommandFactory;
        use echoloop::ConfigError;
        let help = Cli::command().render_long_help().to_string();
        let d = Config::default;
        let out_of_bounds = [
            Config {
                max_pending: usize::MAX,
                ..d()
            },
            Config {
                max_frame: usize::MAX,
                ..d()
            },
            Config {
                max_line: usize::MAX,
                ..d()
            },
            Config {
                reactors: usize::MAX,
                ..d()
            },
            Config {
                udp_batch: usize::MAX,
                ..d()
            },
            Config {
                udp_coalesce: Duration::MAX,
                ..d()
            },
            Config {
                max_memory: 0,
                ..d()
            },
        ];
        for config in out_of_bounds {
            let (flag, bound) = match config.validate().unwrap_err() {
                ConfigError::TooLarge { flag, max } => (flag, max),
                ConfigError::TooSmall { flag, min } => (flag, min),
                other => panic!("unexpected {other:?}"),
            };
            let start = help.find(&format!("--{flag} <")).expect(flag);
            let end = help[start..]
                .find("\n      --")
                .map_or(help.len(), |e| start + e);
            let text = &help[start..end];
            assert!(
                text.contains(&bound.to_string()),
                "--{flag} help lacks {bound}: {text}"
            );
        }
    }

    /// A duration flag of 0 turns the setting off; others are whole seconds.
    #[test]
    fn zero_seconds_means_off() {
        let cli = Cli::parse_from(["echoloop", "--idle-timeout", "0", "--stats-interval", "7"]);
        let config = cli.into_config();
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.stats_interval, Some(Duration::from_secs(7)));
    }
}
