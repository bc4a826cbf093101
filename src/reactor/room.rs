//! The chat room: handing each sender's lines to every other member,
//! spread over as many turns as it takes.
//!
//! A member's read of lines becomes one shared chunk (`protocol/chat.rs`);
//! giving it to a member is an `Rc` clone and a `writev`, but giving it to
//! 500 members is 500 of those, so a *delivery* walks the members with a
//! cursor (their slab keys, in order) and hands out at most
//! `HANDOFFS_PER_STEP` per step; deliveries take steps in turn, within the
//! turn's budget. A short line from one member therefore does not wait for
//! a long flood from another to reach everyone.
//!
//! Backpressure through the room: a sender is not read again until its last
//! chunk was handed to every member (its handler refuses input meanwhile);
//! then the reactor wakes it. So a flooder's own sends block once the
//! kernel's buffers fill, at the rate the room takes its lines. A member
//! whose backlog passes `--max-pending` is dropped at its handoff
//! (`Conn::deliver`), flood or not.
//!
//! Order: each member receives a sender's chunks in the order they were
//! sent (one delivery per sender at a time, its chunks in sequence), and a
//! leave notice after the member's last lines. Members that joined after a
//! chunk was made do not get it: ids only grow, so "joined later" is "id
//! above the newest id when it was sent".
//!
//! Lines before notices: a delivery whose next chunk is a member's lines
//! waits in the lines queue, one whose next chunk is a join or leave notice
//! in the notices queue. Lines take the turn's budget first; notices take
//! what is left, and at least one step per turn, so they never starve. Under
//! connect-and-reset churn the room is full of notices, and before this a
//! member's line took a step only after each of up to 64 notice deliveries
//! had taken one: it reached 100 members in 21 ms (median of runs' p50,
//! `examples/chat_churn.rs`), now in 0.8 ms, about what it takes without
//! churn. Across senders nothing was ever promised about order, so a line
//! may overtake someone else's earlier notice.
//!
//! A join nobody needs: when a connection leaves while its join notice is
//! still on its way, only the members that already got the join get the
//! leave; the others hear of it not at all (counted in `notices_skipped`).
//! A notice of a join whose leave is already known tells nobody anything,
//! and under churn such notices are all the room would carry. Every member
//! still sees joins and leaves in pairs. For this to work the reset must be
//! seen early: a member waiting for its join to go out reads nothing, but
//! stays registered for READABLE and checks for a reset on each event
//! (`Conn::interest`). Without that, 1,000 connections reset at once were
//! announced to every member all the same (`tests/chat_churn.rs`).

use std::rc::Rc;

use super::runq::Lane;
use super::Reactor;
use crate::ready::Ready;
use crate::stats;

mod queue;

pub(super) use queue::{Class, Delivery, Room};

/// Handoffs one delivery makes per step before the next delivery's turn.
/// Small enough that a one-line delivery is not held up by a long one for
/// more than this many handoffs; large enough that taking turns costs
/// nothing measurable.
const HANDOFFS_PER_STEP: usize = 64;

/// Slab keys a step may look at (most of them are members, but a slab with
/// many vacant keys must not make a step long).
const KEYS_PER_STEP: usize = 16 * HANDOFFS_PER_STEP;

/// What looking at one slab key costs of the turn's byte budget. A step
/// that finds no member to hand to (a slab left mostly vacant by a crowd
/// that just left, or members that joined after the chunk) spends no
/// handoff, so without this the room could take any number of such steps in
/// one turn: 6,000 members leaving at once make 6,000 leave notices, each
/// looking at up to 6,000 mostly vacant keys, 36 million looks. At 8 bytes a
/// key, a turn looks at 32,768 keys at most, some tens of microseconds.
const KEY_COST: usize = 8;

/// While more notice deliveries than this are in progress, the listener is
/// not served: in chat, every new member costs a join and a leave notice
/// handed to every other member, so a client that connects and closes in a
/// loop could make room work far faster than the room hands it out (14,000
/// connections a second against 100 members once queued 13,000 deliveries,
/// and a member's line took 4 to 7 s). Newcomers wait in the kernel's
/// backlog instead, as at `--max-conns`. Line deliveries do not count: there
/// is at most one per member, and accepting adds none.
pub(super) const ACCEPT_BELOW_NOTICES: usize = 64;

impl Reactor {
    /// Hands out room messages: lines first, then notices, each class
    /// taking steps in turn until the turn's budget is spent, and at least
    /// one step per turn.
    pub(super) fn advance_room(&mut self) {
        let busy = !self.room.is_idle();
        self.advance_class(Class::Lines);
        self.advance_class(Class::Notices);
        if busy && self.room.is_idle() && self.drain.is_some() {
            // Connections held back their FIN for lines still on their
            // way: let them finish now.
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.queue(key, Ready::WRITE, Lane::Old);
            }
        }
    }

    /// Steps of `class`'s deliveries until the budget is spent (at least
    /// one). A delivery whose next chunk is of the other class moves there.
    fn advance_class(&mut self, class: Class) {
        let mut first = true;
        while first || !self.shared.budget.exhausted() {
            first = false;
            let Some(mut d) = self.room.take_next(class) else {
                break;
            };
            if self.delivery_step(&mut d) {
                self.delivered(d.sender);
            } else {
                self.room.put_back(d);
            }
            self.account_room();
        }
    }

    /// One step of a delivery: at most `HANDOFFS_PER_STEP` members, fewer if
    /// the turn's budget runs out first. Returns true once its last chunk
    /// reached every member.
    fn delivery_step(&mut self, d: &mut Delivery) -> bool {
        let (mut handed, mut looked) = (0, 0);
        let capacity = self.conns.capacity();
        let hold_fin = self.hold_fin();
        while handed < HANDOFFS_PER_STEP && looked < KEYS_PER_STEP {
            if handed > 0 && self.shared.budget.exhausted() {
                break; // the turn is over; the cursor keeps our place
            }
            if d.cursor >= capacity.min(d.end) {
                // The front chunk reached everyone: the room holds it no more.
                self.room.release(d.chunks.front().map_or(0, |c| c.1.len()));
                if !d.next_chunk(self.next_id) {
                    return true;
                }
                continue;
            }
            let key = d.cursor;
            d.cursor += 1;
            looked += 1;
            self.shared.budget.spend_bytes(KEY_COST);
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            if !d.is_for(key, slot.conn.id) || slot.conn.close_reason().is_some() {
                continue;
            }
            let mut ctx = self.shared.ctx(self.now, 0, hold_fin);
            let left = slot.conn.deliver(&d.chunks[0].1, &mut ctx);
            self.shared.budget.spend_handoff();
            handed += 1;
            self.queue(key, left, Lane::Old);
            self.after_conn_io(key);
        }
        false
    }

    /// A sender's messages reached everyone: it may be read again, and is
    /// queued for it (the edge for its waiting input passed long ago).
    fn delivered(&mut self, (key, id): (usize, u64)) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if slot.conn.id != id {
            return;
        }
        slot.conn.on_delivered();
        if slot.conn.can_read() {
            // The fresh lane: its next line is new work, like a light
            // client's request, and must not wait behind every connection
            // with work left (under connect-and-reset churn that was
            // hundreds, and a member's line took up to half a second).
            // A flooder gains nothing: it reads one chunk's worth and
            // then waits for the room again.
            self.queue(key, Ready::READ, Lane::Fresh);
        }
    }

    /// A connection closed with a leave notice (chat): to the room, or,
    /// if it leaves before its join reached everyone, to those that had it.
    pub(super) fn leave_room(&mut self, sender: (usize, u64), msg: Rc<[u8]>) {
        if self.room.leave(sender, msg, self.next_id) {
            stats::add(&self.shared.stats.notices_skipped, 1);
        }
        self.account_room();
    }
}
