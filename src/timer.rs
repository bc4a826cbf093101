//! Idle deadlines: a min-heap with lazy deletion.
//!
//! Entries are `(deadline, key, id)`: a live connection has one for its idle
//! deadline, and one more once it sent FIN (the linger deadline). Activity on a
//! connection does **not** touch the heap (that would be a log-n update per
//! message); it only moves the connection's `last_active`. When an entry comes
//! due, the reactor looks the connection up: if it is gone (or the slab key was
//! reused, caught by `id`) the entry is stale and dropped; if it was active
//! since, it is pushed back with its new deadline; otherwise it is idle and
//! closed. So the heap costs O(log n) per idle period, not per message, and the
//! poll timeout is simply "time until the earliest entry".
//!
//! A closed connection's entry stays until it comes due (up to the idle
//! timeout later), so under heavy churn stale entries could pile up far past
//! the number of open connections; the reactor calls [`Timers::retain`] to
//! drop them when they outnumber the live ones, which keeps the heap
//! proportional to open connections at amortised O(1) per close.
//!
//! Pure data with no clock of its own: tests pass instants in.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::stamp::Stamp;

/// A due entry: which slab key, and which connection id it was meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Due {
    pub(crate) key: usize,
    pub(crate) id: u64,
}

/// Pending deadlines, earliest first. Each is kept as a [`Stamp`] (8 bytes
/// where an `Instant` takes 16: a live connection has an entry, so this is
/// part of what an idle connection costs), rounded up to the millisecond,
/// so an entry that comes due is really due.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Stamp, Due)>>,
}

impl Timers {
    /// Room for `n` entries without growing (one per connection; see
    /// `Slab::with_capacity` in the reactor).
    pub(crate) fn with_capacity(n: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    /// Adds a deadline for connection `id` in slab slot `key`.
    pub(crate) fn schedule(&mut self, at: Instant, key: usize, id: u64) {
        self.heap.push(Reverse((Stamp::new(at), Due { key, id })));
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| at.instant())
    }

    /// Removes and returns one entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if at.instant() <= now => {
                self.heap.pop().map(|Reverse((_, d))| d)
            }
            _ => None,
        }
    }

    /// Keeps only the entries for which `live` returns true (drops stale ones).
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&Due) -> bool) {
        self.heap.retain(|Reverse((_, due))| live(due));
    }

    /// Number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// How long `poll` may sleep: until the earliest of `deadlines`, or forever
/// when there is none. Rounds up to whole milliseconds (epoll's resolution),
/// so the loop does not wake a hair early and spin once with nothing due.
pub(crate) fn poll_timeout(now: Instant, deadlines: &[Option<Instant>]) -> Option<Duration> {
    let next = deadlines.iter().flatten().min()?;
    let wait = next.saturating_duration_since(now);
    let ms = wait.as_nanos().div_ceil(1_000_000);
    Some(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_only_due_entries_earliest_first() {
        // On a whole millisecond, so the deadlines read back exactly.
        let t0 = Stamp::new(Instant::now()).instant();
        let mut t = Timers::default();
        t.schedule(t0 + Duration::from_secs(3), 3, 30);
        t.schedule(t0 + Duration::from_secs(1), 1, 10);
        t.schedule(t0 + Duration::from_secs(2), 2, 20);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(2500);
        assert_eq!(t.pop_due(now), Some(Due { key: 1, id: 10 }));
        assert_eq!(t.pop_due(now), Some(Due { key: 2, id: 20 }));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }

    /// A deadline between two milliseconds is kept rounded up: its entry
    /// does not come due before it (at most a millisecond after).
    #[test]
    fn an_entry_never_comes_due_early() {
        let t0 = Stamp::new(Instant::now()).instant();
        let at = t0 + Duration::from_micros(1300);
        let mut t = Timers::default();
        t.schedule(at, 7, 70);
        assert!(t.next_deadline().unwrap() >= at);
        assert_eq!(t.pop_due(at - Duration::from_nanos(1)), None);
        assert_eq!(t.pop_due(at), None, "rounded up: 0.7 ms late at most");
        assert_eq!(
            t.pop_due(t0 + Duration::from_millis(2)),
            Some(Due { key: 7, id: 70 })
        );
    }

    #[test]
    fn retain_drops_stale_entries_and_keeps_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for key in 0..10u64 {
            t.schedule(t0 + Duration::from_secs(10 - key), key as usize, key);
        }
        // Odd ids are connections that closed.
        t.retain(|due| due.id % 2 == 0);
        assert_eq!(t.len(), 5);
        let later = t0 + Duration::from_secs(60);
        let keys: Vec<usize> = std::iter::from_fn(|| t.pop_due(later))
            .map(|d| d.key)
            .collect();
        assert_eq!(keys, [8, 6, 4, 2, 0]);
    }

    #[test]
    fn poll_timeout_is_time_to_the_earliest_deadline_rounded_up() {
        let t0 = Instant::now();
        assert_eq!(poll_timeout(t0, &[None, None]), None);
        let d = [
            Some(t0 + Duration::from_micros(1500)),
            None,
            Some(t0 + Duration::from_secs(9)),
        ];
        assert_eq!(poll_timeout(t0, &d), Some(Duration::from_millis(2)));
        // A deadline in the past means "do not sleep".
        assert_eq!(
            poll_timeout(t0 + Duration::from_secs(1), &d),
            Some(Duration::ZERO)
        );
    }
}
