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
//! total, spread evenly over the connections (`schedule.rs`), whatever the server does. That
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
//! (`timer.rs`), not the millisecond poll timeout, so its own timer slop stays in microseconds.
//!
//! # Verification
//!
//! Each message carries its connection id, a sequence number, a check word and a pattern
//! derived from both ([`payload`]); every byte of every echo is compared. A per-connection
//! window (`verify.rs`) tells corrupt, missing, duplicated and reordered data apart, and for
//! UDP lost (no answer within `--udp-timeout`) and late datagrams. Any data error or failed
//! connection fails the run; UDP loss fails it only beyond `--max-loss`.
//!
//! # Reactor
//!
//! Each of `--threads` threads runs one mio `Poll` (`driver.rs`) over every `threads`-th
//! connection. Readiness is edge-triggered: a readable connection is read until
//! `WouldBlock` (or, for TCP on Linux, a short read, unless the same event reported the
//! peer's FIN or an error: no later edge would), its echoes verified, and then all the
//! messages it may send go out in **one** `write`. Buffers are allocated when a connection
//! opens and reused; nothing is allocated per message. A turn of the loop costs what its
//! events cost: deadlines sit in a heap (`deadlines.rs`) and the counts the loop decides by
//! are kept as connections change (`table.rs`), so 19,000 idle connections cost nothing.
//!
//! # Connect phase
//!
//! Connections open in batches between polls (`ramp.rs`), from several loopback source
//! addresses when there are many (`source.rs`), each stamped when its own `connect()` is
//! called; a connect times out only after the socket itself was asked. Warm-up starts when
//! every connection has opened or failed (`phase.rs`), so the measured window always has
//! them all. Every handshake's duration goes into its own histogram; `--reconnect-after N`
//! closes each connection after N echoes and opens a new one, measuring churn.
//!
//! # Many processes, one run
//!
//! `--shard I/N` makes this process one of N running one load together (`shard.rs`): it
//! owns the global connection ids `I, I+N, ...` and sends their messages on the run's own
//! schedule, so the shards' sends interleave into exactly `--rate`. `--start-at` fixes the
//! measured window in wall-clock time (`start.rs`), so shards on different machines measure
//! the same seconds. Each `.hlog` ends with an end line (`endline.rs`) holding the shard's
//! verdict and window, from which `loadgen merge` ([`merge`], `merged.rs`) gives one verdict:
//! PASS only if every shard is there, whole, and passed.
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `cli.rs`, `config.rs` | the command line; defaults, limits, validation, duration parsing |
//! | `payload.rs` | the message codec |
//! | `verify.rs` | in-flight window, error kinds |
//! | `stream.rs` | a TCP echo stream cut into messages; resynchronising after junk |
//! | `schedule.rs` | open-loop schedule and per-thread cursor |
//! | `timer.rs` | precise wake-ups (timerfd) |
//! | `conn.rs` | per-thread context, the `Client` trait, send policy, buffer budget |
//! | `source.rs`, `sys.rs` | source addresses and ports; the syscalls std lacks |
//! | `tcp.rs`, `udp.rs` | the two clients |
//! | `udp_batch.rs` | UDP on Linux: a thread's `sendmmsg`/`recvmmsg` batch buffers (`--udp-batch`) |
//! | `phase.rs` | the connect phase shared by the threads, and the timeline after it |
//! | `ramp.rs` | which connection opens next |
//! | `table.rs`, `deadlines.rs` | a thread's connections, their counts and deadlines |
//! | `driver.rs` | the per-thread event loop |
//! | `stats.rs`, `collect.rs` | counters; adding intervals, `.hlog` writing, progress |
//! | `report.rs`, `connections.rs`, `settings.rs` | text and JSON reports, pass/fail |
//! | `export.rs` | `.hgrm` and SVG plot |
//! | `error.rs` | why a run or merge produced no report; exit statuses |
//! | `shard.rs`, `start.rs` | `--shard` id arithmetic; `--start-at` parsing and checks |
//! | `endline.rs` | the end line of a `.hlog`: shard, verdict, window (written and read) |
//! | `merge.rs`, `merged.rs` | `loadgen merge` over `.hlog` files; its verdict over the shards |
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
// Unsafe code is fenced into `sys.rs` (the syscalls std, mio, socket2 and rustix do not
// wrap); every block there says why it is sound, which clippy checks.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod budget;
#[cfg(feature = "cli")]
pub mod cli;
mod clock;
mod collect;
pub mod config;
mod conn;
mod connections;
mod ctx;
mod deadlines;
mod driver;
mod endline;
mod error;
pub mod export;
pub mod hlog;
mod io_text;
mod latency;
pub mod merge;
mod merged;
mod msg;
pub mod payload;
mod phase;
mod ramp;
pub mod report;
mod schedule;
mod send;
mod settings;
mod shard;
mod source;
mod start;
mod stats;
mod stream;
#[allow(unsafe_code)]
mod sys;
mod table;
mod tcp;
mod timeline;
mod timer;
mod udp;
mod udp_batch;
mod validate;
mod verify;

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

pub use config::{ConfigError, Protocol, RunConfig};
pub use connections::ConnectionReport;
pub use error::Error;
pub use merged::Merged;
pub use phase::GIVE_UP_AFTER;
pub use report::Report;
pub use settings::Outputs;
pub use shard::{Shard, ShardError};
pub use verify::ErrorCounts;

use collect::{Collected, Collector};
use driver::{run_worker, WorkerSpec, WAKER};
use hlog::HlogWriter;
use msg::WorkerMsg;
use phase::Phase;
use report::ScheduleReport;

/// Checks that a freshly opened output file takes writes, with a write of zero bytes:
/// a path can open and still refuse every write (`/proc/version` says EIO, `/dev/full`
/// ENOSPC), and that must fail before any traffic, not after the run. Writes nothing.
pub fn probe_write(mut file: &File) -> std::io::Result<()> {
    file.write(&[]).map(|_| ())
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on a socket about to be bound to a source address: the
/// port is then chosen at `connect()`, unique per (source, destination) pair rather than
/// per source address (README, "Source addresses and ports"). Linux only; elsewhere a
/// no-op. loadgen does this for every `--bind` connection; `examples/source_ports.rs`
/// measures why.
pub fn bind_address_no_port(socket: &socket2::Socket) -> std::io::Result<()> {
    sys::bind_address_no_port(socket)
}

/// Descriptors beyond one per connection: stdio, the output files, and per thread a
/// poller, its waker and a timer.
const FD_RESERVE: u64 = 32;

/// Raises the soft open-files limit to the hard one, as the `loadgen` binary does before a
/// run (a library user decides whether to; tests of many connections do). Returns the new
/// soft limit, if it could be read.
pub fn raise_open_files_limit() -> Option<u64> {
    sys::raise_open_files_limit()
}

/// Checks that the run's connections fit under the open-files limit: otherwise connects
/// would fail with "Too many open files" part way through.
fn check_open_files(cfg: &RunConfig) -> Result<(), ConfigError> {
    let limit = sys::open_files_limit().unwrap_or(u64::MAX);
    let need = cfg.owned() as u64 + FD_RESERVE + 4 * cfg.threads as u64;
    if need <= limit {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        flag: "connections",
        reason: format!(
            "{} connections need about {need} open files, and the limit is {limit}: \
             raise it (ulimit -n) or lower --connections",
            cfg.owned()
        ),
    })
}

/// Runs a load test as configured and returns its report. Blocks for the connect phase,
/// warm-up and duration (+ the drain of owed echoes). Progress goes to stderr if
/// `cfg.progress`.
pub fn run(cfg: &RunConfig) -> Result<Report, Error> {
    cfg.validate()?;
    // Read together, so that --start-at (wall clock) maps onto the monotonic clock the
    // workers keep time by.
    let (epoch, wall) = (Instant::now(), SystemTime::now());
    if let Some(at) = cfg.start_at {
        start::check(at, wall, cfg.warmup)?;
    }
    let start_ns = cfg.start_at.map(|at| start::epoch_ns(at, wall));
    check_open_files(cfg)?;
    let wire = payload::Codec::new(cfg.size, cfg.framed).wire_len();
    let hlog = open_hlog(cfg, wire)?;
    let (rx, handles, phase) = spawn_workers(cfg, epoch, start_ns)?;
    // The connect phase's end is printed by the collector only if a connection opened,
    // so a refused target gets its one error line and nothing else.
    let times = (wall, start_ns, cfg.warmup, cfg.duration);
    let mut collector = Collector::new(cfg.threads, phase.clone(), hlog, cfg.progress, times);
    let io_err = |source| Error::Output {
        path: cfg.hlog.clone().unwrap_or_default(),
        source,
    };
    // Ends when every worker has finished and dropped its sender.
    for msg in rx {
        collector.on_msg(msg).map_err(io_err)?;
    }
    for (thread, h) in handles.into_iter().enumerate() {
        h.join().map_err(|_| Error::Panicked { thread })?;
    }
    let failure = collector.failure.take();
    let mut run = collector.finish().map_err(io_err)?;
    let hlog = run.hlog.take();
    let outcome = if let Some((thread, source)) = failure {
        Err(Error::Reactor { thread, source })
    } else if run.stats.opened == 0 && (run.stats.failed > 0 || phase.gave_up()) {
        Err(Error::Connect {
            target: cfg.target,
            failed: run.stats.failed,
            asked: cfg.owned() as u64,
            reason: run.stats.conn_error.clone().unwrap_or_default(),
        })
    } else {
        Ok(build_report(cfg, wire, (wall, start_ns), run))
    };
    // Last: the end line says the log is whole, and whether the run passed.
    if let Some(sink) = hlog {
        sink.end(&endline::EndLine::of(cfg, &outcome))
            .map_err(io_err)?;
    }
    outcome
}

/// Creates the `--hlog` file before any traffic, so a bad path fails fast.
fn open_hlog(cfg: &RunConfig, wire: usize) -> Result<Option<HlogWriter>, Error> {
    let Some(path) = &cfg.hlog else {
        return Ok(None);
    };
    HlogWriter::create(path, wire)
        .map(Some)
        .map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })
}

type Workers = (
    mpsc::Receiver<WorkerMsg>,
    Vec<std::thread::JoinHandle<()>>,
    Arc<Phase>,
);

/// Starts one reactor thread per `cfg.threads`, all sharing one epoch and one connect
/// phase. The pollers are made here so that each one's waker can be handed to the phase.
fn spawn_workers(cfg: &RunConfig, epoch: Instant, start_ns: Option<u64>) -> Result<Workers, Error> {
    let poller_err = |source| Error::Poller { source };
    let mut polls = Vec::with_capacity(cfg.threads);
    let mut wakers = Vec::with_capacity(cfg.threads);
    for _ in 0..cfg.threads {
        let poll = mio::Poll::new().map_err(poller_err)?;
        wakers.push(mio::Waker::new(poll.registry(), WAKER).map_err(poller_err)?);
        polls.push(poll);
    }
    let phase = Arc::new(Phase::new(cfg.owned(), wakers));
    let shared = Arc::new(cfg.clone());
    let sources: Arc<[IpAddr]> = source::plan(cfg).into();
    if !sources.is_empty() {
        log::debug!("sources n={} first={}", sources.len(), sources[0]);
    }
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(cfg.threads);
    for (thread, poll) in polls.into_iter().enumerate() {
        let spec = WorkerSpec {
            thread,
            cfg: shared.clone(),
            poll,
            phase: phase.clone(),
            sources: sources.clone(),
            epoch,
            start_ns,
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
                .map_err(|source| Error::Spawn { source })?,
        );
    }
    Ok((rx, handles, phase))
}

/// The report of a finished run; `wall` is the epoch's wall-clock time.
fn build_report(
    cfg: &RunConfig,
    wire: usize,
    (wall, start_ns): (SystemTime, Option<u64>),
    run: Collected,
) -> Report {
    let Collected {
        histogram,
        connect,
        stats,
        end_ns,
        connect_end,
        ..
    } = run;
    let connect_end = connect_end.unwrap_or(end_ns);
    let measure_start = start_ns.unwrap_or(connect_end.saturating_add(clock::ns(cfg.warmup)));
    // --start-at: a connect phase still running at the start left the window short.
    let late_start = start_ns
        .filter(|&s| connect_end > s)
        .map(|s| Duration::from_nanos(connect_end - s));
    // Shorter than asked only if every connection died early.
    let duration = cfg
        .duration
        .min(Duration::from_nanos(end_ns.saturating_sub(measure_start)));
    let schedule = cfg.rate.map(|target_rate| ScheduleReport {
        target_rate,
        late_sends: stats.late_sends,
        max_lag_us: stats.max_lag_ns as f64 / 1000.0,
        not_sent: stats.not_sent,
        not_sent_measured: stats.not_sent_measured,
    });
    let connections = ConnectionReport::new(
        cfg,
        &stats,
        connect,
        Duration::from_nanos(connect_end),
        duration,
    );
    Report {
        config: Some(cfg.clone()),
        outputs: settings::Outputs::default(),
        started_at: Some(wall + Duration::from_nanos(measure_start)),
        late_start,
        merged: None,
        duration,
        wire_bytes: Some(wire),
        histogram,
        errors: stats.errors,
        connections: Some(connections),
        sent: stats.sent,
        schedule,
        saturated: stats.saturated,
        first_error: stats.first_error.map(|(_, what)| what),
        conn_error: stats.conn_error,
    }
}
