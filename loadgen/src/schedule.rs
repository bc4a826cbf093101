//! The open-loop schedule: when each message *should* be sent, independent of the server.
//!
//! With `--rate R` over `N` connections, message `m` of connection `c` is due at
//!
//! ```text
//! intended(c, m) = start + (c + m * N) / R   seconds
//! ```
//!
//! where `start` is the end of the connect phase: every connection is up by then, so the
//! schedule starts at full strength and no message comes due on a connection still
//! connecting. So the total is exactly R per second, each connection sends every N/R
//! seconds, and the connections are staggered by 1/R so sends are spread evenly instead of
//! bursting together.
//! Latency is measured from `intended`, not from when the send actually happened: if the
//! server stalls, messages keep coming due, and when they are finally answered their latency
//! includes the stall. That is what avoids coordinated omission.
//!
//! A thread owns the connections of a [`Lane`], `c = offset, offset + stride, ...` (thread
//! `t` of `T` in an unsharded run: `t, t + T, ...`; with `--shard I/N`: see `shard.rs`). Ids
//! and `N` are the whole run's, so shards in different processes keep one schedule. Its
//! [`Cursor`] walks that thread's share in due order, one message at a time, so finding the
//! next due message is O(1) and needs no heap. Everything here is pure arithmetic on
//! nanoseconds, tested without a clock.

use crate::shard::Lane;

/// The schedule of a whole run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Messages per second in total, R.
    rate: f64,
    /// Connections in the run, N.
    conns: u64,
    /// When message 0 of connection 0 is due, ns since the epoch.
    start: u64,
}

impl Schedule {
    /// `rate` messages per second in total over `connections`.
    pub(crate) fn new(rate: f64, connections: usize) -> Self {
        Schedule {
            rate,
            conns: connections as u64,
            start: 0,
        }
    }

    /// The same schedule, starting at `start_ns` (ns since the epoch).
    pub(crate) fn starting_at(self, start_ns: u64) -> Self {
        Schedule {
            start: start_ns,
            ..self
        }
    }

    /// The first start at or after `t_ns` that keeps the phase of a schedule anchored at
    /// `anchor_ns`: `anchor_ns` moved on by whole rounds (N/R, a message on every
    /// connection), so shards that share the anchor stay interleaved even if one of them
    /// can only start later. `anchor_ns` itself when it is not before `t_ns`.
    pub(crate) fn start_from(&self, anchor_ns: u64, t_ns: u64) -> u64 {
        if anchor_ns >= t_ns {
            return anchor_ns;
        }
        let round = self.conns as f64 * 1e9 / self.rate;
        let rounds = ((t_ns - anchor_ns) as f64 / round).ceil();
        let start = anchor_ns.saturating_add((rounds * round).round() as u64);
        // Rounding may land a ns short; one more round then.
        if start < t_ns {
            start.saturating_add(round.round() as u64)
        } else {
            start
        }
    }

    /// When message `m` of connection `conn` is due, in ns since the epoch.
    pub(crate) fn intended_ns(&self, conn: u64, m: u64) -> u64 {
        // Saturating, like the float-to-int cast: a due time past u64 ns is "never".
        let index = m.saturating_mul(self.conns).saturating_add(conn);
        let after = (index as f64 * 1e9 / self.rate).round() as u64;
        self.start.saturating_add(after)
    }

    /// The first message of connection `conn` due at or after `t_ns`: where a connection
    /// that comes up at `t_ns` joins the schedule.
    pub(crate) fn first_due_from(&self, conn: u64, t_ns: u64) -> u64 {
        // Invert intended_ns, then step over its rounding (a step or two at most).
        let t = t_ns.saturating_sub(self.start);
        let exact = (t as f64 * self.rate / 1e9 - conn as f64) / self.conns as f64;
        let mut m = (exact.floor().max(0.0) as u64).saturating_sub(1);
        while m > 0 && self.intended_ns(conn, m - 1) >= t_ns {
            m -= 1;
        }
        // intended_ns saturates at u64::MAX >= t_ns, so this ends.
        while self.intended_ns(conn, m) < t_ns {
            m += 1;
        }
        m
    }

    /// How many of connection `conn`'s messages `m_from..m_to` are due in `[lo, hi)` ns.
    pub(crate) fn count_due(&self, conn: u64, m_from: u64, m_to: u64, lo: u64, hi: u64) -> u64 {
        let first = m_from.max(self.first_due_from(conn, lo));
        let end = m_to.min(self.first_due_from(conn, hi));
        end.saturating_sub(first)
    }

    /// Per-connection messages per second: what its in-flight window must absorb.
    pub(crate) fn per_connection_rate(&self) -> f64 {
        self.rate / self.conns as f64
    }

    /// The cursor over the connections of `lane`.
    pub(crate) fn cursor(&self, lane: Lane) -> Cursor {
        Cursor {
            schedule: *self,
            offset: lane.offset as u64,
            stride: lane.stride as u64,
            local: lane.len(self.conns as usize) as u64,
            j: 0,
        }
    }
}

/// Walks one thread's messages in due order. Message `j` of the thread belongs to local
/// connection `j % local` (global `offset + (j % local) * stride`) as its message
/// `j / local`; due times increase with `j` because local connections are ordered by id.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    schedule: Schedule,
    offset: u64,
    stride: u64,
    /// Connections this thread owns.
    local: u64,
    /// The thread's next message.
    j: u64,
}

/// One scheduled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// Index of the connection within its thread.
    pub(crate) local: usize,
    /// Message index on that connection.
    pub(crate) m: u64,
    /// When it is due, ns after the run's start.
    pub(crate) at_ns: u64,
}

impl Cursor {
    /// The next message of this thread, without consuming it.
    pub(crate) fn peek(&self) -> Due {
        let local = self.j % self.local.max(1);
        let m = self.j / self.local.max(1);
        let conn = self.offset + local * self.stride;
        Due {
            local: local as usize,
            m,
            at_ns: self.schedule.intended_ns(conn, m),
        }
    }

    /// Consumes the next message.
    pub(crate) fn advance(&mut self) {
        self.j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R messages per second in total: in any one second of schedule there are exactly R.
    #[test]
    fn total_rate_is_exact() {
        let s = Schedule::new(2000.0, 7);
        let mut c = s.cursor(Lane::ALL);
        let mut count = 0;
        while c.peek().at_ns < 1_000_000_000 {
            c.advance();
            count += 1;
        }
        assert_eq!(count, 2000);
    }

    /// Connections are staggered by 1/R, each sends every N/R.
    #[test]
    fn connections_are_staggered() {
        let s = Schedule::new(1000.0, 4);
        assert_eq!(s.intended_ns(0, 0), 0);
        assert_eq!(s.intended_ns(1, 0), 1_000_000);
        assert_eq!(s.intended_ns(3, 0), 3_000_000);
        assert_eq!(s.intended_ns(0, 1), 4_000_000);
        assert_eq!(s.intended_ns(2, 5), 22_000_000);
        assert!((s.per_connection_rate() - 250.0).abs() < 1e-9);
    }

    /// Split over threads, the union of the cursors is the whole schedule: every
    /// (connection, message) exactly once, each thread in non-decreasing time order,
    /// also when the connections do not divide evenly.
    #[test]
    fn threads_partition_the_schedule() {
        let s = Schedule::new(10_000.0, 5);
        let mut seen = Vec::new();
        for t in 0..3 {
            let mut c = s.cursor(crate::shard::Shard::default().lane(t, 3));
            let mut last = 0;
            for _ in 0..40 {
                let d = c.peek();
                assert!(d.at_ns >= last, "thread {t} went back in time");
                last = d.at_ns;
                let conn = t as u64 + d.local as u64 * 3;
                assert_eq!(d.at_ns, s.intended_ns(conn, d.m));
                seen.push((conn, d.m));
                c.advance();
            }
        }
        // 5 connections over 3 threads: 2, 2, 1 connections; 40 messages each thread.
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 120);
        assert!(seen.iter().all(|&(conn, _)| conn < 5));
        assert!(seen.contains(&(2, 39)) && seen.contains(&(4, 19)) && seen.contains(&(0, 19)));
    }

    /// A connection up at time t joins at the first message due at or after t; counting
    /// messages due in a time span agrees with intended_ns, rounding included.
    #[test]
    fn joining_and_counting() {
        let s = Schedule::new(3.0, 7);
        for conn in [0u64, 3, 6] {
            for t in [0u64, 1, 333_333_333, 2_333_333_333, 9_999_999_999] {
                let m = s.first_due_from(conn, t);
                assert!(s.intended_ns(conn, m) >= t, "{conn} {t}");
                assert!(m == 0 || s.intended_ns(conn, m - 1) < t, "{conn} {t}");
            }
            let brute = (0..1000)
                .filter(|&m| (1_000_000_000..5_000_000_000).contains(&s.intended_ns(conn, m)))
                .count() as u64;
            let counted = s.count_due(conn, 0, 1000, 1_000_000_000, 5_000_000_000);
            assert_eq!(counted, brute, "conn {conn}");
            assert_eq!(s.count_due(conn, 1, 2, 0, u64::MAX), 1);
        }
        // The far end of time ends the search too (intended_ns saturates).
        assert!(s.first_due_from(0, u64::MAX) > 1 << 32);
        // Started later: the same schedule, shifted.
        let later = s.starting_at(1_000_000_000);
        assert_eq!(later.intended_ns(3, 2), 1_000_000_000 + s.intended_ns(3, 2));
        assert_eq!(later.first_due_from(3, 0), 0);
        assert_eq!(
            later.first_due_from(3, 2_000_000_000),
            s.first_due_from(3, 1_000_000_000)
        );
    }

    /// Shards share one schedule: over 3 shards of 2 threads each, the cursors together
    /// send every message of the run exactly once, at the run's rate, each at the time the
    /// unsharded schedule gives it. Each shard sends its share (a third) of R.
    #[test]
    fn shards_share_the_schedule() {
        use crate::shard::Shard;
        let (rate, conns) = (6000.0, 10);
        let s = Schedule::new(rate, conns);
        let second = 1_000_000_000;
        let mut all = Vec::new();
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            let mut share = 0;
            for t in 0..2 {
                let mut c = s.cursor(shard.lane(t, 2));
                while c.peek().at_ns < second {
                    let d = c.peek();
                    let conn = (shard.lane(t, 2).global_id(d.local)) as u64;
                    assert_eq!(conn % 3, index as u64, "shard {shard} sent for {conn}");
                    assert_eq!(d.at_ns, s.intended_ns(conn, d.m));
                    all.push((d.at_ns, conn, d.m));
                    share += 1;
                    c.advance();
                }
            }
            // Connections 0..10 over 3 shards: 4, 3, 3 of them, 600 messages/s each.
            assert_eq!(share, shard.owned(conns) * 600, "shard {shard}");
        }
        all.sort_unstable();
        let before = all.len();
        all.dedup_by_key(|x| (x.1, x.2));
        assert_eq!((before, all.len()), (6000, 6000));
        // In due order, consecutive messages of the run are 1/R apart, whoever sends them.
        assert!(all.windows(2).all(|w| w[1].0 - w[0].0 <= 166_667));
    }

    /// A late start keeps the anchor's phase: whole rounds (N/R) later, never before `t`.
    #[test]
    fn start_from_keeps_the_phase() {
        let s = Schedule::new(3000.0, 7); // a round is 7/3000 s = 2_333_333.3 ns
        assert_eq!(s.start_from(5_000, 1_000), 5_000);
        assert_eq!(s.start_from(5_000, 5_000), 5_000);
        let start = s.start_from(1_000, 10_000_000);
        assert!(
            start >= 10_000_000 && start - 10_000_000 <= 2_333_334,
            "{start}"
        );
        let rounds = (start - 1_000) as f64 / (7.0 * 1e9 / 3000.0);
        assert!((rounds - rounds.round()).abs() < 1e-6, "{rounds}");
        for t in [1_001u64, 2_334_333, 2_334_334, 999_999_999] {
            assert!(s.start_from(1_000, t) >= t, "{t}");
        }
    }

    /// Fractional rates keep their average over long spans (no drift from rounding).
    #[test]
    fn fractional_rate_does_not_drift() {
        let s = Schedule::new(3.0, 1);
        assert_eq!(s.intended_ns(0, 3), 1_000_000_000);
        assert_eq!(s.intended_ns(0, 3_000_000), 1_000_000_000_000_000);
    }
}
