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

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::runq::Lane;
use super::Reactor;
use crate::ready::Ready;

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

/// While more deliveries than this are in progress, the listener is not
/// served: in chat, every new member costs a join and a leave notice handed
/// to every other member, so a client that connects and closes in a loop
/// makes room work far faster than the room hands it out. Without this
/// bound, 14,000 connections a second against 100 members queued 13,000
/// deliveries, and a member's line took 4 to 7 s to arrive. Newcomers wait
/// in the kernel's backlog instead, as at `--max-conns`; members that talk
/// are not affected (each has at most one delivery, see the module docs).
pub(super) const ACCEPT_BELOW_DELIVERIES: usize = 64;

/// One sender's chunks on their way to every other member.
#[derive(Debug)]
pub(super) struct Delivery {
    /// The sender (slab key, connection id): skipped, and woken when done.
    pub(super) sender: (usize, u64),
    /// Chunks to hand out in order; the front one is being handed out now.
    /// Invariant: never empty while the delivery is in the room.
    pub(super) chunks: VecDeque<Rc<[u8]>>,
    /// Only members with an id up to this receive the front chunk.
    pub(super) newest: u64,
    /// The next slab key to consider for the front chunk.
    pub(super) cursor: usize,
}

impl Delivery {
    /// True if the member in slot `key` with id `id` should get the front
    /// chunk.
    pub(super) fn is_for(&self, key: usize, id: u64) -> bool {
        (key, id) != self.sender && id <= self.newest
    }

    /// The front chunk reached every member: moves to the next one (starting
    /// over from the first key, for the members present now). Returns false
    /// once the delivery is complete.
    pub(super) fn next_chunk(&mut self, newest: u64) -> bool {
        self.chunks.pop_front();
        self.cursor = 0;
        self.newest = newest;
        !self.chunks.is_empty()
    }
}

/// Deliveries in progress, taking steps in turn: the order of their senders,
/// and each delivery found by its sender (a leave notice joins its sender's
/// delivery in constant time, however many are in progress).
/// Invariant: `order` and `by_sender` hold the same senders.
#[derive(Debug, Default)]
pub(super) struct Room {
    order: VecDeque<(usize, u64)>,
    by_sender: HashMap<(usize, u64), Delivery>,
    /// Bytes of every chunk not yet handed to all its members (each chunk
    /// once, however many members it goes to): what the room holds for the
    /// memory budget (see `Reactor::account_room`).
    bytes: usize,
}

impl Room {
    /// Starts handing `chunk` from `sender` to everyone present (ids up to
    /// `newest`), after anything from the same sender still on its way.
    pub(super) fn send(&mut self, sender: (usize, u64), chunk: Rc<[u8]>, newest: u64) {
        self.bytes += chunk.len();
        if let Some(d) = self.by_sender.get_mut(&sender) {
            d.chunks.push_back(chunk);
            return;
        }
        self.put_back(Delivery {
            sender,
            chunks: VecDeque::from([chunk]),
            newest,
            cursor: 0,
        });
    }

    /// The next delivery to take a step; give it back with `put_back`
    /// unless it is complete.
    pub(super) fn take_next(&mut self) -> Option<Delivery> {
        let sender = self.order.pop_front()?;
        self.by_sender.remove(&sender)
    }

    /// Returns an unfinished delivery to the back of the line.
    pub(super) fn put_back(&mut self, d: Delivery) {
        self.order.push_back(d.sender);
        self.by_sender.insert(d.sender, d);
    }

    /// True when nothing is on its way.
    pub(super) fn is_idle(&self) -> bool {
        self.order.is_empty()
    }

    /// Deliveries in progress.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Bytes of the chunks still on their way.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// A chunk of `len` bytes reached every member it was for.
    pub(super) fn release(&mut self, len: usize) {
        self.bytes -= len;
    }
}

impl Reactor {
    /// Hands out room messages: deliveries take steps in turn until the
    /// turn's budget is spent, at least one step per turn.
    pub(super) fn advance_room(&mut self) {
        let mut first = true;
        while !self.room.is_idle() && (first || !self.shared.budget.exhausted()) {
            first = false;
            let Some(mut d) = self.room.take_next() else {
                break;
            };
            let complete = self.delivery_step(&mut d);
            if complete {
                self.delivered(d.sender);
            } else {
                self.room.put_back(d);
            }
            self.account_room();
            if self.room.is_idle() && self.drain.is_some() {
                // Connections held back their FIN for lines still on their
                // way: let them finish now.
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.queue(key, Ready::WRITE, Lane::Old);
                }
            }
        }
    }

    /// One step of a delivery: at most `HANDOFFS_PER_STEP` members, fewer if
    /// the turn's budget runs out first. Returns true once its last chunk
    /// reached every member.
    fn delivery_step(&mut self, d: &mut Delivery) -> bool {
        let (mut handed, mut looked) = (0, 0);
        let end = self.conns.capacity();
        let hold_fin = self.hold_fin();
        while handed < HANDOFFS_PER_STEP && looked < KEYS_PER_STEP {
            if handed > 0 && self.shared.budget.exhausted() {
                break; // the turn is over; the cursor keeps our place
            }
            if d.cursor >= end {
                // The front chunk reached everyone: the room holds it no more.
                self.room.release(d.chunks.front().map_or(0, |c| c.len()));
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
            let left = slot.conn.deliver(&d.chunks[0], &mut ctx);
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
            // hundreds, and a member's line took up to half a second, 1 s
            // on a loaded machine; now 22-24 ms at p50 and 30-65 ms at most).
            // A flooder gains nothing: it reads one chunk's worth and
            // then waits for the room again.
            self.queue(key, Ready::READ, Lane::Fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(s: &str) -> Rc<[u8]> {
        Rc::from(s.as_bytes())
    }

    #[test]
    fn a_senders_chunks_follow_each_other_in_one_delivery() {
        let mut room = Room::default();
        room.send((1, 10), chunk("a"), 12);
        room.send((2, 11), chunk("b"), 12);
        room.send((1, 10), chunk("a left"), 13);
        assert_eq!(room.len(), 2);
        let mut d = room.take_next().unwrap();
        assert_eq!(d.sender, (1, 10));
        assert_eq!(&*d.chunks[0], b"a");
        d.cursor = 7;
        assert!(d.next_chunk(14), "the leave notice is next");
        assert_eq!(&*d.chunks[0], b"a left");
        assert_eq!((d.cursor, d.newest), (0, 14));
        assert!(!d.next_chunk(14), "then it is complete");
    }

    /// The room counts each chunk once, from `send` until it is released.
    #[test]
    fn bytes_count_each_chunk_once_until_released() {
        let mut room = Room::default();
        room.send((1, 10), chunk("abc"), 12);
        room.send((1, 10), chunk("de"), 12);
        assert_eq!(room.bytes(), 5);
        room.release(3);
        assert_eq!(room.bytes(), 2);
        room.release(2);
        assert_eq!(room.bytes(), 0);
    }

    #[test]
    fn the_sender_and_later_members_are_skipped() {
        let d = Delivery {
            sender: (3, 30),
            chunks: VecDeque::from([chunk("x")]),
            newest: 31,
            cursor: 0,
        };
        assert!(!d.is_for(3, 30), "not to the sender");
        assert!(d.is_for(4, 31));
        assert!(!d.is_for(5, 32), "joined after the line was sent");
    }
}
