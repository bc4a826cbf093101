//! Shutting down: signals, the graceful drain, and the final counters.
//!
//! Policy: the first SIGINT/SIGTERM (or a `ShutdownHandle`) stops accepting
//! and taking new requests; input the kernel already held for a connection
//! is still processed, once (its sender saw it acknowledged), except a
//! partial frame that input cannot complete, dropped at once (a connection
//! the memory budget paused might never be let read it); then each
//! connection flushes what it owes and closes once the peer has
//! acknowledged it, or when `--drain-timeout` runs out. A second signal
//! ends the process at once from its handler (`signals.rs`).
//!
//! [`Drain`] holds the drain's own state (its deadline, whether some peer
//! still owes an acknowledgement, whether chat input is still held) and
//! decides, given `now`, what happens to each connection; the reactor
//! applies that to its slab. Time comes in as `now`, so the deadline and
//! the wake-ups are tested without sleeping.

use std::time::{Duration, Instant};

use log::info;

use super::runq::Lane;
use super::{Exit, Reactor};
use crate::config::Mode;
use crate::conn::CloseReason;
use crate::stats;

/// During a drain, how often to check whether peers acknowledged our last
/// bytes: no event announces an acknowledgement.
const DRAIN_CHECK: Duration = Duration::from_millis(5);

/// A graceful shutdown in progress.
#[derive(Debug)]
pub(super) struct Drain {
    /// When the drain gives up: connections still open then are closed,
    /// and those still owed bytes are counted as `drain_aborts`.
    deadline: Instant,
    /// Some connection sent everything but the peer has not acknowledged it
    /// all yet (found by the last check: `begin_check`, then `keep`).
    waiting: bool,
    /// Chat: some member still holds input it had when the drain began.
    /// Those are lines for the others, who must not be closed (or sent
    /// their FIN) before they get them.
    room_input_held: bool,
}

impl Drain {
    /// A drain that began at `now` and may last `timeout`. In chat, until
    /// the first pass has seen who holds input, assume someone does.
    pub(super) fn new(now: Instant, timeout: Duration, chat: bool) -> Drain {
        Drain {
            deadline: now + timeout,
            waiting: false,
            room_input_held: chat,
        }
    }

    /// True once the drain timeout ran out.
    fn out_of_time(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Begins one check of every connection at `now`, given whether some
    /// chat member still holds input (`room_input_held`) and whether the
    /// room has lines on their way (`room_idle`). Forgets what the last
    /// check found waiting: `keep` records it anew.
    pub(super) fn begin_check(
        &mut self,
        now: Instant,
        room_input_held: bool,
        room_idle: bool,
    ) -> Check {
        self.waiting = false;
        self.room_input_held = room_input_held;
        Check {
            out_of_time: self.out_of_time(now),
            room_busy: self.holds_fin(room_idle),
        }
    }

    /// A connection the check kept open. `awaiting_ack`: it sent everything
    /// and waits only for the peer's acknowledgement, which no event
    /// announces, so the loop must wake soon to look again. (Output still
    /// queued raises WRITABLE when it moves: no timer needed for that.)
    pub(super) fn keep(&mut self, awaiting_ack: bool) {
        self.waiting |= awaiting_ack;
    }

    /// The earliest time the loop must wake for the drain: its deadline
    /// while this reactor still has connections (once they are gone, a
    /// reactor waiting for the others sleeps until woken), and soon if a
    /// peer's acknowledgement is awaited.
    pub(super) fn wake_at(&self, now: Instant, conns_left: bool) -> Option<Instant> {
        let deadline = conns_left.then_some(self.deadline);
        let check = self.waiting.then(|| now + DRAIN_CHECK);
        deadline.into_iter().chain(check).min()
    }

    /// What becomes of one connection at this check: closed (and why), or
    /// kept. `delivered`: the peer acknowledged all we owe it; `queued`: it
    /// still has readiness to serve (input to process or discard).
    pub(super) fn verdict(check: Check, delivered: bool, queued: bool) -> Option<CloseReason> {
        if delivered && !queued && !check.room_busy {
            Some(CloseReason::Shutdown)
        } else if check.out_of_time {
            Some(if delivered {
                CloseReason::Shutdown
            } else {
                CloseReason::Timeout
            })
        } else {
            None
        }
    }

    /// Whether members must hold back their FIN: chat lines are on their
    /// way (`room_idle` false), or some member still holds input that will
    /// become lines. Their FIN would come before those lines.
    pub(super) fn holds_fin(&self, room_idle: bool) -> bool {
        !room_idle || self.room_input_held
    }
}

/// What one drain check found for every connection alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Check {
    /// The drain timeout ran out: nobody is kept any longer.
    out_of_time: bool,
    /// Chat lines are on their way to members, or still in a member's held
    /// input: nobody may close (or send its FIN) before getting them.
    room_busy: bool,
}

impl Reactor {
    /// The first SIGINT/SIGTERM. (A second one never gets here: its handler
    /// ends the process, whatever the loop is doing.)
    pub(super) fn on_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        if !signals.arrived() {
            return;
        }
        info!("signal received: shutting down (send again to exit at once)");
        self.shutdown.shutdown(); // the other reactors hear it through their wakers
        self.begin_shutdown();
    }

    /// The `ShutdownHandle` woke us: another thread asked for a graceful
    /// shutdown, or for every reactor to return at once (a failure or a
    /// panic elsewhere, or a reactor thread that could not start).
    pub(super) fn on_wake(&mut self) -> Exit {
        if self.shutdown.is_aborted() {
            return Exit::Now;
        }
        if self.shutdown.is_requested() {
            self.begin_shutdown();
        }
        Exit::No
    }

    /// Stops accepting and taking new requests; connections process the
    /// input already held for them, flush what they owe, then close. `run`
    /// returns when all are gone or the drain timeout passes.
    pub(super) fn begin_shutdown(&mut self) {
        if self.drain.is_some() {
            return;
        }
        info!(
            "shutting down: draining connections={} drain_timeout={:?}",
            self.conns.len(),
            self.config.drain_timeout
        );
        // In chat, until the pass below has seen who holds input, every
        // member holds back its FIN: another member's held input is lines
        // for it.
        let chat = self.config.mode == Mode::Chat;
        self.drain = Some(Drain::new(self.now, self.config.drain_timeout, chat));
        if let Some(signals) = &self.signals {
            signals.arm(); // however it began, a signal now exits at once
        }
        self.acceptor.stop(self.poll.registry());
        if let Some(udp) = self.udp.as_mut() {
            udp.stop(self.poll.registry());
        }
        // One pass over the connections (an ioctl each, to learn how much
        // input the kernel holds); the reading itself goes through the run
        // queue, within the turns' budgets.
        let hold_fin = self.hold_fin();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(slot) = self.conns.get_mut(key) {
                let mut ctx = self.shared.ctx(self.now, 0, hold_fin);
                let ready = slot.conn.begin_shutdown(&mut ctx);
                self.queue(key, ready, Lane::Old);
                self.after_conn_io(key);
            }
        }
    }

    /// During a drain: true once every connection is gone, or the time is up.
    /// A connection closes once the peer has everything we sent, without
    /// waiting for its EOF: we are leaving. "Has everything" means
    /// acknowledged, not just handed to the kernel: a peer still sending would
    /// get a reset for its unread bytes, and the reset discards whatever of
    /// ours the kernel still holds. No event announces the acknowledgement,
    /// so while some connection waits for one, `poll` wakes every
    /// `DRAIN_CHECK` to look again (see `Drain::wake_at`).
    pub(super) fn drain_done(&mut self, now: Instant) -> bool {
        let Some(drain) = self.drain.as_mut() else {
            return false;
        };
        // A queued connection still has input to process or discard, and
        // chat lines on their way, or still in a member's held input, must
        // reach their members first; those close on a later turn.
        let room_input_held =
            self.config.mode == Mode::Chat && self.conns.iter().any(|(_, s)| s.conn.holds_input());
        let check = drain.begin_check(now, room_input_held, self.room.is_idle());
        for (key, slot) in self.conns.iter_mut() {
            let delivered = slot.conn.shutdown_done();
            let queued = !slot.ready.is_empty();
            match Drain::verdict(check, delivered, queued) {
                Some(reason) => {
                    if reason == CloseReason::Timeout {
                        stats::add(&self.shared.stats.drain_aborts, 1);
                    }
                    slot.conn.set_close(reason);
                    self.to_close.push((key, slot.conn.id));
                }
                None => drain.keep(!slot.conn.has_pending()),
            }
        }
        self.close_batch();
        // The reactor that owns the signal handlers outlives the others, so
        // a second signal still works while any of them drains.
        self.conns.is_empty() && !(self.signals.is_some() && self.shutdown.others_running())
    }

    /// True while shutting down with chat lines still to reach members
    /// (see `Drain::holds_fin`): every connection call is told to hold
    /// back its FIN, or those lines would be lost.
    pub(super) fn hold_fin(&self) -> bool {
        let room_idle = self.room.is_idle();
        self.drain.as_ref().is_some_and(|d| d.holds_fin(room_idle))
    }

    /// Settles the counters for connections still open (a second signal, or
    /// a failure, leaves some), and reports this reactor as stopped.
    /// `Server::run` logs the total once every reactor has finished.
    pub(super) fn finish(self) {
        let remaining = self.conns.len() as u64;
        let stats = &self.shared.stats;
        // Those still owed bytes lose them: counted like a drain that timed
        // out (connections already closing for their own reasons excepted).
        let abandoned = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.close_reason().is_none() && !s.conn.fully_delivered());
        stats::add(&stats.drain_aborts, abandoned.count() as u64);
        for (_, slot) in self.conns.iter() {
            super::metrics::release_gauges(stats, slot);
        }
        if let Some(udp) = &self.udp {
            // Replies still queued are never sent: count them as dropped.
            udp.abandon(stats);
        }
        stats::add(&stats.closed, remaining);
        stats::sub(&stats.active, remaining);
        self.shutdown.reactor_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline is `timeout` after the drain began; the loop wakes for
    /// it only while connections are left, and every `DRAIN_CHECK` while an
    /// acknowledgement is awaited.
    #[test]
    fn wakes_for_the_deadline_and_for_acknowledgements() {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, Duration::from_secs(5), false);
        let deadline = t0 + Duration::from_secs(5);
        assert_eq!(d.wake_at(t0, true), Some(deadline));
        assert_eq!(d.wake_at(t0, false), None);
        d.keep(true);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(d.wake_at(later, true), Some(later + DRAIN_CHECK));
        assert_eq!(d.wake_at(later, false), Some(later + DRAIN_CHECK));
        // The check never goes past the deadline's turn.
        let near = deadline - Duration::from_millis(1);
        assert_eq!(d.wake_at(near, true), Some(deadline));
        assert!(!d.out_of_time(near));
        assert!(d.out_of_time(deadline));
    }

    /// A connection closes as soon as everything it owes was acknowledged
    /// and it has nothing left to process, and no later than the deadline;
    /// only one still owed bytes then counts as aborted (`Timeout`).
    #[test]
    fn verdicts() {
        use CloseReason::{Shutdown, Timeout};
        let check = |out_of_time, room_busy| Check {
            out_of_time,
            room_busy,
        };
        // (check, delivered, queued)
        assert_eq!(
            Drain::verdict(check(false, false), true, false),
            Some(Shutdown)
        );
        assert_eq!(Drain::verdict(check(false, false), false, false), None);
        assert_eq!(Drain::verdict(check(false, false), true, true), None);
        assert_eq!(Drain::verdict(check(false, true), true, false), None);
        assert_eq!(
            Drain::verdict(check(true, true), true, true),
            Some(Shutdown)
        );
        assert_eq!(
            Drain::verdict(check(true, false), false, false),
            Some(Timeout)
        );
    }

    /// A check reads the deadline and the room; it forgets what the last
    /// one found waiting, and only a kept connection awaiting an
    /// acknowledgement makes the loop wake for it again.
    #[test]
    fn a_check_starts_afresh_and_keeping_one_awaiting_an_ack_wakes_soon() {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, Duration::from_secs(5), true);
        let c = d.begin_check(t0, false, true);
        assert_eq!(
            c,
            Check {
                out_of_time: false,
                room_busy: false
            }
        );
        assert!(!d.holds_fin(true));
        d.keep(false);
        assert_eq!(d.wake_at(t0, true), Some(t0 + Duration::from_secs(5)));
        d.keep(true);
        assert_eq!(d.wake_at(t0, true), Some(t0 + DRAIN_CHECK));
        let later = t0 + Duration::from_secs(5);
        let c = d.begin_check(later, true, true);
        assert!(c.out_of_time && c.room_busy);
        assert!(d.holds_fin(true));
        assert_eq!(
            d.wake_at(later, false),
            None,
            "the last check's wait is forgotten"
        );
        assert!(
            d.begin_check(later, false, false).room_busy,
            "lines on their way"
        );
    }

    /// Chat starts out assuming held input, so no member sends its FIN
    /// before the first check has looked; lines on their way hold it too.
    #[test]
    fn chat_holds_fin_until_the_first_check() {
        let t0 = Instant::now();
        assert!(Drain::new(t0, Duration::ZERO, true).holds_fin(true));
        assert!(!Drain::new(t0, Duration::ZERO, false).holds_fin(true));
        assert!(Drain::new(t0, Duration::ZERO, false).holds_fin(false));
    }
}
