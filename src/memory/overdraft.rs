//! The overdraft: while the budget is over, one paused holder at a time may
//! read past it, exactly as much as finishes the frame it holds, so the
//! total falls again (why: see `memory.rs`). Pure bookkeeping: who waits,
//! who holds it, and, given `now`, whether its holder repaid it, still
//! makes progress, or ran out of time; unit-tested on virtual time.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The holder loses its overdraft once no bytes moved either way for this
/// long: a client that stopped sending (or reading its reply) must not
/// keep everyone else waiting. Far longer than a gap between the segments
/// of a frame, even across a retransmission.
pub(crate) const OVERDRAFT_STALL: Duration = Duration::from_secs(2);

/// ... and after this long in all, however it trickles: a frame of 1 MiB
/// and its reply take 10 s only below about 2 Mbit/s.
pub(crate) const OVERDRAFT_LIMIT: Duration = Duration::from_secs(10);

/// The connection allowed past the budget now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Its slab key and id (keys are reused; the id tells them apart).
    pub(crate) key: usize,
    pub(crate) id: u64,
    /// When it was granted the overdraft.
    pub(crate) since: Instant,
    /// What it held then. It has repaid once its frame is done and it
    /// holds no more than this: the reply taken.
    pub(crate) held_before: usize,
    /// What its frame missed then.
    pub(crate) missing_before: usize,
    /// It read part of its frame with the overdraft. Out of time, that
    /// frame is then dropped: without this, a client whose partial frame's
    /// buffer had room to spare could send one byte per turn, hold the
    /// overdraft for the stall time each time, and never lose anything.
    pub(crate) read: bool,
    /// Its frame is done (nothing was unfinished after one of its visits):
    /// from now on it reads only what the budget allows anyone. The
    /// overdraft is for one frame: without this, a client pipelining
    /// frames would take the next one's top-up and go on past the budget
    /// with it, frame after frame, while everyone else waited.
    pub(crate) finished: bool,
}

/// Where the holder's overdraft stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Still finishing, and moving bytes.
    Running,
    /// Frame done, reply taken: the next may have it.
    Repaid,
    /// Out of time. `used`: it read part of its frame with it, or holds
    /// more than when it began (a reply it does not take): memory it can
    /// give back, and a turn it cannot have again, only by losing its
    /// frame or its connection.
    Expired { used: bool },
}

/// Who waits for the overdraft, and who holds it.
#[derive(Debug, Default)]
pub(crate) struct Overdraft {
    /// Paused holders of an unfinished frame (slab key, id), in the order
    /// they were paused: first paused, first served, so nobody waits
    /// behind more than the holders paused before it (ordering by the
    /// least missing would let a client that keeps reconnecting with
    /// nearly complete frames go first forever). May hold stale entries,
    /// skipped when reached.
    waiting: VecDeque<(usize, u64)>,
    /// The entries of `waiting`: each connection waits once, in its first
    /// place. A client must not gain turns by making events while it waits
    /// (each arriving segment of a paused holder asks to wait).
    queued: HashSet<(usize, u64)>,
    holder: Option<Holder>,
}

impl Overdraft {
    /// A holder of an unfinished frame was paused, or input arrived for
    /// one: it waits its turn, unless it waits already.
    pub(crate) fn wait(&mut self, key: usize, id: u64) {
        if self.queued.insert((key, id)) {
            self.waiting.push_back((key, id));
        }
    }

    /// Entries waiting, stale ones included.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The holder now, if any.
    pub(crate) fn holder(&self) -> Option<Holder> {
        self.holder
    }

    /// Grants the overdraft to the first waiting connection that still
    /// qualifies: `held` says what a (key, id) holds and what its frame
    /// misses, or `None` if it no longer waits (closed, reading again,
    /// frame finished, nothing to read). Entries it passes are dropped:
    /// each is looked at once.
    pub(crate) fn grant(
        &mut self,
        now: Instant,
        mut held: impl FnMut(usize, u64) -> Option<(usize, usize)>,
    ) -> Option<Holder> {
        debug_assert!(self.holder.is_none(), "one holder at a time");
        while let Some((key, id)) = self.waiting.pop_front() {
            self.queued.remove(&(key, id));
            if let Some((held_before, missing_before)) = held(key, id) {
                self.holder = Some(Holder {
                    key,
                    id,
                    since: now,
                    held_before,
                    missing_before,
                    read: false,
                    finished: false,
                });
                return self.holder;
            }
        }
        None
    }

    /// True if (key, id) may read past the budget now: it holds the
    /// overdraft and has not finished its frame.
    pub(crate) fn allows(&self, key: usize, id: u64) -> bool {
        self.holder
            .is_some_and(|h| h.key == key && h.id == id && !h.finished)
    }

    /// After (key, id) did IO: if it holds the overdraft, whether it read
    /// some of its frame, and if its frame misses nothing now, it is done.
    pub(crate) fn note(&mut self, key: usize, id: u64, unfinished: usize) {
        if let Some(h) = self.holder.as_mut() {
            if h.key == key && h.id == id {
                h.read |= unfinished < h.missing_before;
                h.finished |= unfinished == 0;
            }
        }
    }

    /// The holder repaid, lost it, or went away.
    pub(crate) fn end(&mut self) {
        self.holder = None;
    }

    /// The budget released everyone: nobody needs the overdraft.
    pub(crate) fn clear(&mut self) {
        self.holder = None;
        self.waiting.clear();
        self.queued.clear();
    }

    /// When the holder runs out of time, given when bytes last moved for
    /// it: `OVERDRAFT_STALL` after that (or after the grant, if later), at
    /// most `OVERDRAFT_LIMIT` after the grant.
    pub(crate) fn deadline(&self, last_moved: Instant) -> Option<Instant> {
        let h = self.holder?;
        let stall = h.since.max(last_moved) + OVERDRAFT_STALL;
        Some(stall.min(h.since + OVERDRAFT_LIMIT))
    }

    /// The holder's standing at `now`, given when its bytes last moved and
    /// what it holds.
    pub(crate) fn standing(&self, now: Instant, last_moved: Instant, held: usize) -> Standing {
        let Some(h) = self.holder else {
            return Standing::Repaid;
        };
        if h.finished && held <= h.held_before {
            Standing::Repaid
        } else if self.deadline(last_moved).is_some_and(|at| at <= now) {
            Standing::Expired {
                used: h.read || held > h.held_before,
            }
        } else {
            Standing::Running
        }
    }

    /// Drops the entries `keep` rejects (connections gone), keeping the
    /// order: so the queue stays proportional to the connections paused
    /// now. Amortised: the caller compacts only when the queue has grown
    /// to twice the connections.
    pub(crate) fn compact(&mut self, mut keep: impl FnMut(usize, u64) -> bool) {
        let queued = &mut self.queued;
        self.waiting.retain(|&(key, id)| {
            let kept = keep(key, id);
            if !kept {
                queued.remove(&(key, id));
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_paused_is_served_first_and_stale_entries_are_skipped() {
        let now = Instant::now();
        let mut o = Overdraft::default();
        o.wait(1, 10);
        o.wait(2, 20);
        o.wait(3, 30);
        // 1 closed meanwhile: skipped and dropped; 2 gets it.
        let h = o
            .grant(now, |key, _| (key != 1).then_some((5000, 100)))
            .unwrap();
        assert_eq!((h.key, h.id, h.held_before), (2, 20, 5000));
        assert_eq!(o.waiting(), 1);
        o.end();
        assert_eq!(o.grant(now, |_, _| Some((1, 100))).unwrap().key, 3);
        o.end();
        assert_eq!(o.grant(now, |_, _| Some((1, 100))), None, "nobody left");
    }

    #[test]
    fn repaid_once_the_frame_is_done_and_the_reply_taken() {
        let t0 = Instant::now();
        let mut o = Overdraft::default();
        o.wait(1, 10);
        o.grant(t0, |_, _| Some((6000, 1_000_000)));
        assert!(o.allows(1, 10) && !o.allows(1, 11) && !o.allows(2, 10));
        // Reading the rest of its frame: holds more, misses less.
        o.note(1, 10, 10);
        assert!(o.allows(1, 10));
        assert_eq!(o.standing(t0 + S, t0 + S, 500_000), Standing::Running);
        // Frame done, reply not taken yet (in its output).
        o.note(1, 10, 0);
        assert_eq!(o.standing(t0 + S, t0 + S, 600_000), Standing::Running);
        // Reply taken.
        assert_eq!(o.standing(t0 + S, t0 + S, 0), Standing::Repaid);
    }

    #[test]
    fn the_overdraft_is_for_one_frame() {
        let t0 = Instant::now();
        let mut o = Overdraft::default();
        o.wait(1, 10);
        o.grant(t0, |_, _| Some((6000, 1_000_000)));
        o.note(1, 10, 0);
        // A pipelining client's next frame, begun with a small top-up,
        // misses bytes again: it reads only what the budget allows anyone.
        o.note(1, 10, 700_000);
        assert!(!o.allows(1, 10));
        assert_eq!(o.standing(t0 + S, t0 + S, 4096), Standing::Repaid);
    }

    #[test]
    fn a_stalled_holder_expires_after_the_stall_time() {
        let t0 = Instant::now();
        let mut o = Overdraft::default();
        o.wait(1, 10);
        o.grant(t0, |_, _| Some((6000, 1_000_000)));
        // Last moved long before the grant: the stall time counts from it.
        let before = t0 - 60 * S;
        assert_eq!(o.deadline(before), Some(t0 + OVERDRAFT_STALL));
        let late = t0 + OVERDRAFT_STALL;
        assert_eq!(o.standing(late - S, before, 6000), Standing::Running);
        // Read nothing: used none of it, may simply lose it.
        assert_eq!(
            o.standing(late, before, 6000),
            Standing::Expired { used: false }
        );
        // Read part of its frame, then stopped: used it.
        assert_eq!(
            o.standing(late + S, t0 + S, 90_000),
            Standing::Expired { used: true }
        );
    }

    /// A byte of its frame is a use, though its buffer had room for it:
    /// else a client could take the overdraft for the stall time, turn
    /// after turn, one byte each, and lose nothing.
    #[test]
    fn reading_any_of_its_frame_uses_the_overdraft() {
        let t0 = Instant::now();
        let mut o = Overdraft::default();
        o.wait(1, 10);
        o.grant(t0, |_, _| Some((8192, 500_000)));
        o.note(1, 10, 500_000);
        let late = t0 + OVERDRAFT_STALL;
        assert_eq!(
            o.standing(late, t0, 8192),
            Standing::Expired { used: false },
            "no bytes of its frame read"
        );
        o.note(1, 10, 499_999);
        assert_eq!(o.standing(late, t0, 8192), Standing::Expired { used: true });
    }

    #[test]
    fn a_trickling_holder_expires_at_the_limit() {
        let t0 = Instant::now();
        let mut o = Overdraft::default();
        o.wait(1, 10);
        o.grant(t0, |_, _| Some((6000, 1_000_000)));
        // A byte a second: never stalled, but out of time at the limit.
        let end = t0 + OVERDRAFT_LIMIT;
        assert_eq!(o.deadline(end - S), Some(end));
        assert_eq!(o.standing(end - S, end - S, 7000), Standing::Running);
        assert_eq!(
            o.standing(end, end - S, 7000),
            Standing::Expired { used: true }
        );
    }

    /// A connection asking again while it waits keeps its first place and
    /// gets one turn: events it makes do not buy it more.
    #[test]
    fn a_connection_waits_once_in_its_first_place() {
        let now = Instant::now();
        let mut o = Overdraft::default();
        for (key, id) in [(1, 10), (2, 20), (1, 10), (1, 10), (3, 30)] {
            o.wait(key, id);
        }
        assert_eq!(o.waiting(), 3);
        let order: Vec<usize> = std::iter::from_fn(|| {
            let h = o.grant(now, |_, _| Some((0, 100)))?;
            o.end();
            Some(h.key)
        })
        .collect();
        assert_eq!(order, [1, 2, 3]);
        // Once its turn came, it may wait again.
        o.wait(1, 10);
        assert_eq!(o.waiting(), 1);
    }

    #[test]
    fn compaction_keeps_the_order_and_drops_stale_entries() {
        let now = Instant::now();
        let mut o = Overdraft::default();
        for (key, id) in [(1, 10), (2, 20), (3, 30), (2, 21)] {
            o.wait(key, id);
        }
        o.compact(|key, id| (key, id) != (2, 20));
        assert_eq!(o.waiting(), 3);
        let order: Vec<usize> = std::iter::from_fn(|| {
            let h = o.grant(now, |_, _| Some((0, 100)))?;
            o.end();
            Some(h.key)
        })
        .collect();
        assert_eq!(order, [1, 3, 2]);
        o.wait(4, 40);
        o.grant(now, |_, _| Some((0, 100)));
        o.clear();
        assert_eq!((o.holder(), o.waiting()), (None, 0));
    }
}
