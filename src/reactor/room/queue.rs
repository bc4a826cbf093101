//! The room's bookkeeping, without sockets: deliveries in progress in two
//! queues (lines, then notices), each found by its sender, the bytes they
//! hold, and what a leave does to a join still on its way. The policy is in
//! the module docs of `reactor/room.rs`; the reactor walks the members.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::protocol::outbox::Kind;

/// The room's two queues (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Lines = 0,
    Notices = 1,
}

impl Class {
    fn of(kind: Kind) -> Class {
        match kind {
            Kind::Lines => Class::Lines,
            Kind::Join | Kind::Leave => Class::Notices,
        }
    }
}

/// One sender's chunks on their way to every other member.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The sender (slab key, connection id): skipped, and woken when done.
    pub(crate) sender: (usize, u64),
    /// Chunks to hand out in order; the front one is being handed out now.
    /// Invariant: never empty while the delivery is in the room.
    pub(crate) chunks: VecDeque<(Kind, Rc<[u8]>)>,
    /// Only members with an id up to this receive the front chunk.
    pub(crate) newest: u64,
    /// The next slab key to consider for the front chunk.
    pub(crate) cursor: usize,
    /// Keys from here on do not get the front chunk: `usize::MAX`, except
    /// for a leave cut to the members that got the join (`Room::leave`).
    pub(crate) end: usize,
}

impl Delivery {
    fn new(sender: (usize, u64), kind: Kind, chunk: Rc<[u8]>, newest: u64) -> Delivery {
        Delivery {
            sender,
            chunks: VecDeque::from([(kind, chunk)]),
            newest,
            cursor: 0,
            end: usize::MAX,
        }
    }

    /// True if the member in slot `key` with id `id` should get the front
    /// chunk.
    pub(crate) fn is_for(&self, key: usize, id: u64) -> bool {
        (key, id) != self.sender && id <= self.newest && key < self.end
    }

    /// The front chunk reached every member: moves to the next one (starting
    /// over from the first key, for the members present now). Returns false
    /// once the delivery is complete.
    pub(crate) fn next_chunk(&mut self, newest: u64) -> bool {
        self.chunks.pop_front();
        self.cursor = 0;
        self.end = usize::MAX;
        self.newest = newest;
        !self.chunks.is_empty()
    }

    /// The queue it waits in: by what its front chunk is.
    fn class(&self) -> Class {
        Class::of(self.chunks.front().map_or(Kind::Lines, |c| c.0))
    }
}

/// Deliveries in progress, taking steps in turn within their class: the
/// order of their senders, and each delivery found by its sender (a leave
/// notice joins its sender's delivery in constant time, however many are in
/// progress).
/// Invariant: every delivery in `by_sender` has one entry in the queue of
/// its class, and `live` counts them per class. A queue may also hold
/// entries of deliveries `leave` dropped; they are skipped when they come
/// up (ids are never reused, so no later delivery has their sender).
#[derive(Debug, Default)]
pub(crate) struct Room {
    queues: [VecDeque<(usize, u64)>; 2],
    by_sender: HashMap<(usize, u64), Delivery>,
    live: [usize; 2],
    /// Bytes of every chunk not yet handed to all its members (each chunk
    /// once, however many members it goes to): what the room holds for the
    /// memory budget (see `Reactor::account_room`).
    bytes: usize,
}

impl Room {
    /// Starts handing `chunk` from `sender` to everyone present (ids up to
    /// `newest`), after anything from the same sender still on its way.
    pub(crate) fn send(&mut self, sender: (usize, u64), kind: Kind, chunk: Rc<[u8]>, newest: u64) {
        self.bytes += chunk.len();
        if let Some(d) = self.by_sender.get_mut(&sender) {
            d.chunks.push_back((kind, chunk));
            return;
        }
        self.put_back(Delivery::new(sender, kind, chunk, newest));
    }

    /// `sender` left, with this leave notice. If its join is still on its
    /// way, the members that have not had it get neither notice: a join not
    /// yet handed to anyone is dropped, one handed out part way is replaced
    /// by the leave for the members before the cursor. Returns true if some
    /// member was spared the pair.
    pub(crate) fn leave(&mut self, sender: (usize, u64), chunk: Rc<[u8]>, newest: u64) -> bool {
        let Some(d) = self.by_sender.get_mut(&sender) else {
            self.send(sender, Kind::Leave, chunk, newest);
            return false;
        };
        if d.chunks.len() != 1 || d.chunks[0].0 != Kind::Join {
            // Lines of its own are still on their way: they go out, and
            // then the leave, to everyone they went to.
            self.send(sender, Kind::Leave, chunk, newest);
            return false;
        }
        self.bytes -= d.chunks[0].1.len();
        if d.cursor == 0 {
            // Its entry in the queue stays, and is skipped (see `Room`).
            self.by_sender.remove(&sender);
            self.live[Class::Notices as usize] -= 1;
            return true;
        }
        // Those before the cursor had the join (`newest` still says who
        // was present for it): they get the leave, nobody else.
        self.bytes += chunk.len();
        d.chunks[0] = (Kind::Leave, chunk);
        d.end = d.cursor;
        d.cursor = 0;
        true
    }

    /// The next delivery of `class` to take a step; give it back with
    /// `put_back` unless it is complete.
    pub(crate) fn take_next(&mut self, class: Class) -> Option<Delivery> {
        while let Some(sender) = self.queues[class as usize].pop_front() {
            if let Some(d) = self.by_sender.remove(&sender) {
                self.live[class as usize] -= 1;
                return Some(d);
            }
        }
        None
    }

    /// Returns an unfinished delivery to the back of its class's queue.
    pub(crate) fn put_back(&mut self, d: Delivery) {
        let class = d.class() as usize;
        self.queues[class].push_back(d.sender);
        self.live[class] += 1;
        self.by_sender.insert(d.sender, d);
    }

    /// True when nothing is on its way.
    pub(crate) fn is_idle(&self) -> bool {
        self.len() == 0
    }

    /// Deliveries in progress.
    pub(crate) fn len(&self) -> usize {
        self.live[0] + self.live[1]
    }

    /// Deliveries in progress whose next chunk is a notice.
    pub(crate) fn notices(&self) -> usize {
        self.live[Class::Notices as usize]
    }

    /// Bytes of the chunks still on their way.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// A chunk of `len` bytes reached every member it was for.
    pub(crate) fn release(&mut self, len: usize) {
        self.bytes -= len;
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
        room.send((1, 10), Kind::Lines, chunk("a"), 12);
        room.send((2, 11), Kind::Lines, chunk("b"), 12);
        room.send((1, 10), Kind::Leave, chunk("a left"), 13);
        assert_eq!(room.len(), 2);
        let mut d = room.take_next(Class::Lines).unwrap();
        assert_eq!(d.sender, (1, 10));
        assert_eq!(&*d.chunks[0].1, b"a");
        d.cursor = 7;
        assert!(d.next_chunk(14), "the leave notice is next");
        assert_eq!(&*d.chunks[0].1, b"a left");
        assert_eq!((d.cursor, d.newest), (0, 14));
        assert!(!d.next_chunk(14), "then it is complete");
    }

    /// The room counts each chunk once, from `send` until it is released.
    #[test]
    fn bytes_count_each_chunk_once_until_released() {
        let mut room = Room::default();
        room.send((1, 10), Kind::Lines, chunk("abc"), 12);
        room.send((1, 10), Kind::Lines, chunk("de"), 12);
        assert_eq!(room.bytes(), 5);
        room.release(3);
        assert_eq!(room.bytes(), 2);
        room.release(2);
        assert_eq!(room.bytes(), 0);
    }

    #[test]
    fn the_sender_and_later_members_are_skipped() {
        let d = Delivery::new((3, 30), Kind::Lines, chunk("x"), 31);
        assert!(!d.is_for(3, 30), "not to the sender");
        assert!(d.is_for(4, 31));
        assert!(!d.is_for(5, 32), "joined after the line was sent");
    }

    /// Lines are served ahead of notices sent before them, and a delivery
    /// whose lines are done waits with the notices for its leave.
    #[test]
    fn lines_go_first_and_a_leave_after_lines_moves_to_the_notices() {
        let mut room = Room::default();
        for k in 0..10 {
            room.send((k, k as u64), Kind::Join, chunk("* joined"), 20);
        }
        room.send((50, 50), Kind::Lines, chunk("hi"), 60);
        room.send((50, 50), Kind::Leave, chunk("* left"), 60);
        assert_eq!((room.len(), room.notices()), (11, 10));
        let mut d = room.take_next(Class::Lines).unwrap();
        assert_eq!(d.sender, (50, 50), "the line before ten older joins");
        assert!(room.take_next(Class::Lines).is_none());
        assert!(d.next_chunk(60));
        room.put_back(d);
        assert_eq!(room.notices(), 11);
        for k in 0..10 {
            assert_eq!(room.take_next(Class::Notices).unwrap().sender.0, k);
        }
        assert_eq!(room.take_next(Class::Notices).unwrap().sender, (50, 50));
        assert!(room.is_idle());
    }

    /// A connection that leaves before its join was handed to anyone is
    /// never announced: the delivery goes, with its bytes and its place.
    #[test]
    fn a_leave_before_the_join_went_out_drops_both() {
        let mut room = Room::default();
        room.send((1, 10), Kind::Join, chunk("* a joined"), 10);
        room.send((2, 11), Kind::Join, chunk("* b joined"), 11);
        assert!(room.leave((1, 10), chunk("* a left"), 11));
        assert_eq!((room.len(), room.notices()), (1, 1));
        assert_eq!(room.bytes(), "* b joined".len());
        let d = room.take_next(Class::Notices).unwrap();
        assert_eq!(d.sender, (2, 11), "the dropped one's place is skipped");
        assert!(room.take_next(Class::Notices).is_none());
    }

    /// A join handed out part way: the leave replaces it, only for the keys
    /// the join reached (before the cursor), for the members present then.
    #[test]
    fn a_leave_during_the_join_goes_to_those_who_had_it() {
        let mut room = Room::default();
        room.send((1, 10), Kind::Join, chunk("* a joined"), 10);
        let mut d = room.take_next(Class::Notices).unwrap();
        d.cursor = 40;
        room.put_back(d);
        assert!(room.leave((1, 10), chunk("* a left"), 25));
        assert_eq!(room.bytes(), "* a left".len());
        let mut d = room.take_next(Class::Notices).unwrap();
        assert_eq!(&*d.chunks[0].1, b"* a left");
        assert_eq!((d.cursor, d.end, d.newest), (0, 40, 10));
        assert!(d.is_for(39, 9));
        assert!(!d.is_for(40, 9), "past the cursor: never had the join");
        assert!(!d.is_for(5, 11), "joined after it: never had the join");
        assert!(!d.next_chunk(25));
    }

    /// Lines of its own on their way, or a join that reached everyone:
    /// the leave follows as usual, to everyone.
    #[test]
    fn a_leave_after_lines_or_a_finished_join_goes_to_all() {
        let mut room = Room::default();
        room.send((1, 10), Kind::Join, chunk("* a joined"), 10);
        room.send((1, 10), Kind::Lines, chunk("a: hi"), 10);
        assert!(!room.leave((1, 10), chunk("* a left"), 12));
        let d = room.take_next(Class::Notices).unwrap();
        assert_eq!(d.chunks.len(), 3);
        assert!(!room.leave((2, 11), chunk("* b left"), 12));
        let d = room.take_next(Class::Notices).unwrap();
        assert_eq!((d.sender, d.end, d.newest), ((2, 11), usize::MAX, 12));
    }
}
