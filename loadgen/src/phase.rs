//! The connect phase, shared by the worker threads.
//!
//! A run is a **connect phase** (every connection is attempted; it ends when each one has
//! opened or failed, in whichever thread), then **warm-up**, then the **measured window**,
//! then a **drain** for echoes still owed. The connect phase has no fixed length (19,000
//! connections take a second or so, a slow `--connect-rate` much longer), so the workers
//! learn when warm-up starts from [`Phase`]: the thread that resolves the last connection
//! stamps the time and wakes the others, which may be asleep in `poll`.
//!
//! [`Phase`] also tells the threads to give up when no connection opens at all: after
//! [`GIVE_UP_AFTER`] failed attempts and not one success, the target refuses (or does not
//! exist), and trying the rest of a million connections would only delay saying so.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use mio::Waker;

/// Failed connects, none opened, after which a run gives up on the rest.
pub const GIVE_UP_AFTER: usize = 1024;

/// What the threads share about the connect phase. Counters only grow; `end_ns` is set
/// once.
pub(crate) struct Phase {
    /// Connections asked for.
    asked: usize,
    /// Connections whose first connect has succeeded or failed.
    resolved: AtomicUsize,
    /// ...of them, succeeded.
    opened: AtomicUsize,
    /// When the last one resolved, ns since the epoch; `u64::MAX` until then.
    end_ns: AtomicU64,
    /// Set when nothing opened and [`GIVE_UP_AFTER`] attempts failed.
    gave_up: AtomicBool,
    /// One per worker, to wake it when the phase ends or the run gives up.
    wakers: Vec<Waker>,
}

impl Phase {
    /// A phase for `asked` connections over the workers woken by `wakers`.
    pub(crate) fn new(asked: usize, wakers: Vec<Waker>) -> Self {
        Phase {
            asked,
            resolved: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
            end_ns: AtomicU64::new(u64::MAX),
            gave_up: AtomicBool::new(false),
            wakers,
        }
    }

    /// A connection's first connect ended at `now` (ns), `ok` or not. The call that
    /// resolves the last connection ends the phase and wakes every worker.
    pub(crate) fn resolve(&self, ok: bool, now: u64) {
        if ok {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        let resolved = self.resolved.fetch_add(1, Ordering::AcqRel) + 1;
        if resolved == self.asked {
            self.end_ns.store(now, Ordering::Release);
            self.wake_all();
        } else if !ok
            && resolved >= GIVE_UP_AFTER
            && self.opened.load(Ordering::Relaxed) == 0
            && !self.gave_up.swap(true, Ordering::AcqRel)
        {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        for w in &self.wakers {
            // A worker that already returned has dropped its Poll; nothing to wake.
            let _ = w.wake();
        }
    }

    /// When the connect phase ended, ns since the epoch, once it has.
    pub(crate) fn end(&self) -> Option<u64> {
        match self.end_ns.load(Ordering::Acquire) {
            u64::MAX => None,
            t => Some(t),
        }
    }

    /// Connections asked for.
    pub(crate) fn asked(&self) -> usize {
        self.asked
    }

    /// Connections whose first connect succeeded, so far.
    pub(crate) fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// Whether the run gave up: nothing opened after [`GIVE_UP_AFTER`] failures.
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last resolution ends the phase at its time; the phase is unknown before.
    #[test]
    fn last_resolution_ends_the_phase() {
        let p = Phase::new(3, Vec::new());
        p.resolve(true, 10);
        p.resolve(false, 20);
        assert_eq!(p.end(), None);
        p.resolve(true, 30);
        assert_eq!(p.end(), Some(30));
        assert!(!p.gave_up());
    }

    /// Nothing opened after GIVE_UP_AFTER failures: give up; one success prevents it.
    #[test]
    fn gives_up_only_when_nothing_opened() {
        let p = Phase::new(100_000, Vec::new());
        for t in 0..GIVE_UP_AFTER as u64 - 1 {
            p.resolve(false, t);
        }
        assert!(!p.gave_up());
        p.resolve(false, 5000);
        assert!(p.gave_up());
        let q = Phase::new(100_000, Vec::new());
        q.resolve(true, 0);
        for t in 0..2 * GIVE_UP_AFTER as u64 {
            q.resolve(false, t);
        }
        assert!(!q.gave_up());
    }
}
