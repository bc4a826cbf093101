//! The counters one worker thread keeps, added up by the collector into the run's totals.
//! Latencies are not here: they go into histograms (`latency::new_histogram`).

use crate::error::ConnectFailure;
use crate::verify::ErrorCounts;

/// Counters one thread keeps; the collector adds them up.
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadStats {
    /// Verification errors by kind.
    pub(crate) errors: ErrorCounts,
    /// Successful connects (UDP: sockets created and not refused), reconnects included.
    pub(crate) opened: u64,
    /// Connects that failed (refused, timed out, ...), reconnects included.
    pub(crate) failed: u64,
    /// ...of them, a connection's first connect: the connections the run never had.
    pub(crate) initial_failed: u64,
    /// Established connections the peer closed or reset before the run was over.
    pub(crate) broken: u64,
    /// Connects that completed in the measured window (with `--reconnect-after`: the churn).
    pub(crate) connects_measured: u64,
    /// Messages sent, warm-up included.
    pub(crate) sent: u64,
    /// Open loop: measured messages sent more than `send::LATE_SEND_NS` after their due time.
    pub(crate) late_sends: u64,
    /// Open loop: the largest send lag seen in the measured time, ns.
    pub(crate) max_lag_ns: u64,
    /// Open loop: messages not sent because their connection was not up when they came due
    /// (still connecting, or reconnecting); never sent late as a burst.
    pub(crate) not_sent: u64,
    /// ...of them, due in the measured window: load the server was not offered.
    pub(crate) not_sent_measured: u64,
    /// Latencies beyond the histogram's range, recorded as its highest value.
    pub(crate) saturated: u64,
    /// The first data error (corrupt, missing, duplicate, reordered: what fails a run),
    /// described, with when it was seen (ns since the epoch) to pick the earliest thread's.
    pub(crate) first_error: Option<(u64, String)>,
    /// The first connection error (a failed connect or a broken connection), to explain
    /// a failed run.
    pub(crate) conn_error: Option<String>,
    /// The first failed connect: the reason of [`crate::Error::Connect`] when none opened.
    pub(crate) connect_failure: Option<ConnectFailure>,
}

impl ThreadStats {
    /// Adds another thread's counters.
    pub(crate) fn add(&mut self, o: &ThreadStats) {
        self.errors.add(&o.errors);
        self.opened += o.opened;
        self.failed += o.failed;
        self.initial_failed += o.initial_failed;
        self.broken += o.broken;
        self.connects_measured += o.connects_measured;
        self.sent += o.sent;
        self.late_sends += o.late_sends;
        self.max_lag_ns = self.max_lag_ns.max(o.max_lag_ns);
        self.not_sent += o.not_sent;
        self.not_sent_measured += o.not_sent_measured;
        self.saturated += o.saturated;
        let earlier = match (&self.first_error, &o.first_error) {
            (None, theirs) => theirs.is_some(),
            (Some((mine, _)), Some((theirs, _))) => theirs < mine,
            (Some(_), None) => false,
        };
        if earlier {
            self.first_error.clone_from(&o.first_error);
        }
        if self.conn_error.is_none() {
            self.conn_error.clone_from(&o.conn_error);
        }
        if self.connect_failure.is_none() {
            self.connect_failure.clone_from(&o.connect_failure);
        }
    }
}
