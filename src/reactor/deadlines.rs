//! Everything with a deadline: how long `poll` may sleep, idle and linger
//! timers coming due, periodic stats, and how long each turn took. The poll
//! timeout *is* the timer: the loop sleeps until the earliest deadline, then
//! `fire_timers` runs what is due.

use std::time::{Duration, Instant};

use log::{debug, info, trace};

use super::accept::AcceptState;
use super::runq::Lane;
use super::{Reactor, FIRST_CONN};
use crate::conn::CloseReason;
use crate::stats;
use crate::timer::poll_timeout;

/// Stale timer entries tolerated before compacting (see `compact_timers`).
const STALE_TIMERS_SLACK: usize = 1024;
/// Turns longer than this (microseconds) are logged at debug level.
const LONG_TURN_US: u128 = 10_000;
/// During a drain, how often to check whether peers acknowledged our last
/// bytes (see `Reactor::drain_done`).
const DRAIN_CHECK: Duration = Duration::from_millis(5);

impl Reactor {
    /// Drops timer entries of closed connections once they outnumber the
    /// live ones (each live connection has at most two), so the heap stays
    /// proportional to open connections however many come and go. After a
    /// compaction at least `STALE_TIMERS_SLACK` closes pass before the next,
    /// so the cost is amortised O(1) per close.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.conns.len() + STALE_TIMERS_SLACK {
            return;
        }
        let conns = &self.conns;
        self.timers
            .retain(|due| conns.get(due.key).is_some_and(|s| s.conn.id == due.id));
        trace!("timers compacted len={}", self.timers.len());
    }

    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        // Work left from the last turn: look for new events, but do not sleep.
        let udp = !self.udp_ready.is_empty();
        if !self.runq.is_empty() || !self.room.is_idle() || udp || self.accept_requeue {
            return Some(Duration::ZERO);
        }
        let backoff = match self.accept {
            AcceptState::Backoff(at) => Some(at),
            _ => None,
        };
        let now = Instant::now();
        poll_timeout(
            now,
            &[
                self.timers.next_deadline(),
                backoff,
                // Once its own connections are gone, a reactor waiting for
                // the others sleeps until woken (see `drain_done`).
                self.draining.filter(|_| !self.conns.is_empty()),
                self.drain_waiting.then(|| now + DRAIN_CHECK),
                self.next_stats,
                self.metrics_deadline(),
            ],
        )
    }

    /// Closes idle (or lingering) connections whose deadline passed; entries
    /// for connections that were active since are pushed to their new deadline.
    pub(super) fn fire_timers(&mut self) {
        while let Some(due) = self.timers.pop_due(self.now) {
            let Some(slot) = self.conns.get_mut(due.key) else {
                continue;
            };
            if slot.conn.id != due.id {
                continue; // stale: the slot was reused
            }
            match slot.conn.deadline(self.config.idle_timeout) {
                Some((at, reason)) if at <= self.now => {
                    if reason == CloseReason::Idle {
                        stats::add(&self.shared.stats.idle_closes, 1);
                    }
                    debug!("timeout token={} reason={reason:?}", due.key + FIRST_CONN);
                    slot.conn.set_close(reason);
                    self.to_close.push((due.key, due.id));
                }
                Some((at, _)) => {
                    self.timers.schedule(at, due.key, due.id);
                }
                None => {}
            }
        }
        if let AcceptState::Backoff(at) = self.accept {
            if at <= self.now {
                self.resume_accepting();
            }
        }
        self.close_batch();
    }

    pub(super) fn log_stats(&mut self) {
        let (Some(at), Some(every)) = (self.next_stats, self.config.stats_interval) else {
            return;
        };
        if at <= self.now {
            info!("stats {}", self.shared.stats.snapshot());
            self.next_stats = Some(self.now + every);
        }
    }

    /// Records how long this turn took, for `max_turn_us`. A long one is
    /// logged (debug) with the work it did: a turn that moved little but
    /// took long was the machine (the thread was not running), not us.
    pub(super) fn end_turn(&mut self) {
        let elapsed = self.now.elapsed();
        self.metrics_turn(elapsed);
        let took = elapsed.as_micros();
        if took > LONG_TURN_US {
            debug!(
                "long turn us={took} moved={} visits={} queued={} deliveries={}",
                self.shared.budget.spent() - self.turn_start.0,
                self.visits - self.turn_start.1,
                self.runq.len(Lane::Fresh) + self.runq.len(Lane::Old),
                self.room.len(),
            );
        }
        stats::max(
            &self.shared.stats.max_turn_us,
            u64::try_from(took).unwrap_or(u64::MAX),
        );
    }
}
