//! One thread's timeline (connect phase, warm-up, measured window, drain) and the two
//! decisions the clock makes with it: whether the run is over ([`Timeline::finished`]) and
//! how long the loop may sleep ([`Timeline::poll_timeout`]). Both take `now` as a
//! parameter, so they are unit-tested without a clock or a sleep.

use std::time::Duration;

use crate::clock::ns;

/// Longest single sleep in `poll`: with nothing scheduled (waiting for the other threads'
/// connect phase) the loop still wakes hourly; the phase's waker ends the wait sooner.
const MAX_SLEEP_NS: u64 = 3_600_000_000_000;

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

    /// The timeline of a run measured from `measure_start` ([`measure_start`]) for
    /// `duration`, then drained for `grace`; saturating (library callers may pass
    /// `Duration::MAX` to mean "never").
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

/// When measuring starts, for a connect phase that ended at `connect_end`: at `start_at`
/// (`--start-at`, fixed whatever the connect phase took), else `warmup` after the phase.
/// The one rule: the workers' timelines, the collector's interval log and the report all
/// take the window's start from here.
pub(crate) fn measure_start(connect_end: u64, start_at: Option<u64>, warmup: Duration) -> u64 {
    start_at.unwrap_or(connect_end.saturating_add(ns(warmup)))
}

/// What a worker holds that decides whether its run is over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Connections open or opening.
    pub(crate) live: usize,
    /// The ramp has nothing more to open (first connects or reconnects).
    pub(crate) ramp_done: bool,
    /// Messages sent and not yet answered.
    pub(crate) owed: usize,
}

/// The times a worker must wake for besides the timeline's own, ns since the epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wake {
    /// More is due right now (a full connect batch, deadlines left over): don't sleep.
    pub(crate) busy: bool,
    /// The current interval histogram is due to the collector.
    pub(crate) interval_end: u64,
    /// The earliest connection deadline (connect or UDP loss timeout).
    pub(crate) deadline: Option<u64>,
    /// The next connect the ramp allows.
    pub(crate) connect: Option<u64>,
    /// The next open-loop send (with the timerfd armed, a fallback).
    pub(crate) send: Option<u64>,
}

impl Timeline {
    /// The run is over at `now`: the drain deadline passed; or, before the measured time
    /// ends, every connection is gone for good; or, after it, nothing is owed any more.
    pub(crate) fn finished(&self, now: u64, load: Load) -> bool {
        if now >= self.drain_deadline {
            return true;
        }
        if now < self.measure_end {
            return load.live == 0 && load.ramp_done;
        }
        load.owed == 0
    }

    /// How long to wait in `poll` at `now`: not at all if work is due, else until the
    /// next thing this thread must do by the clock. Connects and sends stop with the
    /// measured time (the drain only collects echoes), so they count only before it.
    pub(crate) fn poll_timeout(&self, now: u64, wake: Wake) -> Duration {
        if wake.busy {
            return Duration::ZERO;
        }
        let mut next = self.drain_deadline.min(wake.interval_end);
        next = next.min(wake.deadline.unwrap_or(u64::MAX));
        if now < self.measure_end {
            next = next.min(self.measure_end);
            next = next.min(wake.connect.unwrap_or(u64::MAX));
            next = next.min(wake.send.unwrap_or(u64::MAX));
        }
        Duration::from_nanos(next.saturating_sub(now).min(MAX_SLEEP_NS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Warm-up, duration and drain follow the connect phase, saturating.
    #[test]
    fn timeline_after_the_phase() {
        let s = Duration::from_secs(1);
        let t = Timeline::at(measure_start(500, None, s), 2 * s, 3 * s);
        assert_eq!(t.measure_start, 1_000_000_500);
        assert_eq!(t.measure_end, 3_000_000_500);
        assert_eq!(t.drain_deadline, 6_000_000_500);
        assert!(t.known() && !Timeline::CONNECTING.known());
        // --start-at: the window is fixed, whenever the connect phase ended.
        assert_eq!(measure_start(500, Some(7_000), s), 7_000);
        let fixed = Timeline::at(7_000, 2 * s, 3 * s);
        assert_eq!(fixed.measure_end, 2_000_007_000);
        assert_eq!(fixed.drain_deadline, 5_000_007_000);
        let never = Timeline::at(measure_start(500, None, s), s, Duration::MAX);
        assert_eq!(never.drain_deadline, u64::MAX);
    }

    const S: u64 = 1_000_000_000;

    /// A run measured over [1 s, 3 s) with drain until 6 s.
    fn timeline() -> Timeline {
        let s = Duration::from_secs(1);
        Timeline::at(measure_start(0, None, s), 2 * s, 3 * s)
    }

    fn load(live: usize, ramp_done: bool, owed: usize) -> Load {
        Load {
            live,
            ramp_done,
            owed,
        }
    }

    /// Before the end of the measured time a run ends only when every connection is gone
    /// for good; after it, when nothing is owed; at the drain deadline, whatever is owed.
    #[test]
    fn when_the_run_is_over() {
        let t = timeline();
        assert!(!t.finished(2 * S, load(5, true, 9)), "measuring");
        assert!(
            !t.finished(2 * S, load(0, false, 0)),
            "a reconnect is coming"
        );
        assert!(t.finished(2 * S, load(0, true, 0)), "every connection gone");
        assert!(
            !t.finished(4 * S, load(5, true, 1)),
            "draining: one echo owed"
        );
        assert!(t.finished(4 * S, load(5, true, 0)), "drained");
        assert!(
            t.finished(6 * S, load(5, true, 1)),
            "drain deadline: given up"
        );
        assert!(!Timeline::CONNECTING.finished(100 * S, load(5, false, 0)));
    }

    fn wake() -> Wake {
        Wake {
            busy: false,
            interval_end: u64::MAX,
            deadline: None,
            connect: None,
            send: None,
        }
    }

    /// The loop sleeps until the earliest thing the clock owes it, not at all when busy,
    /// and never past an hour; connects and sends stop counting after the measured time.
    #[test]
    fn how_long_to_sleep() {
        let t = timeline();
        let ms = |n: u64| Duration::from_millis(n);
        let now = 2 * S;
        assert_eq!(
            t.poll_timeout(now, wake()),
            ms(1000),
            "the end of measuring"
        );
        let busy = Wake {
            busy: true,
            ..wake()
        };
        assert_eq!(t.poll_timeout(now, busy), Duration::ZERO);
        let send = Wake {
            send: Some(now + 5_000),
            deadline: Some(now + 7_000),
            ..wake()
        };
        assert_eq!(t.poll_timeout(now, send), Duration::from_nanos(5_000));
        let connect = Wake {
            connect: Some(now + 3_000_000),
            interval_end: now + 4_000_000,
            ..wake()
        };
        assert_eq!(t.poll_timeout(now, connect), ms(3));
        // Draining: only deadlines, the interval and the drain deadline count.
        let late = 4 * S;
        let draining = Wake {
            send: Some(late + 1),
            connect: Some(late + 1),
            ..wake()
        };
        assert_eq!(t.poll_timeout(late, draining), ms(2000));
        // Waiting for the other threads' connect phase: a long, finite sleep.
        let waiting = Timeline::CONNECTING.poll_timeout(0, wake());
        assert_eq!(waiting, Duration::from_secs(3600));
        // Past due: zero, not an underflow.
        let overdue = Wake {
            deadline: Some(now - 1),
            ..wake()
        };
        assert_eq!(t.poll_timeout(now, overdue), Duration::ZERO);
    }
}
