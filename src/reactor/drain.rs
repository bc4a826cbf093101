//! Shutting down: signals, the graceful drain, and the final counters.
//!
//! Policy: the first SIGINT/SIGTERM (or a `ShutdownHandle`) stops accepting
//! and taking new requests; input the kernel already held for a connection
//! is still processed, once (its sender saw it acknowledged); then each
//! connection flushes what it owes and closes once the peer has
//! acknowledged it, or when `--drain-timeout` runs out. A second signal
//! ends the process at once from its handler (`signals.rs`).

use log::info;

use super::accept::AcceptState;
use super::runq::Lane;
use super::Reactor;
use crate::config::Mode;
use crate::conn::CloseReason;
use crate::stats;

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

    /// Stops accepting and taking new requests; connections process the
    /// input already held for them, flush what they owe, then close. `run`
    /// returns when all are gone or the drain timeout passes.
    pub(super) fn begin_shutdown(&mut self) {
        if self.draining.is_some() {
            return;
        }
        info!(
            "shutting down: draining connections={} drain_timeout={:?}",
            self.conns.len(),
            self.config.drain_timeout
        );
        self.draining = Some(self.now + self.config.drain_timeout);
        if let Some(signals) = &self.signals {
            signals.arm(); // however it began, a signal now exits at once
        }
        if self.accept != AcceptState::Full {
            let _ = self.poll.registry().deregister(&mut self.listener);
        }
        self.accept = AcceptState::Stopped;
        if let Some(udp) = self.udp.as_mut() {
            let _ = self.poll.registry().deregister(&mut udp.socket);
        }
        // One pass over the connections (an ioctl each, to learn how much
        // input the kernel holds); the reading itself goes through the run
        // queue, within the turns' budgets. In chat, until that pass has
        // seen who holds input, every member holds back its FIN: another
        // member's held input is lines for it.
        self.room_input_held = self.config.mode == Mode::Chat;
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
    /// `DRAIN_CHECK` to look again.
    pub(super) fn drain_done(&mut self) -> bool {
        let Some(deadline) = self.draining else {
            return false;
        };
        let out_of_time = self.now >= deadline;
        self.drain_waiting = false;
        // A queued connection still has input to process or discard, and
        // chat lines on their way, or still in a member's held input, must
        // reach their members first; those close on a later turn.
        self.room_input_held =
            self.config.mode == Mode::Chat && self.conns.iter().any(|(_, s)| s.conn.holds_input());
        let room_busy = !self.room.is_idle() || self.room_input_held;
        for (key, slot) in self.conns.iter_mut() {
            let delivered = slot.conn.shutdown_done();
            if (delivered && slot.ready.is_empty() && !room_busy) || out_of_time {
                let reason = if delivered {
                    CloseReason::Shutdown
                } else {
                    stats::add(&self.shared.stats.drain_aborts, 1);
                    CloseReason::Timeout
                };
                slot.conn.set_close(reason);
                self.to_close.push((key, slot.conn.id));
            } else {
                // Output still queued here raises WRITABLE when it moves;
                // only bytes waiting for an acknowledgement need the timer.
                self.drain_waiting |= !slot.conn.has_pending();
            }
        }
        self.close_batch();
        // The reactor that owns the signal handlers outlives the others, so
        // a second signal still works while any of them drains.
        self.conns.is_empty() && !(self.signals.is_some() && self.shutdown.others_running())
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
        stats::add(&stats.closed, remaining);
        stats::sub(&stats.active, remaining);
        self.shutdown.reactor_done();
    }
}

/// Whether `run` must return right away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    No,
    Now,
}
