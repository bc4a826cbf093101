//! loadgen: drives TCP or UDP load at an echo server, verifies every echoed byte, and
//! reports throughput and latency that a stalling server cannot hide.
//!
//! # Closed loop and open loop
//!
//! In a **closed loop** (the default) each connection keeps `--pipeline` messages in flight:
//! when an echo returns, the next message goes out. The offered load adapts to the server,
//! which is what you want to find its throughput. Latency is the time from the send to the
//! complete echo.
//!
//! In an **open loop** (`--rate R`) messages are sent on a fixed schedule, R per second in
//! total, spread evenly over the connections ([`schedule`]), whatever the server does. That
//! is how real users behave, and it is the only way to see what a stall costs them.
//!
//! # Coordinated omission
//!
//! A closed-loop tester that measures from the actual send time coordinates with the
//! server: while the server stalls for a second, the tester sends nothing, so the thousands
//! of requests users would have sent in that second are never measured, and p99 looks fine.
//! In open loop loadgen measures each message from its *scheduled* send time (wrk2 and
//! HdrHistogram call this correcting for coordinated omission). After a 1 s stall the
//! messages due during it are sent late and their latency includes the wait, so the stall
//! shows in p99 and max. If loadgen itself cannot keep the schedule, it counts the late
//! sends and says so in the report. The reactor wakes for scheduled sends with a `timerfd`
//! ([`timer`]), not the millisecond poll timeout, so its own timer slop stays in microseconds.
//!
//! # Verification
//!
//! Each message carries its connection id, a sequence number, a check word and a pattern
//! derived from both ([`payload`]); every byte of every echo is compared. A per-connection
//! window ([`verify`]) tells corrupt, missing, duplicated and reordered data apart, and for
//! UDP lost (no answer within `--udp-timeout`) and late datagrams. Any data error or failed
//! connection fails the run; UDP loss fails it only beyond `--max-loss`.
//!
//! # Reactor
//!
//! Each of `--threads` threads runs one mio `Poll` ([`driver`]) over every `threads`-th
//! connection. Readiness is edge-triggered: a readable connection is read until
//! `WouldBlock` (or, for TCP on Linux, a short read, unless the same event reported the
//! peer's FIN or an error: no later edge would), its echoes verified, and then all the
//! messages it may send go out in **one** `write`. Buffers are allocated when a connection
//! opens and reused; nothing is allocated per message.
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | command line, defaults, limits and validation, duration parsing |
//! | `payload.rs` | the message codec |
//! | `verify.rs` | in-flight window, error kinds |
//! | `schedule.rs` | open-loop schedule and per-thread cursor |
//! | `timer.rs` | precise wake-ups (timerfd) |
//! | `conn.rs` | per-thread context, the `Client` trait, send policy, buffer budget |
//! | `tcp.rs`, `udp.rs` | the two clients |
//! | `driver.rs` | the per-thread event loop: ramp-up, phases, intervals |
//! | `collect.rs` | adding intervals, `.hlog` writing, progress |
//! | `report.rs` | text and JSON reports, pass/fail |
//! | `export.rs` | `.hgrm` and SVG plot |
//! | `merge.rs` | `loadgen merge` over `.hlog` files |
//!
//! # Example
//!
//! ```no_run
//! let mut cfg = loadgen::RunConfig::new("127.0.0.1:7878".parse().unwrap());
//! cfg.duration = std::time::Duration::from_secs(2);
//! cfg.rate = Some(10_000.0);
//! let report = loadgen::run(&cfg).unwrap();
//! println!("{}", report.to_text());
//! assert!(report.passed());
//! ```

#![deny(missing_docs)]

pub mod collect;
pub mod config;
pub mod conn;
pub mod driver;
pub mod export;
pub mod merge;
pub mod payload;
pub mod report;
pub mod schedule;
pub mod tcp;
pub mod timer;
pub mod udp;
pub mod verify;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

pub use config::{ConfigError, Protocol, RunConfig};
pub use report::Report;

use collect::{Collector, HlogSink};
use driver::{run_worker, WorkerMsg, WorkerSpec};
use report::{Connections, ScheduleReport, Settings};

/// Why a run or merge could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is unusable; change the flag named. Exit status 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Not a single connection could be made: is the server running at that address?
    #[error("could not connect to {target}: {reason} ({failed} of {failed} connections failed)")]
    Connect {
        /// The target.
        target: std::net::SocketAddr,
        /// How many were tried.
        failed: u64,
        /// The first error.
        reason: String,
    },
    /// An output file could not be created or written; check the path and permissions.
    /// Every output path is opened before any traffic, so a bad one fails at once.
    #[error("cannot write {}: {}", path.display(), io_text(source))]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An input file could not be read or parsed.
    #[error("cannot read {}: {reason}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A worker thread could not start (e.g. out of file descriptors).
    #[error("worker failed: {0}")]
    Worker(String),
}

/// An IO error's text without the " (os error N)" suffix the standard library adds: the
/// messages loadgen prints say "Connection refused", as the README shows.
pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

impl Error {
    /// The exit status the command line uses: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Runs a load test as configured and returns its report. Blocks for warm-up + duration
/// (+ the drain of owed echoes). Progress goes to stderr if `cfg.progress`.
pub fn run(cfg: &RunConfig) -> Result<Report, Error> {
    cfg.validate()?;
    let wire = payload::Codec::new(cfg.size, cfg.framed).wire_len();
    let hlog = open_hlog(cfg, wire)?;
    let (rx, handles) = spawn_workers(cfg)?;
    // "warming up" is printed by the collector once a connection works, so a refused
    // target gets its one error line and nothing else.
    let mut collector = Collector::new(cfg.threads, hlog, cfg.progress, cfg.warmup, cfg.duration);
    let io_err = |source| Error::Output {
        path: cfg.hlog.clone().unwrap_or_default(),
        source,
    };
    // Ends when every worker has finished and dropped its sender.
    for msg in rx {
        collector.on_msg(msg).map_err(io_err)?;
    }
    for h in handles {
        h.join()
            .map_err(|_| Error::Worker("a worker thread panicked".into()))?;
    }
    if let Some(e) = collector.failure.take() {
        return Err(Error::Worker(e));
    }
    let warmup_ns = conn::ns(cfg.warmup);
    let (histogram, stats, end_ns) = collector.finish(warmup_ns).map_err(io_err)?;
    if stats.opened == 0 && stats.failed > 0 {
        let reason = stats.conn_error.unwrap_or_default();
        return Err(Error::Connect {
            target: cfg.target,
            failed: stats.failed,
            reason,
        });
    }
    // Shorter than asked only if every connection died early.
    let duration = cfg
        .duration
        .min(Duration::from_nanos(end_ns.saturating_sub(warmup_ns)));
    Ok(build_report(cfg, wire, duration, histogram, stats))
}

/// Creates the `--hlog` file before any traffic, so a bad path fails fast.
fn open_hlog(cfg: &RunConfig, wire: usize) -> Result<Option<HlogSink>, Error> {
    let Some(path) = &cfg.hlog else {
        return Ok(None);
    };
    let measure_start = SystemTime::now() + cfg.warmup;
    HlogSink::create(path, measure_start, wire)
        .map(Some)
        .map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })
}

type Workers = (mpsc::Receiver<WorkerMsg>, Vec<std::thread::JoinHandle<()>>);

/// Starts one reactor thread per `cfg.threads`, all sharing one epoch.
fn spawn_workers(cfg: &RunConfig) -> Result<Workers, Error> {
    let shared = Arc::new(cfg.clone());
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(cfg.threads);
    for thread in 0..cfg.threads {
        let spec = WorkerSpec {
            thread,
            cfg: shared.clone(),
            epoch,
            tx: tx.clone(),
        };
        let body = move || match spec.cfg.protocol {
            Protocol::Tcp => run_worker::<tcp::TcpClient>(spec),
            Protocol::Udp => run_worker::<udp::UdpClient>(spec),
        };
        let builder = std::thread::Builder::new().name(format!("loadgen-{thread}"));
        handles.push(
            builder
                .spawn(body)
                .map_err(|e| Error::Worker(e.to_string()))?,
        );
    }
    Ok((rx, handles))
}

fn build_report(
    cfg: &RunConfig,
    wire: usize,
    duration: Duration,
    histogram: hdrhistogram::Histogram<u64>,
    stats: conn::ThreadStats,
) -> Report {
    let schedule = cfg.rate.map(|target_rate| ScheduleReport {
        target_rate,
        late_sends: stats.late_sends,
        max_lag_us: stats.max_lag_ns as f64 / 1000.0,
    });
    Report {
        settings: Some(Settings::of(cfg, wire)),
        duration,
        wire_bytes: Some(wire),
        histogram,
        errors: stats.errors,
        connections: Connections {
            opened: stats.opened,
            failed: stats.failed + stats.broken,
        },
        sent: stats.sent,
        schedule,
        first_error: stats.first_error.map(|(_, what)| what),
        conn_error: stats.conn_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OS errors lose their "(os error N)" suffix; other errors keep their text.
    #[test]
    fn io_text_strips_the_os_error_code() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_text(&refused), "Connection refused");
        let custom = std::io::Error::other("no (os error 5) here");
        assert_eq!(io_text(&custom), "no (os error 5) here");
        let out = Error::Output {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::EISDIR),
        };
        assert_eq!(out.to_string(), "cannot write /x: Is a directory");
    }
}
