//! Per-connection deadlines of one worker: a TCP connect that must finish in time, a UDP
//! datagram that counts as lost if unanswered. A min-heap of `(when, connection)`, so the
//! loop finds the next deadline in O(1) and pays O(log n) per deadline that fires, never a
//! scan over every connection (19,000 idle connections cost nothing per turn).
//!
//! Entries are deleted lazily: each connection has at most one *armed* deadline, remembered
//! beside the heap, and a popped entry that is not the armed one is stale and skipped. A
//! deadline that moves later (the UDP window advanced) keeps its old, earlier entry: when
//! that fires the connection finds nothing due and re-arms. So a fired deadline may be
//! spurious, and whoever handles it re-checks the time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The deadlines of up to `n` connections, indexed `0..n`.
#[derive(Debug)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The armed deadline of each connection; `u64::MAX` for none. Invariant: every armed
    /// deadline has an entry in the heap.
    armed: Vec<u64>,
}

impl Deadlines {
    /// No deadlines, for connections `0..n`.
    pub(crate) fn new(n: usize) -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            armed: vec![u64::MAX; n],
        }
    }

    /// Connection `i` needs attention by `at`. Only an earlier deadline than the armed one
    /// costs a heap entry; a later one waits for the armed one to fire.
    pub(crate) fn arm(&mut self, i: usize, at: u64) {
        if at < self.armed[i] {
            self.armed[i] = at;
            self.heap.push(Reverse((at, i)));
        }
    }

    /// Connection `i` is gone (or reopened): whatever it had armed is stale.
    pub(crate) fn disarm(&mut self, i: usize) {
        self.armed[i] = u64::MAX;
    }

    /// The next connection whose deadline is at or before `now`, disarmed.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<usize> {
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.armed[i] == at {
                self.armed[i] = u64::MAX;
                return Some(i);
            }
        }
        None
    }

    /// The earliest entry, possibly stale (then the wake-up finds nothing due).
    pub(crate) fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Entries held, stale ones included (tests check that stale entries go).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deadlines fire in time order, each once, only when due.
    #[test]
    fn fire_in_order_when_due() {
        let mut d = Deadlines::new(3);
        d.arm(0, 30);
        d.arm(1, 10);
        d.arm(2, 20);
        assert_eq!(d.next(), Some(10));
        assert_eq!(d.pop_due(5), None);
        assert_eq!(d.pop_due(25), Some(1));
        assert_eq!(d.pop_due(25), Some(2));
        assert_eq!(d.pop_due(25), None);
        assert_eq!(d.pop_due(30), Some(0));
        assert!(d.is_empty());
    }

    /// An earlier deadline replaces the armed one; a later one does not add an entry; a
    /// disarmed connection's entry is skipped.
    #[test]
    fn lazy_deletion() {
        let mut d = Deadlines::new(2);
        d.arm(0, 50);
        d.arm(0, 20);
        d.arm(0, 90);
        assert_eq!(d.len(), 2);
        assert_eq!(d.pop_due(100), Some(0));
        assert_eq!(d.pop_due(100), None, "the 50 entry is stale");
        d.arm(1, 10);
        d.disarm(1);
        assert_eq!(d.pop_due(100), None);
        assert!(d.is_empty());
        // Reopened after a disarm: armed again from scratch.
        d.arm(1, 200);
        assert_eq!(d.pop_due(200), Some(1));
    }
}
