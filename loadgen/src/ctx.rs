//! What every connection of a reactor thread shares: the [`Ctx`] (settings, codec, clock,
//! measured window, scratch buffer, histograms, counters).

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::config::RunConfig;
use crate::latency::record_into;
use crate::payload::Codec;
use crate::schedule::Schedule;
use crate::stats::ThreadStats;
use crate::timeline::Timeline;
use crate::udp_batch::UdpBatch;

/// Per-thread state every connection of the thread works with.
pub(crate) struct Ctx {
    /// The run's settings.
    pub(crate) cfg: Arc<RunConfig>,
    /// Message encoder and checker.
    pub(crate) codec: Codec,
    /// Open loop only.
    pub(crate) schedule: Option<Schedule>,
    /// Time zero of the run (shared by all threads, so schedules line up).
    pub(crate) epoch: Instant,
    /// The clock as last read, ns since `epoch`. Refreshed after every read syscall, so a
    /// latency never includes time spent on other connections' bytes.
    pub(crate) now: u64,
    /// The thread's timeline, ns since `epoch`: a message is recorded when its reference
    /// time falls in `[measure_start, measure_end)`; no new closed-loop sends after
    /// `measure_end`. [`Timeline::CONNECTING`] until the connect phase ends (`phase.rs`);
    /// the driver fixes it then, and every decision reads it from here.
    pub(crate) timeline: Timeline,
    /// One read buffer for all connections of the thread (64 KiB + a datagram's worth).
    pub(crate) scratch: Vec<u8>,
    /// UDP on Linux with `--udp-batch` above 1: the thread's batch buffers
    /// (`udp_batch.rs`); `None` otherwise.
    pub(crate) udp_batch: Option<UdpBatch>,
    /// This thread's latencies of the current interval, ns.
    pub(crate) hist: Histogram<u64>,
    /// This thread's TCP handshake durations (every connect of the run), ns.
    pub(crate) connect_hist: Histogram<u64>,
    /// This thread's counters.
    pub(crate) stats: ThreadStats,
    /// Set once a connection of this thread works (TCP: connected; UDP: an answer came).
    pub(crate) up: bool,
}

impl Ctx {
    /// Reads the clock into `now`.
    pub(crate) fn refresh_now(&mut self) -> u64 {
        self.now = self.epoch.elapsed().as_nanos() as u64;
        self.now
    }

    /// Whether the connect phase is over: traffic flows from then on (warm-up first).
    pub(crate) fn started(&self) -> bool {
        self.timeline.known()
    }

    /// Whether `t` (ns since the epoch) falls in the measured window.
    pub(crate) fn measured(&self, t: u64) -> bool {
        (self.timeline.measure_start..self.timeline.measure_end).contains(&t)
    }

    /// A good echo arrived now for a message whose latency counts from `t_ref`.
    pub(crate) fn record(&mut self, t_ref: u64) {
        if self.measured(t_ref) {
            let latency = self.now.saturating_sub(t_ref);
            record_into(&mut self.hist, latency, &mut self.stats.saturated);
        }
    }

    /// A TCP connect that started at `started` completed now.
    pub(crate) fn record_connect(&mut self, started: u64) {
        let took = self.now.saturating_sub(started);
        record_into(&mut self.connect_hist, took, &mut self.stats.saturated);
        self.stats.opened += 1;
        self.stats.connects_measured += u64::from(self.measured(self.now));
        self.up = true;
    }

    /// Records the first data error of this thread, described by `what` (only called
    /// while none is recorded, so describing costs nothing per message).
    pub(crate) fn data_error(&mut self, what: String) {
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some((self.now, what));
        }
    }
}

/// A context for unit tests of what runs on it (the echo stream, the send policy): the
/// run's defaults with `change` applied, measuring from time 0 on.
#[cfg(test)]
pub(crate) fn test_ctx(change: impl FnOnce(&mut RunConfig)) -> Ctx {
    let mut cfg = RunConfig::new("127.0.0.1:9".parse().expect("an address"));
    change(&mut cfg);
    let schedule = cfg.rate.map(|r| Schedule::new(r, cfg.connections));
    Ctx {
        codec: Codec::new(cfg.size, cfg.framed),
        schedule,
        epoch: Instant::now(),
        now: 0,
        timeline: Timeline::at(0, std::time::Duration::MAX, std::time::Duration::ZERO),
        scratch: Vec::new(),
        udp_batch: None,
        hist: crate::latency::new_histogram(),
        connect_hist: crate::latency::new_histogram(),
        stats: ThreadStats::default(),
        up: false,
        cfg: Arc::new(cfg),
    }
}
