//! What the worker threads tell the collector ([`WorkerMsg`]), over one channel: interval
//! histograms every second of the measured time, the connect phase's end, and each
//! thread's totals when it is done.

use hdrhistogram::Histogram;

use crate::stats::ThreadStats;

/// Interval histogram length.
pub(crate) const INTERVAL_NS: u64 = 1_000_000_000;

/// What a worker tells the collector.
pub(crate) enum WorkerMsg {
    /// Interval `index` (second `index` of the measured time) is complete.
    Interval {
        /// Which thread.
        thread: usize,
        /// Which second.
        index: u64,
        /// Latencies completed in it, ns.
        hist: Histogram<u64>,
        /// Errors so far, all kinds, for the progress line.
        errors: u64,
    },
    /// The connect phase ended at `at_ns` (ns since the epoch). Each thread that sees the
    /// end says so; the collector takes the first.
    Connected {
        /// When the last connection opened or failed.
        at_ns: u64,
    },
    /// A connection of the thread works (TCP: connected; UDP: answered). Sent once per
    /// thread; the collector reports the connect phase only then, so a refused target
    /// gets its one error line and nothing else.
    Up,
    /// The thread finished; `hist` is its last (partial) interval `index`.
    Done {
        /// Which thread.
        thread: usize,
        /// Index of the last interval.
        index: u64,
        /// Latencies of the last interval.
        hist: Histogram<u64>,
        /// Handshake durations of every connect of the thread.
        connect: Histogram<u64>,
        /// Totals (boxed: the other messages are small and frequent).
        stats: Box<ThreadStats>,
        /// When the thread stopped, ns since epoch.
        end_ns: u64,
    },
    /// The thread could not run at all.
    Failed {
        /// Which thread.
        thread: usize,
        /// What its reactor could not do (register a timer, poll).
        error: std::io::Error,
    },
}
