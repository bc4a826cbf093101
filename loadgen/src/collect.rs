//! The collector: runs on the caller's thread while the workers run, adding their
//! per-second histograms into the total, writing the interval log, and printing progress.
//!
//! The total histogram is built only by adding interval histograms, so the `.hlog` file
//! always holds exactly the data of the report: merging logs can reproduce it exactly.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::conn::{new_histogram, ThreadStats};
use crate::driver::{WorkerMsg, INTERVAL_NS};

/// Comment prefix that records the wire size in an `.hlog`, for `merge` to report MB/s.
pub const WIRE_COMMENT: &str = "loadgen wire_bytes=";

/// Writes an HdrHistogram interval log: V2 deflate-compressed, base64, one line a second.
pub struct HlogSink {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HlogSink {
    /// Creates the file and writes the header; timestamps are seconds after `base`.
    pub fn create(path: &Path, base: SystemTime, wire_bytes: usize) -> io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("loadgen latency interval log; values in nanoseconds")
            .add_comment(&format!("{WIRE_COMMENT}{wire_bytes}"))
            .with_start_time(base)
            .with_base_time(base)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(out, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
        Ok(HlogSink { out, serializer })
    }

    /// Appends one interval.
    pub fn write(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> io::Result<()> {
        // A builder without headers writes nothing itself: it only formats the line.
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        w.write_histogram(h, start, length, None)
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One per-second line (or a bar on a terminal) on stderr, and the "warming up" line.
struct Progress {
    enabled: bool,
    tty: bool,
    warmup: Duration,
    duration: Duration,
    /// "warming up" was printed (or is not to be).
    warned_warmup: bool,
}

impl Progress {
    /// A connection works `at_ns` after the epoch: say that the warm-up runs, if it still
    /// does. Not before, so a refused target gets one error line and nothing else.
    fn up(&mut self, at_ns: u64) {
        let warming = at_ns < crate::conn::ns(self.warmup);
        if self.enabled && !self.warned_warmup && warming {
            eprintln!("warming up for {:?}", self.warmup);
        }
        self.warned_warmup = true;
    }

    /// Interval `index` (0-based) is complete with `msgs` messages. `end_ns`: when the run
    /// ended (ns since the start of the measured time), if it has: the last interval may
    /// be cut short, or may never have begun.
    fn line(&self, index: u64, msgs: u64, p99_ns: u64, errors: u64, end_ns: Option<u64>) {
        let measured = crate::conn::ns(self.duration).min(end_ns.unwrap_or(u64::MAX));
        let start = index * INTERVAL_NS;
        // An interval starting after the measured time holds only drained echoes; one
        // starting after the run ended (every connection failed in the warm-up) never was.
        if !self.enabled || start >= measured {
            return;
        }
        let length = (measured - start).min(INTERVAL_NS) as f64 / 1e9;
        let rate = msgs as f64 / length;
        let p99 = p99_ns as f64 / 1000.0;
        let stats = format!("{rate:.0} msg/s  p99 {p99:.1} us  errors {errors}");
        let second = index + 1;
        if self.tty {
            let total = self.duration.as_secs_f64().max(1.0);
            let done = ((second as f64 / total) * 30.0).min(30.0) as usize;
            let bar = format!("{}{}", "#".repeat(done), ".".repeat(30 - done));
            eprint!("\r\x1b[K[{bar}] {second:>4}s  {stats}");
        } else {
            eprintln!("[{second:>4}s] {stats}");
        }
    }

    fn finish(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

/// Adds up what the workers send.
pub struct Collector {
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
    pub total: Histogram<u64>,
    /// Sum of the threads' counters.
    pub stats: ThreadStats,
    /// Latest thread end, ns since epoch.
    pub end_ns: u64,
    /// Intervals emitted but not yet written (the last one's length is known at the end).
    emitted: Vec<(u64, Histogram<u64>)>,
    hlog: Option<HlogSink>,
    progress: Progress,
    /// First worker that could not start.
    pub failure: Option<String>,
}

impl Collector {
    /// A collector for `threads` workers; progress (if `progress`) for a run of `warmup`
    /// then `duration`.
    pub fn new(
        threads: usize,
        hlog: Option<HlogSink>,
        progress: bool,
        warmup: Duration,
        duration: Duration,
    ) -> Self {
        Collector {
            threads,
            reported: vec![None; threads],
            done: vec![false; threads],
            pending: BTreeMap::new(),
            errors: vec![0; threads],
            next_emit: 0,
            total: new_histogram(),
            stats: ThreadStats::default(),
            end_ns: 0,
            emitted: Vec::new(),
            hlog,
            progress: Progress {
                enabled: progress,
                tty: io::stderr().is_terminal(),
                warmup,
                duration,
                warned_warmup: warmup.is_zero(),
            },
            failure: None,
        }
    }

    /// Takes one worker message.
    pub fn on_msg(&mut self, msg: WorkerMsg) -> io::Result<()> {
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
                stats,
                end_ns,
            } => {
                self.errors[thread] = stats.errors.total();
                self.add_interval(thread, index, &hist);
                self.done[thread] = true;
                self.stats.add(&stats);
                self.end_ns = self.end_ns.max(end_ns);
            }
            WorkerMsg::Up { at_ns } => self.progress.up(at_ns),
            WorkerMsg::Failed(e) => {
                self.failure.get_or_insert(e);
            }
        }
        self.emit_ready()
    }

    fn add_interval(&mut self, thread: usize, index: u64, hist: &Histogram<u64>) {
        self.reported[thread] = Some(index);
        let slot = self.pending.entry(index).or_insert_with(new_histogram);
        // Same bounds everywhere, so adding cannot fail; saturate rather than panic.
        if slot.add(hist).is_err() {
            log::warn!("interval histogram out of range; dropped");
        }
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
            self.total
                .add(&hist)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            let errors: u64 = self.errors.iter().sum();
            // Every thread done: the run ended at `end_ns`, and if no connection was ever
            // made the run is an error, with no progress to show.
            let all_done = self.done.iter().all(|d| *d);
            let end = all_done.then(|| {
                let warmup = crate::conn::ns(self.progress.warmup);
                match self.stats.opened {
                    0 => 0,
                    _ => self.end_ns.saturating_sub(warmup),
                }
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
    pub fn finish(
        mut self,
        measure_start_ns: u64,
    ) -> io::Result<(Histogram<u64>, ThreadStats, u64)> {
        self.progress.finish();
        if let Some(sink) = self.hlog.as_mut() {
            if let Some((k, h)) = self.emitted.pop() {
                let start = k * INTERVAL_NS;
                let len = self.end_ns.saturating_sub(measure_start_ns + start).max(1);
                sink.write(&h, Duration::from_nanos(start), Duration::from_nanos(len))?;
            }
        }
        if let Some(sink) = self.hlog.take() {
            sink.finish()?;
        }
        Ok((self.total, self.stats, self.end_ns))
    }
}
