//! Server settings: what can be configured, the defaults, and validation.
//!
//! `Config` is plain data with no IO, so the command line (`main.rs`), tests and
//! embedders all build the same struct. [`Config::validate`] rejects settings
//! that cannot work before any socket is opened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// The protocol a server speaks on every connection (see `protocol/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every byte back, in order, exactly once.
    #[default]
    Echo,
    /// ASCII letters upper-cased, every other byte unchanged.
    Upper,
    /// `u32` big-endian length + payload frames, each echoed whole.
    Framed,
    /// Newline-delimited lines broadcast to every other client.
    Chat,
    /// File download from `root`.
    Files,
}

/// Everything `Server::bind` needs. Start from `Config::default()` and change
/// what you need; the defaults are the command line's.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP listen address.
    pub listen: SocketAddr,
    /// UDP address; `None` runs without UDP.
    pub udp: Option<SocketAddr>,
    /// Protocol on TCP (and, for `upper`, on UDP).
    pub mode: Mode,
    /// Most connections open at once; also clamped below the open-files limit.
    pub max_conns: usize,
    /// Per-connection high-water mark of unsent output: past it the server
    /// stops reading that connection (backpressure).
    pub max_pending: usize,
    /// Close connections idle this long; `None` never does.
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
    /// partial frames and lines, unanswered file requests. Past it the
    /// connections holding the most stop being read until the total falls
    /// back (see `memory.rs`). With several reactors each gets an equal
    /// share.
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
    /// `files` mode: send bodies with `sendfile` (Linux), straight from the
    /// page cache; `false` reads and writes them through user space, the
    /// only path elsewhere (kept for comparison: `--no-sendfile`).
    pub sendfile: bool,
}

/// Longest accepted duration setting: a year is "never" for every practical
/// purpose, and keeps `Instant + duration` from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Most `--reactors`: far more threads than cores only adds switching.
pub const MAX_REACTORS: usize = 256;

/// Largest `--max-pending`: memory is bounded by connections x this, so a
/// value that large is a mistake, not a setting.
pub const MAX_PENDING_LIMIT: usize = 1024 * 1024 * 1024;

/// Largest `--max-line`: a line buffer is per connection, so this bounds it.
pub const MAX_LINE_LIMIT: usize = 64 * 1024 * 1024;

/// Default `--udp-batch` (see `udp_batch.rs` and the README's performance
/// section for the measurements behind it).
pub const DEFAULT_UDP_BATCH: usize = 32;

/// Largest `--udp-batch`: the per-event cap on datagrams (more would only be
/// cut by it), and each slot reserves 64 KiB of address space.
pub const MAX_UDP_BATCH: usize = 256;

/// Default `--max-conns`.
pub const DEFAULT_MAX_CONNS: usize = 10_000;

/// Smallest `--max-memory`: below this even a few ordinary connections
/// would keep the server at its limit.
pub const MIN_MAX_MEMORY: usize = 1024 * 1024;

/// Default TCP (and UDP) address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

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
            sendfile: true,
        }
    }
}

impl Config {
    /// Checks settings that would make the server unusable.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if self.max_conns == 0 {
            return bad("--max-conns must be at least 1");
        }
        if self.max_pending == 0 {
            return bad("--max-pending must be at least 1 byte");
        }
        if self.backlog == 0 {
            return bad("--backlog must be at least 1");
        }
        if self.max_line == 0 {
            return bad("--max-line must be at least 1 byte");
        }
        if self.max_frame == 0 {
            return bad("--max-frame must be at least 1 byte");
        }
        if self.max_frame > u32::MAX as usize {
            return bad("--max-frame cannot exceed 4294967295 (a u32 length)");
        }
        if self.max_memory < MIN_MAX_MEMORY {
            return bad("--max-memory must be at least 1048576 (1 MiB)");
        }
        if self.mode == Mode::Files && self.root.is_none() {
            return bad("--mode files needs --root DIR");
        }
        if self.reactors == 0 || self.reactors > MAX_REACTORS {
            return bad("--reactors must be between 1 and 256");
        }
        if self.reactors > 1 && self.mode == Mode::Chat {
            return bad("--mode chat needs --reactors 1 (the room lives in one reactor)");
        }
        if self.max_conns < self.reactors {
            return bad("--max-conns must be at least --reactors");
        }
        if self.max_pending > MAX_PENDING_LIMIT {
            return bad("--max-pending cannot exceed 1073741824 (1 GiB)");
        }
        if self.root.is_some() && self.mode != Mode::Files {
            return bad("--root only applies to --mode files");
        }
        if self.max_line > MAX_LINE_LIMIT {
            return bad("--max-line cannot exceed 67108864 (64 MiB)");
        }
        if self.udp_batch == 0 || self.udp_batch > MAX_UDP_BATCH {
            return bad("--udp-batch must be between 1 and 256");
        }
        // Deadlines are `now + duration`; keep them far from overflowing.
        let too_long = |d: Option<Duration>| d.is_some_and(|d| d > MAX_DURATION);
        if too_long(self.idle_timeout) {
            return bad("--idle-timeout cannot exceed 31536000 seconds (a year); 0 means never");
        }
        if too_long(Some(self.drain_timeout)) {
            return bad("--drain-timeout cannot exceed 31536000 seconds (a year)");
        }
        if too_long(self.stats_interval) {
            return bad("--stats-interval cannot exceed 31536000 seconds (a year)");
        }
        Ok(())
    }

    /// Output below this many bytes lets a paused connection read again. Half
    /// the high-water mark, so a paused connection does not flap between
    /// paused and reading on every write.
    pub fn low_water(&self) -> usize {
        self.max_pending / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_cli() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(c.udp, Some(c.listen));
        assert_eq!(c.max_pending, 262_144);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn rejects_unusable_settings() {
        let mut c = Config {
            max_conns: 0,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--max-conns"));
        c.max_conns = 1;
        c.mode = Mode::Files;
        assert!(c.validate().unwrap_err().to_string().contains("--root"));
        let zero_frame = Config {
            max_frame: 0,
            ..Config::default()
        };
        let msg = zero_frame.validate().unwrap_err().to_string();
        assert!(msg.contains("--max-frame"), "{msg}");
        let tiny_memory = Config {
            max_memory: MIN_MAX_MEMORY - 1,
            ..Config::default()
        };
        let msg = tiny_memory.validate().unwrap_err().to_string();
        assert!(msg.contains("--max-memory"), "{msg}");
        for udp_batch in [0, MAX_UDP_BATCH + 1] {
            let c = Config {
                udp_batch,
                ..Config::default()
            };
            assert!(c
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--udp-batch"));
        }
    }

    #[test]
    fn rejects_durations_that_would_overflow_a_deadline() {
        let huge = Some(Duration::from_secs(u64::MAX));
        let c = Config {
            idle_timeout: huge,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--idle-timeout"));
        let c = Config {
            stats_interval: huge,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--stats-interval"));
        let c = Config {
            drain_timeout: MAX_DURATION,
            max_line: MAX_LINE_LIMIT + 1,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("--max-line"));
    }
}
