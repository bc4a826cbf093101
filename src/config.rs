//! Server settings: what can be configured, the defaults, and validation.
//!
//! `Config` is plain data with no IO, so the command line (`main.rs`), tests and
//! embedders all build the same struct. [`Config::validate`] rejects settings
//! that cannot work before any socket is opened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// The protocol a server speaks on every connection (see `protocol/`).
/// With the `cli` feature it is also the `--mode` flag's list of values
/// (clap's `ValueEnum`; each variant's first doc line is its `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Mode {
    /// Every byte back, in order, exactly once.
    #[default]
    Echo,
    /// ASCII letters upper-cased, every other byte unchanged.
    Upper,
    /// u32 big-endian length + payload frames, each echoed whole.
    Framed,
    /// Newline-delimited lines broadcast to every other client.
    Chat,
    /// File download from the --root directory.
    Files,
}

/// Everything `Server::bind` needs. Start from `Config::default()` and change
/// what you need; the defaults are the command line's (`main.rs` takes its
/// defaults from here, so they are defined once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// TCP listen address.
    pub listen: SocketAddr,
    /// UDP address; `None` runs without UDP.
    pub udp: Option<SocketAddr>,
    /// Protocol on TCP (and, for `upper`, on UDP).
    pub mode: Mode,
    /// Most connections open at once; also clamped below the open-files limit.
    pub max_conns: usize,
    /// Per-connection high-water mark of unsent output: once a connection is
    /// owed this many bytes or more (`>=`), the server stops reading it
    /// (backpressure) until it drains to `low_water()` (`<=`).
    pub max_pending: usize,
    /// Close a connection once no bytes moved either way for this long
    /// (`>=`); `None` never does.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, how long connections may keep flushing.
    pub drain_timeout: Duration,
    /// Listen backlog.
    pub backlog: u32,
    /// Log counters this often; `None` only at shutdown.
    pub stats_interval: Option<Duration>,
    /// `framed` mode: largest accepted frame payload.
    pub max_frame: usize,
    /// `chat` and `files` modes: longest accepted line, newline excluded.
    pub max_line: usize,
    /// `files` mode: the directory files are served from.
    pub root: Option<PathBuf>,
    /// Independent reactor threads, each with its own poller and sockets
    /// bound to the same address with SO_REUSEPORT; the kernel spreads
    /// clients across them. 1 (the default) is the classic single-threaded
    /// server. `chat` needs 1: its room lives in one reactor.
    pub reactors: usize,
    /// Serve Prometheus metrics over HTTP (`GET /metrics`) on this TCP
    /// address, from the reactor's own loop; `None` (the default) opens no
    /// metrics listener and records nothing per turn.
    pub metrics: Option<SocketAddr>,
    /// Server-wide bound on the bytes held for clients: unsent output,
    /// partial frames and lines, unanswered file requests. Past it (more
    /// than this held) the connections holding the most stop being read
    /// until the total falls to 3/4 of it (`<=`; see `memory.rs`), but for
    /// one framed client at a time let past it to finish its frame (the
    /// overdraft: at most one `max_frame` more). With several reactors each
    /// gets an equal share.
    pub max_memory: usize,
    /// Turn SIGINT/SIGTERM into a graceful shutdown, and a second one into
    /// an immediate exit (see `signals.rs`). The binary sets it; an embedder
    /// that handles signals itself leaves it off and uses a
    /// `ShutdownHandle`: no handler is installed then.
    pub handle_signals: bool,
    /// Datagrams moved per syscall on the UDP socket: up to this many per
    /// `recvmmsg`, their replies in one `sendmmsg` (Linux; elsewhere the
    /// plain loop always runs). 1 keeps the plain `recvfrom`/`sendto` loop.
    pub udp_batch: usize,
    /// Interrupt moderation for batched UDP: after a read that found four
    /// or more datagrams already waiting, the reactor lets this much time
    /// pass before it polls again, so the next `recvmmsg` finds a fuller
    /// batch (see `udp.rs` and `udp/moderation.rs`, which also backs off
    /// when pauses gather nothing). `Duration::ZERO` turns it off; it does nothing
    /// with `udp_batch` 1. At most 1 ms.
    pub udp_coalesce: Duration,
    /// `files` mode: send bodies with `sendfile` (Linux), straight from the
    /// page cache; `false` reads and writes them through user space, the
    /// only path elsewhere (kept for comparison: `--no-sendfile`).
    pub sendfile: bool,
}

/// Longest accepted duration setting: a year is "never" for every practical
/// purpose, and keeps `Instant + duration` from overflowing.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
// `ConfigError::DurationTooLong` spells it out.
const _: () = assert!(MAX_DURATION.as_secs() == 31_536_000);

/// Most `--reactors`: far more threads than cores only adds switching.
pub(crate) const MAX_REACTORS: usize = 256;

/// Largest `--max-pending`: memory is bounded by connections x this, so a
/// value that large is a mistake, not a setting.
pub(crate) const MAX_PENDING_LIMIT: usize = 1024 * 1024 * 1024;

/// Largest `--max-line`: a line buffer is per connection, so this bounds it.
pub(crate) const MAX_LINE_LIMIT: usize = 64 * 1024 * 1024;

/// Default `--udp-batch` (see `udp/batch.rs` and the README's performance
/// section for the measurements behind it).
pub(crate) const DEFAULT_UDP_BATCH: usize = 32;

/// Largest `--udp-batch`: the per-event cap on datagrams (more would only be
/// cut by it), and each slot reserves 64 KiB of address space.
pub(crate) const MAX_UDP_BATCH: usize = 256;

/// Default `--udp-coalesce`: enough for a batch of about 20 datagrams at
/// 300,000 a second, short next to a network's round trip (see the
/// README for the measurements behind it, and
/// the loads it costs).
pub(crate) const DEFAULT_UDP_COALESCE: Duration = Duration::from_micros(20);

/// Longest `--udp-coalesce`. Datagrams that arrive while the reactor pauses
/// wait in the socket's receive buffer: the 4 MiB `bind.rs` asks for holds
/// about 10,000 of 64 bytes (the kernel accounts 832 bytes for each), but
/// where `net.core.rmem_max` is left at 208 KiB the request gets 416 KiB,
/// 512 of them, which a 1 ms pause overflows past 512,000 datagrams a
/// second; longer pauses would overflow at rates one core can serve.
pub(crate) const MAX_UDP_COALESCE: Duration = Duration::from_millis(1);

/// Default `--max-conns`.
pub(crate) const DEFAULT_MAX_CONNS: usize = 10_000;

/// Smallest `--max-memory`: below this even a few ordinary connections
/// would keep the server at its limit.
pub(crate) const MIN_MAX_MEMORY: usize = 1024 * 1024;

/// Default TCP (and UDP) address.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

impl Default for Config {
    fn default() -> Config {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().expect("constant address parses");
        Config {
            listen,
            udp: Some(listen),
            mode: Mode::Echo,
            max_conns: DEFAULT_MAX_CONNS,
            max_pending: 256 * 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            drain_timeout: Duration::from_secs(5),
            backlog: 1024,
            stats_interval: None,
            max_frame: 1024 * 1024,
            max_line: 4096,
            root: None,
            reactors: 1,
            metrics: None,
            max_memory: crate::memory::DEFAULT_MAX_MEMORY,
            handle_signals: false,
            udp_batch: DEFAULT_UDP_BATCH,
            udp_coalesce: DEFAULT_UDP_COALESCE,
            sendfile: true,
        }
    }
}

impl Config {
    /// Checks settings that would make the server unusable; the error names
    /// the first one found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::{TooLarge, TooSmall};
        let at_least = |flag, value: usize, min: usize| {
            if value < min {
                return Err(TooSmall {
                    flag,
                    min: min as u64,
                });
            }
            Ok(())
        };
        let at_most = |flag, value: usize, max: usize| {
            if value > max {
                return Err(TooLarge {
                    flag,
                    max: max as u64,
                });
            }
            Ok(())
        };
        // One group per setting, in the order of the fields.
        at_least("max-conns", self.max_conns, 1)?;
        at_least("max-pending", self.max_pending, 1)?;
        at_most("max-pending", self.max_pending, MAX_PENDING_LIMIT)?;
        at_least("backlog", self.backlog as usize, 1)?;
        at_least("max-frame", self.max_frame, 1)?;
        // A frame's length prefix is a u32.
        at_most("max-frame", self.max_frame, u32::MAX as usize)?;
        at_least("max-line", self.max_line, 1)?;
        at_most("max-line", self.max_line, MAX_LINE_LIMIT)?;
        match (self.mode, &self.root) {
            (Mode::Files, None) => return Err(ConfigError::MissingRoot),
            (mode, Some(_)) if mode != Mode::Files => return Err(ConfigError::RootWithoutFiles),
            _ => {}
        }
        at_least("reactors", self.reactors, 1)?;
        at_most("reactors", self.reactors, MAX_REACTORS)?;
        if self.reactors > 1 && self.mode == Mode::Chat {
            return Err(ConfigError::ChatNeedsOneReactor);
        }
        if self.max_conns < self.reactors {
            return Err(ConfigError::FewerConnsThanReactors {
                reactors: self.reactors,
            });
        }
        at_least("max-memory", self.max_memory, MIN_MAX_MEMORY)?;
        at_least("udp-batch", self.udp_batch, 1)?;
        at_most("udp-batch", self.udp_batch, MAX_UDP_BATCH)?;
        if self.udp_coalesce > MAX_UDP_COALESCE {
            return Err(TooLarge {
                flag: "udp-coalesce",
                max: MAX_UDP_COALESCE.as_micros() as u64,
            });
        }
        // Deadlines are `now + duration`; keep them far from overflowing.
        for (flag, d) in [
            ("idle-timeout", self.idle_timeout),
            ("drain-timeout", Some(self.drain_timeout)),
            ("stats-interval", self.stats_interval),
        ] {
            if d.is_some_and(|d| d > MAX_DURATION) {
                return Err(ConfigError::DurationTooLong { flag });
            }
        }
        Ok(())
    }

    /// Output of at most this many bytes (`<=`) lets a paused connection read
    /// again. Half the high-water mark, so a paused connection does not flap
    /// between paused and reading on every write.
    pub(crate) fn low_water(&self) -> usize {
        self.max_pending / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(c.udp, Some(c.listen));
        assert_eq!(c.max_pending, 262_144);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
    }

    /// Each unusable setting is refused with the variant naming it.
    #[test]
    fn rejects_unusable_settings() {
        let refused = |c: Config| c.validate().unwrap_err();
        let min = |flag, min| ConfigError::TooSmall { flag, min };
        let max = |flag, max| ConfigError::TooLarge { flag, max };
        let d = Config::default;
        assert_eq!(
            refused(Config {
                max_conns: 0,
                ..d()
            }),
            min("max-conns", 1)
        );
        let files = Config {
            mode: Mode::Files,
            ..d()
        };
        assert_eq!(refused(files), ConfigError::MissingRoot);
        let root = Config {
            root: Some("/".into()),
            ..d()
        };
        assert_eq!(refused(root), ConfigError::RootWithoutFiles);
        assert_eq!(
            refused(Config {
                max_frame: 0,
                ..d()
            }),
            min("max-frame", 1)
        );
        let big_frame = u32::MAX as usize + 1;
        assert_eq!(
            refused(Config {
                max_frame: big_frame,
                ..d()
            }),
            max("max-frame", u64::from(u32::MAX))
        );
        let tiny_memory = Config {
            max_memory: MIN_MAX_MEMORY - 1,
            ..d()
        };
        assert_eq!(
            refused(tiny_memory),
            min("max-memory", MIN_MAX_MEMORY as u64)
        );
        assert_eq!(
            refused(Config {
                udp_batch: 0,
                ..d()
            }),
            min("udp-batch", 1)
        );
        let big_batch = Config {
            udp_batch: MAX_UDP_BATCH + 1,
            ..d()
        };
        assert_eq!(refused(big_batch), max("udp-batch", MAX_UDP_BATCH as u64));
        let long_wait = Config {
            udp_coalesce: MAX_UDP_COALESCE + Duration::from_nanos(1),
            ..d()
        };
        assert_eq!(refused(long_wait), max("udp-coalesce", 1000));
        let longest = Config {
            udp_coalesce: MAX_UDP_COALESCE,
            ..d()
        };
        assert_eq!(longest.validate(), Ok(()));
        let chat = Config {
            mode: Mode::Chat,
            reactors: 2,
            ..d()
        };
        assert_eq!(refused(chat), ConfigError::ChatNeedsOneReactor);
        let few = Config {
            max_conns: 2,
            reactors: 3,
            ..d()
        };
        assert_eq!(
            refused(few),
            ConfigError::FewerConnsThanReactors { reactors: 3 }
        );
    }

    /// The messages name the flag to change.
    #[test]
    fn messages_name_the_flag() {
        let e = Config {
            max_conns: 0,
            ..Config::default()
        };
        let msg = e.validate().unwrap_err().to_string();
        assert_eq!(msg, "--max-conns must be at least 1");
    }

    #[test]
    fn rejects_durations_that_would_overflow_a_deadline() {
        let huge = Some(Duration::from_secs(u64::MAX));
        let too_long = |flag| ConfigError::DurationTooLong { flag };
        let c = Config {
            idle_timeout: huge,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err(), too_long("idle-timeout"));
        let c = Config {
            stats_interval: huge,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err(), too_long("stats-interval"));
        let c = Config {
            drain_timeout: MAX_DURATION + Duration::from_secs(1),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err(), too_long("drain-timeout"));
        let c = Config {
            drain_timeout: MAX_DURATION,
            max_line: MAX_LINE_LIMIT + 1,
            ..Config::default()
        };
        let line = ConfigError::TooLarge {
            flag: "max-line",
            max: MAX_LINE_LIMIT as u64,
        };
        assert_eq!(c.validate().unwrap_err(), line);
    }
}
