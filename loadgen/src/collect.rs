//! The collector: runs on the caller's thread while the workers run, adding their
//! per-second histograms into the total, writing the interval log, and showing progress
//! (`progress.rs`).
//!
//! The total histogram is built only by adding interval histograms, so the `.hlog` file
//! always holds exactly the data of the report: merging logs can reproduce it exactly.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::hlog::HlogWriter;
use crate::latency::{add_into, new_histogram};
use crate::msg::{WorkerMsg, INTERVAL_NS};
use crate::phase::Phase;
use crate::progress::Progress;
use crate::stats::ThreadStats;

/// Adds up what the workers send.
pub(crate) struct Collector {
    threads: usize,
    /// Highest interval each thread reported, and whether it is done.
    reported: Vec<Option<u64>>,
    done: Vec<bool>,
    /// Intervals received but not yet complete from every thread.
    pending: BTreeMap<u64, Histogram<u64>>,
    /// Latest cumulative error count per thread.
    errors: Vec<u64>,
    next_emit: u64,
    /// Sum of every emitted interval.
    pub(crate) total: Histogram<u64>,
    /// Sum of the threads' handshake histograms.
    pub(crate) connect: Histogram<u64>,
    /// Sum of the threads' counters.
    pub(crate) stats: ThreadStats,
    /// Latest thread end, ns since epoch.
    pub(crate) end_ns: u64,
    /// When the connect phase ended, ns since epoch, once a worker said so.
    pub(crate) connect_end: Option<u64>,
    /// Some connection works; and the connect phase's end was said.
    up: bool,
    said: bool,
    /// The run's start in wall-clock time (the `.hlog` timestamps are wall-clock).
    epoch: SystemTime,
    /// `--start-at` as ns since the epoch: the measured window's fixed start.
    start_ns: Option<u64>,
    phase: Arc<Phase>,
    /// Intervals emitted but not yet written (the last one's length is known at the end).
    emitted: Vec<(u64, Histogram<u64>)>,
    hlog: Option<HlogWriter>,
    progress: Progress,
    /// First worker that could not start.
    pub(crate) failure: Option<(usize, io::Error)>,
}

/// What the collector found, once every worker is done.
pub(crate) struct Collected {
    /// Every measured latency, ns.
    pub(crate) histogram: Histogram<u64>,
    /// Every handshake's duration, ns.
    pub(crate) connect: Histogram<u64>,
    /// The threads' counters added up.
    pub(crate) stats: ThreadStats,
    /// When the last thread stopped, ns since the epoch.
    pub(crate) end_ns: u64,
    /// When the connect phase ended, ns since the epoch (`None` if it never did).
    pub(crate) connect_end: Option<u64>,
    /// The interval log, all intervals written, waiting for its end line.
    pub(crate) hlog: Option<HlogWriter>,
}

impl Collector {
    /// A collector for `threads` workers sharing `phase`; progress (if `progress`) for a
    /// run of `warmup` then `duration` that started at `epoch`, measured from `start_ns`
    /// (ns since the epoch) if given, else from `warmup` after the connect phase.
    pub(crate) fn new(
        threads: usize,
        phase: Arc<Phase>,
        hlog: Option<HlogWriter>,
        progress: bool,
        (epoch, start_ns, warmup, duration): (SystemTime, Option<u64>, Duration, Duration),
    ) -> Self {
        Collector {
            threads,
            reported: vec![None; threads],
            done: vec![false; threads],
            pending: BTreeMap::new(),
            errors: vec![0; threads],
            next_emit: 0,
            total: new_histogram(),
            connect: new_histogram(),
            stats: ThreadStats::default(),
            end_ns: 0,
            connect_end: None,
            up: false,
            said: false,
            epoch,
            start_ns,
            phase,
            emitted: Vec::new(),
            hlog,
            progress: Progress {
                enabled: progress,
                tty: io::stderr().is_terminal(),
                warmup,
                duration,
            },
            failure: None,
        }
    }

    /// When the measured time starts, ns since the epoch, once known.
    fn measure_start(&self) -> Option<u64> {
        let warmup = self.progress.warmup;
        self.connect_end
            .map(|end| crate::timeline::measure_start(end, self.start_ns, warmup))
    }

    /// Takes one worker message.
    pub(crate) fn on_msg(&mut self, msg: WorkerMsg) -> io::Result<()> {
        match msg {
            WorkerMsg::Interval {
                thread,
                index,
                hist,
                errors,
            } => {
                self.errors[thread] = errors;
                self.add_interval(thread, index, &hist);
            }
            WorkerMsg::Done {
                thread,
                index,
                hist,
                connect,
                stats,
                end_ns,
            } => {
                self.errors[thread] = stats.errors.total();
                self.add_interval(thread, index, &hist);
                add_into(&mut self.connect, &connect);
                self.done[thread] = true;
                self.stats.add(&stats);
                self.end_ns = self.end_ns.max(end_ns);
            }
            WorkerMsg::Connected { at_ns } => self.on_connected(at_ns)?,
            WorkerMsg::Up => {
                self.up = true;
                self.say_connected();
            }
            WorkerMsg::Failed { thread, error } => {
                self.failure.get_or_insert((thread, error));
            }
        }
        self.emit_ready()
    }

    /// Once the connect phase is over and a connection works (UDP: answered), says so.
    fn say_connected(&mut self) {
        if let (Some(at_ns), true, false) = (self.connect_end, self.up, self.said) {
            self.said = true;
            let (opened, asked) = (self.phase.opened(), self.phase.asked());
            self.progress.connected(at_ns, opened, asked, self.start_ns);
        }
    }

    /// The first worker to see the connect phase end: say so, start the interval log.
    fn on_connected(&mut self, at_ns: u64) -> io::Result<()> {
        if self.connect_end.is_some() {
            return Ok(());
        }
        self.connect_end = Some(at_ns);
        self.say_connected();
        let start = self.measure_start().unwrap_or(at_ns);
        match self.hlog.as_mut() {
            Some(sink) => sink.start(self.epoch + Duration::from_nanos(start)),
            None => Ok(()),
        }
    }

    fn add_interval(&mut self, thread: usize, index: u64, hist: &Histogram<u64>) {
        self.reported[thread] = Some(index);
        let slot = self.pending.entry(index).or_insert_with(new_histogram);
        add_into(slot, hist);
    }

    /// Emits, in order, every interval that no running thread can still add to.
    fn emit_ready(&mut self) -> io::Result<()> {
        loop {
            let k = self.next_emit;
            if self.done.iter().all(|d| *d) && self.pending.is_empty() {
                return Ok(());
            }
            let complete =
                (0..self.threads).all(|t| self.done[t] || self.reported[t].is_some_and(|r| r >= k));
            if !complete {
                return Ok(());
            }
            let hist = self.pending.remove(&k).unwrap_or_else(new_histogram);
            add_into(&mut self.total, &hist);
            let errors: u64 = self.errors.iter().sum();
            // Every thread done: the run ended at `end_ns`, and if no connection was ever
            // made the run is an error, with no progress to show.
            let all_done = self.done.iter().all(|d| *d);
            let end = all_done.then(|| match (self.stats.opened, self.measure_start()) {
                (0, _) | (_, None) => 0,
                (_, Some(start)) => self.end_ns.saturating_sub(start),
            });
            let p99 = self.total.value_at_quantile(0.99);
            self.progress.line(k, hist.len(), p99, errors, end);
            self.emitted.push((k, hist));
            self.write_emitted()?;
            self.next_emit += 1;
        }
    }

    /// Writes emitted intervals to the log, all but the last, whose length is only known
    /// when the run ends.
    fn write_emitted(&mut self) -> io::Result<()> {
        let Some(sink) = self.hlog.as_mut() else {
            self.emitted.clear();
            return Ok(());
        };
        let n = self.emitted.len().saturating_sub(1);
        for (k, h) in self.emitted.drain(..n) {
            sink.write(
                &h,
                Duration::from_nanos(k * INTERVAL_NS),
                Duration::from_nanos(INTERVAL_NS),
            )?;
        }
        Ok(())
    }

    /// All workers are done: the last interval runs to the end of the drain.
    pub(crate) fn finish(mut self) -> io::Result<Collected> {
        self.progress.finish();
        let start = self.measure_start();
        if let (Some(sink), Some(start)) = (self.hlog.as_mut(), start) {
            if let Some((k, h)) = self.emitted.pop() {
                let from = k * INTERVAL_NS;
                let len = self.end_ns.saturating_sub(start + from).max(1);
                sink.write(&h, Duration::from_nanos(from), Duration::from_nanos(len))?;
            }
        }
        Ok(Collected {
            histogram: self.total,
            connect: self.connect,
            stats: self.stats,
            end_ns: self.end_ns,
            connect_end: self.connect_end,
            hlog: self.hlog,
        })
    }
}
