//! The reactor's side of `--metrics`: the endpoint's events and deadlines,
//! the per-turn histograms, and the gauges kept per connection.
//!
//! Cost, per turn: nothing at all when metrics are off. When on: four
//! relaxed atomic adds, on the turn's length that the loop measures anyway
//! (for `max_turn_us`), and a count of the turn's events. The gauges of pending bytes and paused
//! connections are kept whether metrics are on or not (they are part of the
//! logged stats): an atomic add only when a connection's pending output or
//! paused state changed since the last time, which on the write-first path
//! of an echo never happens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::{Reactor, Slot};
use crate::metrics::{Endpoint, LoopMetrics, MetricsShard};
use crate::stats::{self, Counters};

/// A reactor's metrics, when `--metrics` is on.
#[derive(Debug)]
pub(super) struct MetricsState {
    /// Shared by every reactor: one scrape reports the sum.
    loop_metrics: Arc<LoopMetrics>,
    /// The HTTP endpoint; only the first reactor serves it.
    endpoint: Option<Endpoint>,
}

impl MetricsState {
    pub(super) fn new(
        shard: MetricsShard,
        registry: &Registry,
        counters: &Arc<Counters>,
    ) -> std::io::Result<MetricsState> {
        let endpoint = match shard.listener {
            Some(listener) => Some(Endpoint::new(
                listener,
                registry,
                counters.clone(),
                shard.loop_metrics.clone(),
            )?),
            None => None,
        };
        Ok(MetricsState {
            loop_metrics: shard.loop_metrics,
            endpoint,
        })
    }
}

/// What the gauges last counted for one connection. Packed: it sits in
/// every connection's slab entry, where `usize` + `bool` would otherwise
/// take 16 bytes (7 of them padding); its fields are only ever copied.
#[derive(Debug, Default)]
#[repr(C, packed)]
pub(super) struct Reported {
    pending: usize,
    paused: bool,
}

impl Reactor {
    /// An event for the metrics listener or a scrape connection.
    pub(super) fn metrics_event(&mut self, token: Token) {
        if let Some(endpoint) = self.metrics.as_mut().and_then(|m| m.endpoint.as_mut()) {
            endpoint.on_event(token, self.poll.registry(), self.now);
        }
    }

    /// The earliest scrape deadline, for the poll timeout.
    pub(super) fn metrics_deadline(&self) -> Option<Instant> {
        let endpoint = self.metrics.as_ref()?.endpoint.as_ref()?;
        endpoint.next_deadline()
    }

    /// End of a turn that took `took`: record it, and close scrape
    /// connections out of time.
    pub(super) fn metrics_turn(&mut self, took: Duration) {
        let Some(metrics) = self.metrics.as_mut() else {
            return;
        };
        // `self.events` still holds this turn's batch.
        let events = self.events.iter().count();
        metrics.loop_metrics.record_turn(events, took);
        if let Some(endpoint) = metrics.endpoint.as_mut() {
            endpoint.expire(self.poll.registry(), self.now);
        }
    }
}

/// Brings the pending-bytes and paused gauges up to date with one
/// connection, by the change since it was last counted.
pub(super) fn sync_gauges(stats: &Counters, slot: &mut Slot) {
    let pending = slot.conn.pending_bytes();
    let paused = slot.conn.is_paused();
    let reported = &mut slot.reported;
    if pending != reported.pending {
        stats::shift(&stats.pending_bytes, reported.pending, pending);
        reported.pending = pending;
    }
    if paused != reported.paused {
        if paused {
            stats::add(&stats.paused_conns, 1);
        } else {
            stats::sub(&stats.paused_conns, 1);
        }
        reported.paused = paused;
    }
}

/// Takes a connection that is going away out of the gauges.
pub(super) fn release_gauges(stats: &Counters, slot: &Slot) {
    stats::sub(&stats.pending_bytes, slot.reported.pending as u64);
    if slot.reported.paused {
        stats::sub(&stats.paused_conns, 1);
    }
}
