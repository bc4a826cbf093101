//! Which connection of a worker opens next, and when: first connects in id order, spread by
//! `--connect-rate` if given, and reconnects (`--reconnect-after`) as soon as they are
//! asked for. The loop opens at most [`CONNECT_BATCH`] per turn and polls in between, so
//! connections already open are served while thousands more are still connecting, and each
//! connect is observed soon after it completes.

use std::collections::VecDeque;

use crate::shard::Lane;

/// Most connects per loop turn. A loopback connect costs ~20 us (the kernel runs the whole
/// handshake inside the call), so a batch is well under a millisecond of the loop.
pub(crate) const CONNECT_BATCH: usize = 32;

/// A worker's schedule of connects. Pure bookkeeping: the clock comes in as `now`.
#[derive(Debug)]
pub(crate) struct Ramp {
    /// Local index of the next first connect; they open in id order.
    next: usize,
    /// Connections this worker owns.
    local: usize,
    /// The global ids this worker owns: local `i` is `lane.global_id(i)`.
    lane: Lane,
    /// `--connect-rate`, connects per second over the whole run.
    rate: Option<f64>,
    /// Slots waiting to reconnect, in the order they asked.
    reopen: VecDeque<usize>,
    /// No first connects any more (the run gave up, or is over).
    stopped: bool,
}

impl Ramp {
    /// The ramp of a worker owning `lane` of a run of `connections`. `rate` is the whole
    /// run's (every shard's) connect rate: a connection opens at its global id's turn.
    pub(crate) fn new(lane: Lane, connections: usize, rate: Option<f64>) -> Self {
        Ramp {
            next: 0,
            local: lane.len(connections),
            lane,
            rate,
            reopen: VecDeque::new(),
            stopped: false,
        }
    }

    /// Global id of local connection `i`.
    pub(crate) fn global_id(&self, i: usize) -> usize {
        self.lane.global_id(i)
    }

    /// When local connection `i` may first connect, ns since the epoch.
    fn first_time(&self, i: usize) -> u64 {
        match self.rate {
            Some(r) => (self.global_id(i) as f64 * 1e9 / r) as u64,
            None => 0,
        }
    }

    /// The next slot to open at `now`: a reconnect, else a first connect whose time came.
    /// The caller opens it (and may ask again, up to [`CONNECT_BATCH`] times a turn).
    pub(crate) fn take(&mut self, now: u64) -> Option<usize> {
        if let Some(i) = self.reopen.pop_front() {
            return Some(i);
        }
        if self.stopped || self.next >= self.local || self.first_time(self.next) > now {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    /// Slot `i` closed under `--reconnect-after`: reopen it at once.
    pub(crate) fn reconnect(&mut self, i: usize) {
        self.reopen.push_back(i);
    }

    /// When the next open is due: now if one is queued, else the next first connect's
    /// time; `None` when nothing is left to open.
    pub(crate) fn next_time(&self, now: u64) -> Option<u64> {
        if !self.reopen.is_empty() {
            return Some(now);
        }
        (!self.stopped && self.next < self.local).then(|| self.first_time(self.next))
    }

    /// Whether every connection had its first connect (or never will) and none is queued
    /// to reopen.
    pub(crate) fn done(&self) -> bool {
        (self.stopped || self.next >= self.local) && self.reopen.is_empty()
    }

    /// No more connects of any kind: the run gave up, or the measured time is over. Slots
    /// queued to reopen stay closed.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.reopen.clear();
    }

    /// Connections that never had their first connect.
    #[cfg(test)]
    pub(crate) fn never_tried(&self) -> usize {
        self.local - self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First connects come in id order as their time comes; reconnects go first.
    #[test]
    fn order_and_rate() {
        // Worker 1 of 2 owns global ids 1, 3, 5; at 10/s they are due at 0.1, 0.3, 0.5 s.
        let lane = Lane {
            offset: 1,
            stride: 2,
        };
        let mut r = Ramp::new(lane, 6, Some(10.0));
        assert_eq!(r.global_id(2), 5);
        assert_eq!(r.take(50_000_000), None);
        assert_eq!(r.next_time(0), Some(100_000_000));
        assert_eq!(r.take(300_000_000), Some(0));
        assert_eq!(r.take(300_000_000), Some(1));
        assert_eq!(r.take(300_000_000), None);
        r.reconnect(0);
        assert_eq!(r.next_time(300_000_000), Some(300_000_000));
        assert_eq!(r.take(300_000_000), Some(0));
        assert!(!r.done());
        assert_eq!(r.take(500_000_000), Some(2));
        assert!(r.done() && r.next_time(0).is_none());
    }

    /// Without a rate every first connect is due at once; stopping drops the queue.
    #[test]
    fn unlimited_and_stop() {
        let mut r = Ramp::new(Lane::ALL, 2, None);
        assert_eq!((r.take(0), r.take(0), r.take(0)), (Some(0), Some(1), None));
        r.reconnect(1);
        r.stop();
        assert!(r.done() && r.take(u64::MAX).is_none());
        let mut gave_up = Ramp::new(Lane::ALL, 5, None);
        gave_up.take(0);
        gave_up.stop();
        assert_eq!(gave_up.never_tried(), 4);
    }
}
