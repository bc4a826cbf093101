//! [`run`]: one load test from a validated configuration to its report. It checks what
//! must hold before any traffic (the clock for `--start-at`, the open-files limit, the
//! `--hlog` path), starts one reactor thread per `--threads`, collects what they send on
//! this thread, and builds the report, or the typed error that says why there is none.

use std::net::IpAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use crate::collect::{Collected, Collector};
use crate::config::{ConfigError, Protocol, RunConfig};
use crate::connections::ConnectionReport;
use crate::driver::{run_worker, WorkerSpec, WAKER};
use crate::endline::EndLine;
use crate::error::Error;
use crate::hlog::HlogWriter;
use crate::msg::WorkerMsg;
use crate::phase::Phase;
use crate::report::{Report, ScheduleReport};
use crate::{payload, settings, source, start, sys, tcp, timeline, udp};

/// Descriptors beyond one per connection: stdio, the output files, and per thread a
/// poller, its waker and a timer.
const FD_RESERVE: u64 = 32;

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
        start::check(at, wall, cfg.warmup).map_err(ConfigError::from)?;
    }
    let start_ns = cfg.start_at.map(|at| start::epoch_ns(at, wall));
    check_open_files(cfg)?;
    let wire = payload::Codec::new(cfg.size, cfg.framed).wire_len();
    let hlog = open_hlog(cfg, wire)?;
    let (rx, handles, phase) = spawn_workers(cfg, epoch, start_ns)?;
    // The connect phase's end is printed by the collector only if a connection opened,
    // so a refused target gets its one error line and nothing else.
    let times = (wall, start_ns, cfg.warmup, cfg.duration);
    let mut collector = Collector::new(cfg.threads, phase, hlog, cfg.progress, times);
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
    } else if let (0, Some(reason)) = (run.stats.opened, run.stats.connect_failure.take()) {
        // Every connect failed (or loadgen gave up after GIVE_UP_AFTER of them).
        Err(Error::Connect {
            target: cfg.target,
            failed: run.stats.failed,
            asked: cfg.owned() as u64,
            reason,
        })
    } else {
        Ok(build_report(cfg, wire, (wall, start_ns), run))
    };
    // Last: the end line says the log is whole, and whether the run passed.
    if let Some(sink) = hlog {
        sink.end(&end_line(cfg, &outcome)).map_err(io_err)?;
    }
    outcome
}

/// The `.hlog` end line of a run of `cfg` that ended with `outcome`: the report's verdict,
/// or the error that left no report (a failed run, with nothing measured).
fn end_line(cfg: &RunConfig, outcome: &Result<Report, Error>) -> EndLine {
    match outcome {
        Ok(r) => {
            let start = r.started_at.map(start::unix_secs);
            let window = start.map(|s| (s, s + r.duration.as_secs_f64()));
            EndLine::new(cfg, r.passed(), r.failures(), r.messages(), window)
        }
        Err(e) => EndLine::new(cfg, false, vec![e.to_string()], 0, None),
    }
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
    let measure_start = timeline::measure_start(connect_end, start_ns, cfg.warmup);
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
