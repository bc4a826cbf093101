//! Verification: the in-flight window of one connection, and what each echo means.
//!
//! A [`Window`] remembers every message sent but not yet resolved, as a ring indexed by
//! sequence number: `[low, next)` are in flight (or answered out of order), and slots just
//! below `low` still remember how their message ended, until overwritten. That memory is what
//! tells the error kinds apart:
//!
//! | kind | TCP (a stream: echo k must be message k) | UDP (datagrams) |
//! |---|---|---|
//! | corrupt | a byte differs, or the header is unreadable | same, or wrong length |
//! | missing | echo skipped ahead: the messages in between are gone | - |
//! | reordered | a message counted missing arrived later | arrived after a higher seq (info) |
//! | duplicate | a message that was already answered came back again | same |
//! | lost | - | no answer within `--udp-timeout` |
//! | late | - | answer came after it was counted lost |
//!
//! The ring is allocated once per connection; nothing is allocated per message.

use serde::Serialize;

use crate::payload::Decoded;

/// Errors seen, by kind. TCP data errors fail a run; for UDP see [`ErrorCounts::fails`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Echoes with a wrong byte or an unreadable header.
    pub corrupt: u64,
    /// TCP messages never echoed (skipped in the stream, or still owed at the end).
    pub missing: u64,
    /// Messages echoed more than once.
    pub duplicate: u64,
    /// TCP: messages echoed out of order. UDP: datagrams overtaken by a later one.
    pub reordered: u64,
    /// UDP datagrams with no answer within the timeout.
    pub lost: u64,
    /// UDP answers that came after their datagram was counted lost.
    pub late: u64,
}

impl ErrorCounts {
    /// Adds another thread's or interval's counts.
    pub fn add(&mut self, o: &ErrorCounts) {
        self.corrupt += o.corrupt;
        self.missing += o.missing;
        self.duplicate += o.duplicate;
        self.reordered += o.reordered;
        self.lost += o.lost;
        self.late += o.late;
    }

    /// Every kind added up.
    pub fn total(&self) -> u64 {
        self.corrupt + self.missing + self.duplicate + self.reordered + self.lost + self.late
    }

    /// Errors that fail a run. UDP may lose, reorder and delay datagrams by contract, so
    /// only corruption and duplication count there; loss is judged by `--max-loss`.
    pub fn fails(&self, udp: bool) -> u64 {
        if udp {
            self.corrupt + self.duplicate
        } else {
            self.corrupt + self.missing + self.duplicate + self.reordered
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Answered,
    /// TCP: skipped in the stream (counted missing). UDP: timed out (counted lost).
    Missed,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    /// Latency reference: actual send time (closed loop) or scheduled time (open loop), ns.
    t_ref: u64,
    /// Actual send time, ns: the UDP timeout counts from here.
    sent: u64,
    state: State,
}

/// Messages in flight on one connection. Invariant: `next - low <= slots.len()`, and the
/// slot of every seq in `[low, next)` holds that seq.
#[derive(Debug)]
pub struct Window {
    slots: Box<[Slot]>,
    mask: u64,
    /// Oldest unresolved seq; everything below is answered or missed.
    low: u64,
    /// Seq the next message sent will carry.
    next: u64,
    /// Pending slots in `[low, next)`.
    pending: usize,
    /// UDP: highest seq answered so far, to count reordering.
    highest: Option<u64>,
}

impl Window {
    /// A window able to track at least `capacity` messages in flight.
    pub fn new(capacity: usize) -> Self {
        let cap = Self::slots_for(capacity);
        let empty = Slot {
            seq: u64::MAX,
            t_ref: 0,
            sent: 0,
            state: State::Missed,
        };
        Window {
            slots: vec![empty; cap].into_boxed_slice(),
            mask: cap as u64 - 1,
            low: 0,
            next: 0,
            pending: 0,
            highest: None,
        }
    }

    /// Messages sent and not yet resolved.
    pub fn in_flight(&self) -> usize {
        self.pending
    }

    /// Slots a window asked for `capacity` has: a power of two, at least 2.
    pub fn slots_for(capacity: usize) -> usize {
        capacity.max(2).next_power_of_two()
    }

    /// Heap bytes of a window asked for `capacity`: what [`Window::new`] allocates.
    pub fn bytes_for(capacity: usize) -> usize {
        Self::slots_for(capacity) * std::mem::size_of::<Slot>()
    }

    /// Messages the window can track at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Seqs from the oldest unresolved to the next to send: what occupies the ring.
    pub fn span(&self) -> usize {
        (self.next - self.low) as usize
    }

    /// Whether another message can be tracked.
    pub fn has_room(&self) -> bool {
        self.next - self.low < self.slots.len() as u64
    }

    /// The oldest unresolved seq: for TCP, the message the next echo in the stream must be.
    pub fn front(&self) -> u64 {
        self.low
    }

    /// The seq the next [`Window::push`] returns.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Records a sent message; returns its seq. Caller checks [`Window::has_room`].
    pub fn push(&mut self, t_ref: u64, sent: u64) -> u64 {
        debug_assert!(self.has_room());
        let seq = self.next;
        self.slots[(seq & self.mask) as usize] = Slot {
            seq,
            t_ref,
            sent,
            state: State::Pending,
        };
        self.next += 1;
        self.pending += 1;
        seq
    }

    fn slot(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[(seq & self.mask) as usize]
    }

    /// A known slot below `low`, if the ring still remembers it.
    fn resolved_state(&mut self, seq: u64) -> Option<&mut Slot> {
        let slot = self.slot(seq);
        (slot.seq == seq).then_some(slot)
    }

    fn advance(&mut self) {
        while self.low < self.next
            && self.slots[(self.low & self.mask) as usize].state != State::Pending
        {
            self.low += 1;
        }
    }

    /// TCP: the oldest pending message is resolved, answered without a latency: it came
    /// back damaged, or junk took its place in the stream (the stream position says which
    /// message it was). Counts nothing: the caller counted the damage.
    pub fn resolve_front(&mut self) {
        if self.low < self.next {
            let low = self.low;
            self.slot(low).state = State::Answered;
            self.pending -= 1;
            self.advance();
        }
    }

    /// TCP: the next message-sized chunk off the stream is this connection's message, with
    /// its header intact but some other byte wrong: damaged in place. One corrupt; it stands
    /// for the message the stream was due to deliver.
    pub fn on_stream_damaged(&mut self, e: &mut ErrorCounts) {
        e.corrupt += 1;
        self.resolve_front();
    }

    /// TCP: the next chunk off the stream is an intact echo of this connection's message
    /// `seq` (below [`Window::next_seq`]). Returns the latency reference time when it is the
    /// echo of a pending message; counts a skip ahead as missing, a message already
    /// answered as duplicate, a missing one arriving after all as reordered.
    pub fn on_stream_echo(&mut self, seq: u64, e: &mut ErrorCounts) -> Option<u64> {
        debug_assert!(seq < self.next);
        if seq < self.low {
            match self.resolved_state(seq) {
                Some(slot) if slot.state == State::Missed => {
                    slot.state = State::Answered;
                    e.missing -= 1;
                    e.reordered += 1;
                }
                _ => e.duplicate += 1,
            }
            return None;
        }
        for skipped in self.low..seq {
            self.slot(skipped).state = State::Missed;
            e.missing += 1;
            self.pending -= 1;
        }
        let slot = self.slot(seq);
        slot.state = State::Answered;
        let t_ref = slot.t_ref;
        self.pending -= 1;
        self.advance();
        Some(t_ref)
    }

    /// UDP: one datagram. Returns the latency reference time when it is a good answer to a
    /// pending datagram.
    pub fn on_datagram(&mut self, d: Decoded, conn: u32, e: &mut ErrorCounts) -> Option<u64> {
        let (seq, intact) = match d {
            Decoded::Intact { conn: c, seq } if c == conn && seq < self.next => (seq, true),
            Decoded::Damaged { conn: c, seq } if c == conn && seq < self.next => (seq, false),
            _ => {
                e.corrupt += 1;
                return None;
            }
        };
        if !intact {
            e.corrupt += 1;
        }
        if seq < self.low {
            match self.resolved_state(seq) {
                Some(slot) if slot.state == State::Answered => e.duplicate += 1,
                _ => e.late += 1,
            }
            return None;
        }
        let slot = self.slot(seq);
        if slot.state == State::Answered {
            e.duplicate += 1;
            return None;
        }
        slot.state = State::Answered;
        let t_ref = slot.t_ref;
        self.pending -= 1;
        if self.highest.is_some_and(|h| seq < h) {
            e.reordered += 1;
        }
        self.highest = self.highest.max(Some(seq));
        self.advance();
        intact.then_some(t_ref)
    }

    /// When the oldest pending message was sent: the UDP loss timeout runs from there.
    /// (`low` is pending whenever `low < next`: resolved ones are stepped over.)
    pub fn oldest_pending_sent(&self) -> Option<u64> {
        (self.low < self.next).then(|| self.slots[(self.low & self.mask) as usize].sent)
    }

    /// UDP: counts as lost every pending datagram sent `timeout` ns or more before `now`.
    /// Datagrams are sent in seq order, so expired ones are always at the front.
    pub fn expire(&mut self, now: u64, timeout: u64, e: &mut ErrorCounts) {
        while self.low < self.next {
            let low = self.low;
            let slot = self.slot(low);
            if slot.state == State::Pending {
                if now.saturating_sub(slot.sent) < timeout {
                    break;
                }
                slot.state = State::Missed;
                e.lost += 1;
                self.pending -= 1;
            }
            self.low += 1;
        }
    }

    /// End of run or of the connection: whatever is still pending will never be answered.
    /// TCP counts it missing, UDP lost.
    pub fn abandon(&mut self, udp: bool, e: &mut ErrorCounts) {
        for seq in self.low..self.next {
            let slot = self.slot(seq);
            if slot.state == State::Pending {
                slot.state = State::Missed;
                if udp {
                    e.lost += 1;
                } else {
                    e.missing += 1;
                }
            }
        }
        self.pending = 0;
        self.low = self.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(seq: u64) -> Decoded {
        Decoded::Intact { conn: 1, seq }
    }

    fn window_with(n: u64) -> Window {
        let mut w = Window::new(8);
        for i in 0..n {
            w.push(100 + i, 100 + i);
        }
        w
    }

    /// In-order TCP echoes resolve in order and hand back the reference times.
    #[test]
    fn tcp_in_order() {
        let (mut w, mut e) = (window_with(3), ErrorCounts::default());
        assert_eq!(w.on_stream_echo(0, &mut e), Some(100));
        assert_eq!(w.on_stream_echo(1, &mut e), Some(101));
        assert_eq!(w.in_flight(), 1);
        assert_eq!(e, ErrorCounts::default());
    }

    /// A gap counts missing; the skipped message arriving later turns one missing into
    /// reordered; the same message a third time is a duplicate.
    #[test]
    fn tcp_missing_reordered_duplicate() {
        let (mut w, mut e) = (window_with(4), ErrorCounts::default());
        assert_eq!(w.on_stream_echo(2, &mut e), Some(102));
        assert_eq!((e.missing, w.in_flight()), (2, 1));
        assert_eq!(w.on_stream_echo(0, &mut e), None);
        assert_eq!((e.missing, e.reordered), (1, 1));
        assert_eq!(w.on_stream_echo(0, &mut e), None);
        assert_eq!(e.duplicate, 1);
        assert_eq!(e.fails(false), 3);
    }

    /// A message damaged in place is one corrupt and takes the place of the message the
    /// stream position says it was; junk resolves the front without counting again.
    #[test]
    fn tcp_damage_resolves_front() {
        let (mut w, mut e) = (window_with(3), ErrorCounts::default());
        w.on_stream_damaged(&mut e);
        assert_eq!((e.corrupt, w.in_flight(), w.front()), (1, 2, 1));
        w.resolve_front();
        assert_eq!((e.corrupt, w.in_flight(), w.front()), (1, 1, 2));
        assert_eq!(w.on_stream_echo(2, &mut e), Some(102));
        assert_eq!(e.fails(false), 1);
    }

    /// UDP: answers may come out of order (counted, not failing); a timed-out datagram is
    /// lost, and its answer after that is late; a second answer is a duplicate.
    #[test]
    fn udp_lost_late_duplicate() {
        let (mut w, mut e) = (window_with(3), ErrorCounts::default());
        assert_eq!(w.on_datagram(ok(1), 1, &mut e), Some(101));
        assert_eq!(w.on_datagram(ok(2), 1, &mut e), Some(102));
        w.expire(140, 50, &mut e);
        assert_eq!((e.lost, w.in_flight()), (0, 1));
        w.expire(1_000, 50, &mut e);
        assert_eq!((e.lost, w.in_flight()), (1, 0));
        assert_eq!(w.on_datagram(ok(0), 1, &mut e), None);
        assert_eq!(e.late, 1);
        assert_eq!(w.on_datagram(ok(2), 1, &mut e), None);
        assert_eq!(e.duplicate, 1);
        assert_eq!(e.fails(true), 1);
    }

    /// UDP reordering is counted when a lower seq is answered after a higher one.
    #[test]
    fn udp_reordered() {
        let (mut w, mut e) = (window_with(2), ErrorCounts::default());
        assert_eq!(w.on_datagram(ok(1), 1, &mut e), Some(101));
        assert_eq!(w.on_datagram(ok(0), 1, &mut e), Some(100));
        assert_eq!((e.reordered, e.fails(true)), (1, 0));
    }

    /// The ring fills up at its capacity and frees as the front resolves.
    #[test]
    fn capacity_and_abandon() {
        let mut w = Window::new(3); // rounds up to 4
        for i in 0..4 {
            assert!(w.has_room());
            assert_eq!(w.push(i, i), i);
        }
        assert!(!w.has_room());
        let mut e = ErrorCounts::default();
        w.on_stream_echo(0, &mut e);
        assert!(w.has_room());
        w.abandon(false, &mut e);
        assert_eq!((e.missing, w.in_flight()), (3, 0));
    }
}
