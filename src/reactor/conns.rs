//! Connection bookkeeping around IO: after a connection did IO, hand its
//! chat messages to the room, count what it holds, keep its registered
//! interest and its timer in step with what it needs; and after the batch,
//! close what asked to be closed (never in the middle of a batch, so a
//! reused slab key cannot receive an event meant for its predecessor).

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, trace, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::Reactor;
use crate::budget::TurnBudget;
use crate::conn::{CloseReason, Conn, Ctx};
use crate::protocol::{self, Outbox};
use crate::ready::Ready;
use crate::stamp::Stamp;
use crate::stats::{self, Counters};
use crate::token::{conn_key, conn_token};

/// A connection in the slab, with the interest registered for it (so we call
/// `reregister` only when it changes), the readiness it has not been served
/// for, and what it holds in memory. Every connection pays for one, idle or
/// not: keep it small (see `conn/tests.rs`, `benches/idle.rs`).
pub(super) struct Slot {
    pub(super) conn: Conn<TcpStream>,
    pub(super) registered: Option<Interest>,
    /// Readiness not served yet. Invariant: non-empty exactly while the
    /// connection has an entry in the run queue.
    pub(super) ready: Ready,
    /// `conn.held()` at its last accounting (see `account.rs`).
    pub(super) held: usize,
    /// Until this time its events go to the old lane, behind light clients
    /// (see `Reactor::queue`): set by a visit that moved `HEAVY_VISIT`
    /// bytes or more, for `HEAVY_MEMORY`.
    pub(super) heavy_until: Option<Stamp>,
    /// What the pending-bytes and paused gauges count for it.
    pub(super) reported: super::metrics::Reported,
}

/// What every connection call borrows from the reactor, kept apart from the
/// slab so both can be borrowed at once.
pub(super) struct Shared {
    /// The one read buffer (`SCRATCH_SIZE`) every socket reads into; its
    /// contents mean nothing between calls.
    pub(super) scratch: Box<[u8]>,
    /// Chat messages one connection produced, waiting to be handed to the
    /// room. Empty between connection calls: `after_conn_io` moves them.
    pub(super) outbox: Outbox,
    /// The counters, shared with `Stats` handles on other threads.
    pub(super) stats: std::sync::Arc<Counters>,
    /// What is left of this turn's work.
    pub(super) budget: TurnBudget,
    /// `--max-pending`, and half of it (see `Config::low_water`).
    pub(super) max_pending: usize,
    pub(super) low_water: usize,
}

impl Shared {
    pub(super) fn ctx(&mut self, now: Instant, read_allowance: usize, hold_fin: bool) -> Ctx<'_> {
        Ctx {
            scratch: &mut self.scratch,
            room: &mut self.outbox,
            stats: &self.stats,
            budget: &mut self.budget,
            now,
            max_pending: self.max_pending,
            low_water: self.low_water,
            read_allowance,
            hold_fin,
        }
    }
}

impl Reactor {
    /// A client the acceptor took: set it up, give it a slot and an id, run
    /// its handler's `on_open`, and register it.
    pub(super) fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Echo traffic is request/response: do not let Nagle hold back a
        // small reply waiting for an ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("set_nodelay peer={peer} error={e}");
        }
        stats::add(&self.shared.stats.accepted, 1);
        stats::add(&self.shared.stats.active, 1);
        self.next_id += 1;
        let id = self.next_id;
        let handler = protocol::handler(&self.config, peer, self.root.as_ref());
        let ctx = &mut self.shared.ctx(self.now, 0, false);
        let conn = Conn::new(stream, id, handler, ctx);
        let key = self.conns.insert(Slot {
            conn,
            registered: None,
            reported: Default::default(),
            ready: Ready::default(),
            held: 0,
            heavy_until: None,
        });
        debug!("open token={} peer={peer} id={id}", conn_token(key).0);
        self.after_conn_io(key);
    }

    /// After a connection did IO: send its chat messages to the room, count
    /// what it holds, sync its interest with what it needs, keep its timer,
    /// and queue it for closing if done.
    pub(super) fn after_conn_io(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let sender = (key, slot.conn.id);
        for (kind, msg) in self.shared.outbox.drain() {
            self.room.send(sender, kind, msg, self.next_id);
        }
        debug_assert!(self.shared.outbox.is_empty(), "outbox drained");
        self.account_room();
        self.account(key);
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        super::metrics::sync_gauges(&self.shared.stats, slot);
        if let Some(reason) = slot.conn.close_reason() {
            trace!("closing token={} reason={reason:?}", conn_token(key).0);
            self.to_close.push((key, slot.conn.id));
            return;
        }
        let wanted = slot.conn.interest();
        if wanted != slot.registered {
            let token = conn_token(key);
            let registry = self.poll.registry();
            let result = match (slot.registered, wanted) {
                (None, Some(i)) => registry.register(&mut slot.conn.socket, token, i),
                (Some(_), Some(i)) => registry.reregister(&mut slot.conn.socket, token, i),
                (Some(_), None) => registry.deregister(&mut slot.conn.socket),
                (None, None) => Ok(()),
            };
            trace!("interest token={} {:?}", token.0, wanted);
            match result {
                Ok(()) => slot.registered = wanted,
                Err(e) => {
                    warn!("register token={} error={e}", token.0);
                    slot.conn.set_close(CloseReason::Error);
                    self.to_close.push((key, slot.conn.id));
                    return;
                }
            }
        }
        // Lazy timers: only schedule when the deadline moved *earlier* than
        // the entries already queued (see timer.rs).
        if let Some(at) = slot.conn.take_new_deadline(self.config.idle_timeout) {
            self.timers.schedule(at, key, slot.conn.id);
        }
    }

    /// Closes what the batch marked, at a point where no event still refers
    /// to those keys. A chat leave notice goes to the room.
    pub(super) fn close_batch(&mut self) {
        while let Some((key, id)) = self.to_close.pop() {
            if self.conns.get(key).is_none_or(|s| s.conn.id != id) {
                continue; // already closed (marked twice)
            }
            let mut slot = self.conns.remove(key);
            super::metrics::release_gauges(&self.shared.stats, &slot);
            self.forget(slot.held);
            let reason = slot.conn.close_reason().unwrap_or(CloseReason::Done);
            if slot.registered.is_some() {
                if let Err(e) = self.poll.registry().deregister(&mut slot.conn.socket) {
                    trace!("deregister token={} error={e}", conn_token(key).0);
                }
            }
            debug!(
                // The id pairs this line with the `open` line, which has the
                // address: after a reset the kernel may no longer know it.
                "close token={} id={} peer={} reason={reason:?}",
                conn_token(key).0,
                slot.conn.id,
                slot.conn.peer()
            );
            slot.conn.reset_if_stalled();
            stats::add(&self.shared.stats.closed, 1);
            stats::sub(&self.shared.stats.active, 1);
            if let Some(msg) = slot.conn.on_close() {
                // After any lines of its own still on their way (or to
                // nobody who has not had its join, see `room.rs`).
                self.leave_room((key, id), msg);
            }
            // Dropping the socket closes it.
        }
        self.compact_timers();
        if self
            .acceptor
            .on_closed(self.poll.registry(), self.conns.len())
        {
            // Clients that waited in the backlog raised no new edge.
            self.accept_all();
        }
    }

    /// The peer's FIN is already queued on this connection: tell it, so its
    /// read loop does not stop at a short read before the EOF (no new edge
    /// would come for it).
    pub(super) fn note_read_closed(&mut self, token: Token) {
        if let Some(slot) = conn_key(token).and_then(|k| self.conns.get_mut(k)) {
            slot.conn.note_read_closed();
        }
    }
}
