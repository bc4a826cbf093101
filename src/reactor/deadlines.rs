//! Everything with a deadline: how long `poll` may sleep, idle and linger
//! timers coming due, periodic stats, and how long each turn took. The poll
//! timeout *is* the timer: the loop sleeps until the earliest deadline, then
//! `fire_timers` runs what is due.
//!
//! Every decision here takes `now` as a parameter (the loop reads the clock
//! once per turn), so the tests in `reactor/tests.rs` drive idle timers, the
//! accept back-off and the drain through hours of virtual time without
//! sleeping.

use std::time::{Duration, Instant};

use log::{debug, info, trace};

use super::runq::Lane;
use super::Reactor;
use crate::conn::CloseReason;
use crate::stats;
use crate::timer::poll_timeout;
use crate::token::conn_token;
use crate::udp::Udp;

/// Stale timer entries tolerated before compacting (see `compact_timers`).
const STALE_TIMERS_SLACK: usize = 1024;
/// Turns longer than this (microseconds) are logged at debug level.
const LONG_TURN_US: u128 = 10_000;

/// What one turn did, for the log of long turns. Both counts are running
/// totals; a turn's share is the difference from its start.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// `TurnBudget::spent` when this turn began.
    spent_at_start: u64,
    /// `visits` when this turn began.
    visits_at_start: u64,
    /// Connection visits made since the reactor started.
    visits: u64,
}

impl Turn {
    /// A turn begins, with the budget's running total at `spent`.
    pub(super) fn begin(&mut self, spent: u64) {
        self.spent_at_start = spent;
        self.visits_at_start = self.visits;
    }

    /// One connection visit.
    pub(super) fn visit(&mut self) {
        self.visits += 1;
    }

    /// True if this turn (or the last one, between turns) served a
    /// connection.
    pub(super) fn visited(&self) -> bool {
        self.visits != self.visits_at_start
    }

    /// Bytes moved (the budget's running total now: `spent`) and visits
    /// made since this turn began.
    fn done(&self, spent: u64) -> (u64, u64) {
        (
            spent - self.spent_at_start,
            self.visits - self.visits_at_start,
        )
    }
}

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

    /// How long `poll` may sleep at `now`: not at all while work is left
    /// from the last turn, else until the earliest deadline of any kind.
    pub(super) fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        // Work left from the last turn: look for new events, but do not sleep.
        let udp = self.udp.as_ref().is_some_and(Udp::has_ready);
        if !self.runq.is_empty() || !self.room.is_idle() || udp || self.acceptor.has_requeue() {
            return Some(Duration::ZERO);
        }
        let has_conns = !self.conns.is_empty();
        poll_timeout(
            now,
            &[
                self.timers.next_deadline(),
                self.acceptor.deadline(),
                self.drain.as_ref().and_then(|d| d.wake_at(now, has_conns)),
                self.next_stats,
                self.metrics_deadline(),
                self.overdraft_deadline(),
            ],
        )
    }

    /// How long to pause before the next poll so that datagrams gather into
    /// a fuller batch (`--udp-coalesce`; `Udp::batch_pause` says when). The pause
    /// holds every client of this reactor, so only after a turn that served
    /// the UDP socket alone; never while work is left (`timeout` zero), nor
    /// past the next deadline.
    pub(super) fn coalesce_pause(&self, timeout: Option<Duration>) -> Option<Duration> {
        if self.turn.visited() {
            return None;
        }
        let pause = self.udp.as_ref()?.batch_pause()?;
        let pause = timeout.map_or(pause, |t| t.min(pause));
        (!pause.is_zero()).then_some(pause)
    }

    /// Pauses before the next poll if `coalesce_pause` says so (a plain
    /// sleep: an `epoll_wait` would return at the first datagram), and
    /// tells the UDP socket, whose next read says whether it paid. True if
    /// it paused.
    pub(super) fn pause_for_batch(&mut self, timeout: Option<Duration>) -> bool {
        let Some(pause) = self.coalesce_pause(timeout) else {
            return false;
        };
        std::thread::sleep(pause);
        stats::add(&self.shared.stats.udp_pauses, 1);
        if let Some(udp) = self.udp.as_mut() {
            udp.paused();
        }
        true
    }

    /// Closes idle (or lingering) connections whose deadline passed by
    /// `now`; entries for connections that were active since are pushed to
    /// their new deadline. Ends an accept back-off that is over.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        // What this does at `now` (closing, accepting after a back-off)
        // happens at `now`: in a turn that is `self.now` already; a test
        // moving virtual time moves the reactor's clock with it.
        self.now = now;
        while let Some(due) = self.timers.pop_due(now) {
            let Some(slot) = self.conns.get_mut(due.key) else {
                continue;
            };
            if slot.conn.id != due.id {
                continue; // stale: the slot was reused
            }
            let mut deadline = slot.conn.deadline(self.config.idle_timeout);
            if matches!(deadline, Some((at, CloseReason::Idle)) if at <= now) {
                // Before calling it idle: did the kernel send it our bytes
                // since? (one getsockopt per idle deadline, not per message)
                slot.conn.note_kernel_sent(now);
                deadline = slot.conn.deadline(self.config.idle_timeout);
            }
            match deadline {
                // Due: compared with `<=`, so a deadline of exactly `now`
                // fires now rather than one (rounded-up) poll later.
                Some((at, reason)) if at <= now => {
                    if reason == CloseReason::Idle {
                        stats::add(&self.shared.stats.idle_closes, 1);
                    }
                    debug!(
                        "timeout token={} id={} reason={reason:?}",
                        conn_token(due.key).0,
                        due.id
                    );
                    slot.conn.set_close(reason);
                    self.to_close.push((due.key, due.id));
                }
                Some((at, _)) => {
                    self.timers.schedule(at, due.key, due.id);
                }
                None => {}
            }
        }
        if self.acceptor.backoff_over(now) {
            // Clients that queued meanwhile raised no new edge.
            self.accept_all();
        }
        self.close_batch();
    }

    /// Logs the counters if `--stats-interval` came round by `now`.
    pub(super) fn log_stats(&mut self, now: Instant) {
        let (Some(at), Some(every)) = (self.next_stats, self.config.stats_interval) else {
            return;
        };
        if at <= now {
            info!("stats {}", self.shared.stats.snapshot());
            self.next_stats = Some(now + every);
        }
    }

    /// Records how long this turn took, for `max_turn_us`. A long one is
    /// logged (debug) with the work it did: a turn that moved little but
    /// took long was the machine (the thread was not running), not us.
    pub(super) fn end_turn(&mut self) {
        // The one clock read inside a turn: its length is a measurement (of
        // the real clock, since `poll` returned at `self.now`), not a
        // decision, so virtual time in tests only skews this counter.
        let elapsed = self.now.elapsed();
        self.metrics_turn(elapsed);
        let took = elapsed.as_micros();
        if took > LONG_TURN_US {
            let (moved, visits) = self.turn.done(self.shared.budget.spent());
            debug!(
                "long turn us={took} moved={moved} visits={visits} queued={} deliveries={}",
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
