//! The run's timeline, shared by the worker threads.
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
use std::time::Duration;

use mio::Waker;

use crate::clock::ns;

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

/// One thread's view of the timeline, ns since the epoch. Until the connect phase ends,
/// every boundary is `u64::MAX`: nothing is recorded and nothing is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// Warm-up ends and measuring begins.
    pub(crate) measure_start: u64,
    /// Measuring ends; closed loop sends nothing new after it, open loop nothing due after.
    pub(crate) measure_end: u64,
    /// Echoes still owed after this are given up on.
    pub(crate) drain_deadline: u64,
}

impl Timeline {
    /// Not known yet: the connect phase is running.
    pub(crate) const CONNECTING: Timeline = Timeline {
        measure_start: u64::MAX,
        measure_end: u64::MAX,
        drain_deadline: u64::MAX,
    };

    /// The timeline of a connect phase that ended at `connect_end`, saturating (library
    /// callers may pass `Duration::MAX` to mean "never").
    pub(crate) fn after(
        connect_end: u64,
        warmup: Duration,
        duration: Duration,
        grace: Duration,
    ) -> Self {
        let measure_start = connect_end.saturating_add(ns(warmup));
        let measure_end = measure_start.saturating_add(ns(duration));
        Timeline {
            measure_start,
            measure_end,
            drain_deadline: measure_end.saturating_add(ns(grace)),
        }
    }

    /// The timeline of a run measured from `measure_start` (`--start-at`), whatever the
    /// connect phase took.
    pub(crate) fn at(measure_start: u64, duration: Duration, grace: Duration) -> Self {
        let measure_end = measure_start.saturating_add(ns(duration));
        Timeline {
            measure_start,
            measure_end,
            drain_deadline: measure_end.saturating_add(ns(grace)),
        }
    }

    /// Whether the connect phase is over (the boundaries are known).
    pub(crate) fn known(&self) -> bool {
        self.measure_start != u64::MAX
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

    /// Warm-up, duration and drain follow the connect phase, saturating.
    #[test]
    fn timeline_after_the_phase() {
        let s = Duration::from_secs(1);
        let t = Timeline::after(500, s, 2 * s, 3 * s);
        assert_eq!(t.measure_start, 1_000_000_500);
        assert_eq!(t.measure_end, 3_000_000_500);
        assert_eq!(t.drain_deadline, 6_000_000_500);
        assert!(t.known() && !Timeline::CONNECTING.known());
        // --start-at: the window is fixed, whenever the connect phase ended.
        let fixed = Timeline::at(7_000, 2 * s, 3 * s);
        assert_eq!(fixed.measure_end, 2_000_007_000);
        assert_eq!(fixed.drain_deadline, 5_000_007_000);
        let never = Timeline::after(500, s, s, Duration::MAX);
        assert_eq!(never.drain_deadline, u64::MAX);
    }
}
