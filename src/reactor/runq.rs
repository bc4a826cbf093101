//! The run queue: connections with work to do this turn or the next, and
//! what they were ready for.
//!
//! Every connection event goes through it: `poll` says a socket is
//! readable and/or writable, the reactor records that `Ready` in the
//! connection's slot and queues the connection; serving it is a *visit*.
//! A visit does a bounded amount of work (the per-visit caps in `conn.rs`,
//! and the turn's budget in `budget.rs`); a connection that stopped with
//! work left is queued again with the readiness it still has, because
//! edge-triggered readiness will not report it again. Readiness is never
//! dropped, only deferred.
//!
//! Two lanes, after fq_codel's "new flows first" (RFC 8290, section 4.1):
//!
//! - `fresh`: connections that were idle and just got an event. A light
//!   client's request is here, and is served at the next turn whatever the
//!   bulk clients are doing.
//! - `old`: connections that used up a visit and still have work (a bulk
//!   sender, a chat member waiting for the room). They share what the fresh
//!   lane leaves of the budget, round-robin.
//!
//! An event for a connection that is already queued only adds to its
//! recorded readiness: it keeps its place, so a bulk sender cannot jump the
//! line by producing events. The reactor serves the fresh lane first and
//! then the old one, and gives the old lane at least one visit per turn, so
//! it cannot starve.
//!
//! A slab key can be closed and reused while queued; entries carry the
//! connection id, and a stale one is skipped when it comes up.
//!
//! `Reactor::queue` (below) is the one way onto the queue: it records the
//! readiness in the connection's slot and picks the lane.

use std::collections::VecDeque;

use log::trace;

use super::Reactor;
use crate::ready::Ready;
use crate::token::conn_token;

/// Which lane a connection waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Fresh,
    Old,
}

/// Queued connections, as (slab key, connection id), in two FIFO lanes.
/// Invariant (kept by the reactor): a live connection has at most one
/// entry, and has one exactly while its slot's recorded readiness is
/// non-empty.
#[derive(Debug, Default)]
pub(crate) struct RunQueue {
    fresh: VecDeque<(usize, u64)>,
    old: VecDeque<(usize, u64)>,
}

impl RunQueue {
    pub(crate) fn push(&mut self, lane: Lane, key: usize, id: u64) {
        match lane {
            Lane::Fresh => self.fresh.push_back((key, id)),
            Lane::Old => self.old.push_back((key, id)),
        }
    }

    /// The next entry of `lane`.
    pub(crate) fn pop(&mut self, lane: Lane) -> Option<(usize, u64)> {
        match lane {
            Lane::Fresh => self.fresh.pop_front(),
            Lane::Old => self.old.pop_front(),
        }
    }

    /// Entries waiting in `lane`.
    pub(crate) fn len(&self, lane: Lane) -> usize {
        match lane {
            Lane::Fresh => self.fresh.len(),
            Lane::Old => self.old.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.old.is_empty()
    }
}

impl Reactor {
    /// Records readiness for connection `key` and queues it in `lane`, unless
    /// it is queued already (then it keeps its place, with the readiness
    /// added). A connection that recently made a heavy visit goes to the
    /// old lane even from an event, as fq_codel keeps a bulk flow that
    /// drained for a moment among the old flows: otherwise a hundred bulk
    /// senders that each drain their socket now and then would fill the
    /// fresh lane, and a light client would wait behind them again.
    pub(super) fn queue(&mut self, key: usize, ready: Ready, lane: Lane) {
        let Some(slot) = self.conns.get_mut(key) else {
            // The connection closed earlier (an event for a vacant key is
            // spurious, and harmless).
            trace!("event for vacant token={}", conn_token(key).0);
            return;
        };
        if ready.is_empty() {
            return;
        }
        if slot.ready.is_empty() {
            let heavy = slot.heavy_until.is_some_and(|t| self.now < t.instant());
            let lane = if heavy { Lane::Old } else { lane };
            self.runq.push(lane, key, slot.conn.id);
        }
        slot.ready |= ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_fifo_and_separate() {
        let mut q = RunQueue::default();
        q.push(Lane::Old, 1, 10);
        q.push(Lane::Fresh, 2, 20);
        q.push(Lane::Fresh, 3, 30);
        assert_eq!(q.len(Lane::Fresh), 2);
        assert_eq!(q.pop(Lane::Fresh), Some((2, 20)));
        assert_eq!(q.pop(Lane::Fresh), Some((3, 30)));
        assert_eq!(q.pop(Lane::Fresh), None);
        assert!(!q.is_empty());
        assert_eq!(q.pop(Lane::Old), Some((1, 10)));
        assert!(q.is_empty());
    }
}
