//! The memory budget's overdraft in the loop: while the total is over the
//! budget, one paused holder of an unfinished frame at a time reads past
//! it, exactly what finishes its frame, so that a set of frames bigger than
//! the budget together still completes (why, and the bound it keeps: see
//! `memory.rs`; who waits and when a holder runs out: `memory/overdraft.rs`).
//!
//! The reactor grants it at the end of a turn, when nobody holds it: the
//! holder is unpaused and queued to read (its input raised its edge long
//! ago), and each visit lets it read what its frame still misses. At the
//! end of every turn it is settled: repaid (frame done, reply taken), gone,
//! or out of time; the poll timeout includes its deadline, so a stalled
//! holder is noticed without any event.

use std::time::Instant;

use log::{debug, warn};

use super::runq::Lane;
use super::Reactor;
use crate::conn::CloseReason;
use crate::memory::overdraft::{Holder, Standing};
use crate::ready::Ready;
use crate::stats;
use crate::token::conn_token;

impl Reactor {
    /// How many bytes connection `key` may read now: the budget's
    /// allowance, or for the overdraft's holder what finishes its frame.
    pub(super) fn read_allowance(&self, key: usize) -> usize {
        let Some(slot) = self.conns.get(key) else {
            return 0;
        };
        let allowance = self.memory.budget.read_allowance(slot.held);
        if self.memory.overdraft.allows(key, slot.conn.id) {
            allowance.max(slot.conn.unfinished())
        } else {
            allowance
        }
    }

    /// At the end of each turn: everyone reads again once the total fell;
    /// while it has not, the overdraft's holder is settled and, if there is
    /// none, the first paused holder still waiting gets it. O(1) amortised:
    /// each waiting entry is looked at once.
    pub(super) fn balance_memory(&mut self, now: Instant) {
        self.resume_if_released();
        if !self.memory.budget.is_over() {
            return;
        }
        if let Some(h) = self.memory.overdraft.holder() {
            self.settle_overdraft(h, now);
            if self.memory.overdraft.holder().is_some() {
                return;
            }
        }
        let conns = &self.conns;
        let next = self.memory.overdraft.grant(now, |key, id| {
            let slot = conns.get(key).filter(|s| s.conn.id == id)?;
            let waits = slot.conn.memory_paused() && slot.conn.unfinished() > 0;
            // One with nothing to read could not use it, and would hold it
            // for the stall time while everyone behind waited: 20 clients
            // that each sent 4 KiB of a frame and stopped kept an honest
            // frame waiting 41 s, and cost nothing more, since an unused
            // overdraft put them back in the queue. Passed over, it waits
            // again when its input arrives (`overdraft_candidate`).
            (waits && slot.conn.has_input_waiting()).then_some((slot.held, slot.conn.unfinished()))
        });
        let Some(h) = next else {
            return;
        };
        stats::add(&self.shared.stats.memory_overdrafts, 1);
        if let Some(slot) = self.conns.get_mut(h.key) {
            debug!(
                "memory overdraft token={} id={} held={} unfinished={}",
                conn_token(h.key).0,
                h.id,
                slot.held,
                slot.conn.unfinished()
            );
            slot.conn.set_memory_paused(false);
        }
        // Its input waited in the kernel: no new edge will announce it.
        self.queue(h.key, Ready::READ, Lane::Old);
    }

    /// Input arrived for connection `key`, which the budget had already
    /// paused: if it holds an unfinished frame, it waits for the overdraft
    /// (again: it was passed over if it had nothing to read at its turn,
    /// see `balance_memory`). If it still waits, it keeps its first place.
    pub(super) fn overdraft_candidate(&mut self, key: usize) {
        let Some(slot) = self.conns.get(key) else {
            return;
        };
        if slot.conn.memory_paused() && slot.conn.unfinished() > 0 {
            let id = slot.conn.id;
            self.wait_for_overdraft(key, id);
        }
    }

    /// When the overdraft's holder runs out of time: a poll deadline.
    pub(super) fn overdraft_deadline(&self) -> Option<Instant> {
        let h = self.memory.overdraft.holder()?;
        let slot = self.conns.get(h.key).filter(|s| s.conn.id == h.id)?;
        self.memory.overdraft.deadline(slot.conn.last_moved())
    }

    /// Ends `h`'s overdraft if it repaid it, went away or ran out of time.
    /// Out of time, a holder that read nothing with it is paused and waits
    /// again at the back; one that did loses its unfinished frame, and if
    /// it still holds more than before (a reply it does not take), its
    /// connection: what it took past the budget must come back before the
    /// next holder may take more.
    fn settle_overdraft(&mut self, h: Holder, now: Instant) {
        let Some(slot) = self.conns.get(h.key).filter(|s| s.conn.id == h.id) else {
            self.memory.overdraft.end();
            return;
        };
        let standing = if slot.conn.close_reason().is_some() {
            // Closing: what it holds goes with it, after this batch.
            Standing::Repaid
        } else {
            let last = slot.conn.last_moved();
            self.memory.overdraft.standing(now, last, slot.held)
        };
        match standing {
            Standing::Running => return,
            Standing::Repaid => {}
            Standing::Expired { used: false } => {
                debug!("memory overdraft unused token={}", conn_token(h.key).0);
                self.memory.overdraft.end();
                self.memory_gate(h.key, 0);
                return;
            }
            Standing::Expired { used: true } => self.expire_overdraft(h, now),
        }
        self.memory.overdraft.end();
    }

    /// `h` ran out of time after reading with its overdraft: its unfinished
    /// frame is dropped (the connection ends as after an EOF), and if it
    /// still holds more than before (its frame was done, but it does not
    /// read the reply), it is closed as stalled (a reset, which frees the
    /// kernel's copy of what it did not read too).
    fn expire_overdraft(&mut self, h: Holder, now: Instant) {
        stats::add(&self.shared.stats.overdraft_expiries, 1);
        let hold_fin = self.hold_fin();
        let slot = &mut self.conns[h.key];
        // One line per expiry, and at most one expiry per reactor every
        // `OVERDRAFT_STALL`: a client cannot flood the log with these.
        warn!(
            "memory overdraft ran out id={} peer={} held={} unfinished={}",
            h.id,
            slot.conn.peer(),
            slot.held,
            slot.conn.unfinished()
        );
        if !h.finished {
            let mut ctx = self.shared.ctx(now, 0, hold_fin);
            slot.conn.abandon_unfinished(&mut ctx);
            self.after_conn_io(h.key);
        }
        if let Some(slot) = self.conns.get_mut(h.key) {
            if slot.held > h.held_before && slot.conn.close_reason().is_none() {
                slot.conn.set_close(CloseReason::Timeout);
                self.to_close.push((h.key, h.id));
            }
        }
        self.close_batch();
    }
}
