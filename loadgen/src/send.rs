//! The send policy common to the TCP and UDP clients ([`SendState`]): closed loop, keep
//! `--pipeline` in flight; open loop, send what the schedule made due, from the moment the
//! connection is up; with `--reconnect-after`, only so many. Its verification window is
//! sized here too ([`window_capacity`]), for the run's memory budget (`budget.rs`).

use crate::config::RunConfig;
use crate::ctx::Ctx;
use crate::schedule::Schedule;
use crate::verify::Window;

/// A send more than this late on its schedule counts as a late send.
pub(crate) const LATE_SEND_NS: u64 = 1_000_000;

/// Send policy and verification window of one connection.
#[derive(Debug)]
pub(crate) struct SendState {
    /// Connection id carried in every payload.
    pub(crate) id: u32,
    /// Messages in flight.
    pub(crate) window: Window,
    /// Open loop: schedule indices below this are due (advanced by the thread's cursor).
    pub(crate) due: u64,
    /// Open loop: schedule index of seq 0, the first message due once the connection was
    /// up. Earlier ones are counted as not sent, never sent as a burst.
    pub(crate) m0: u64,
    /// Open loop: where the previous connection in this slot stopped (0 for the first):
    /// messages from here to `m0` came due while no connection was up.
    resume: u64,
    /// `--reconnect-after`: messages this connection sends before it closes.
    limit: Option<u64>,
    /// Open loop: queued on the thread's list of connections to pump this wakeup.
    pub(crate) dirty: bool,
}

impl SendState {
    /// Fresh state for connection `id`, window sized for the run.
    pub(crate) fn new(id: u32, resume: u64, ctx: &Ctx) -> Self {
        SendState {
            id,
            window: Window::new(window_capacity(&ctx.cfg, ctx.schedule)),
            due: 0,
            m0: resume,
            resume,
            limit: ctx.cfg.reconnect_after,
            dirty: false,
        }
    }

    /// The connection is up now. Open loop, after the connect phase (a reconnect): it
    /// joins the schedule at the first message due from now on; what came due since
    /// `resume` is counted as not sent. (The schedule starts when the connect phase ends,
    /// so a first connect has missed nothing.)
    pub(crate) fn on_connect(&mut self, ctx: &mut Ctx) {
        let (Some(s), true) = (ctx.schedule, ctx.started()) else {
            return;
        };
        self.m0 = self
            .resume
            .max(s.first_due_from(u64::from(self.id), ctx.now));
        not_sent(self.id, self.resume, self.m0, ctx);
        self.resume = self.m0;
    }

    /// Open loop: the schedule index of the next message this connection would send,
    /// where a new connection in its slot resumes.
    pub(crate) fn next_m(&self) -> u64 {
        self.m0 + self.window.next_seq()
    }

    /// `--reconnect-after`: every allowed message was sent and answered.
    pub(crate) fn session_over(&self) -> bool {
        self.limit
            .is_some_and(|l| self.window.next_seq() >= l && self.window.in_flight() == 0)
    }

    /// How many messages may be sent now: none during the connect phase (connections
    /// open first, then traffic starts for all of them at once).
    pub(crate) fn sendable(&self, ctx: &Ctx) -> usize {
        if !self.window.has_room() || !ctx.started() {
            return 0;
        }
        let want = match ctx.schedule {
            None if ctx.now >= ctx.timeline.measure_end => 0,
            None => ctx.cfg.pipeline.saturating_sub(self.window.in_flight()),
            Some(_) => self.due.saturating_sub(self.next_m()) as usize,
        };
        let left = self.limit.map_or(usize::MAX, |l| {
            l.saturating_sub(self.window.next_seq()) as usize
        });
        want.min(left)
            .min(self.window.capacity() - self.window.span())
    }

    /// Records one message as sent now; returns its seq. Open loop: its latency counts
    /// from its scheduled time, and a send later than [`LATE_SEND_NS`] is counted.
    pub(crate) fn push(&mut self, ctx: &mut Ctx) -> u64 {
        let t_ref = match &ctx.schedule {
            None => ctx.now,
            Some(s) => {
                let due = s.intended_ns(u64::from(self.id), self.next_m());
                if ctx.measured(due) {
                    let lag = ctx.now.saturating_sub(due);
                    ctx.stats.late_sends += u64::from(lag > LATE_SEND_NS);
                    ctx.stats.max_lag_ns = ctx.stats.max_lag_ns.max(lag);
                }
                due
            }
        };
        ctx.stats.sent += 1;
        self.window.push(t_ref, ctx.now)
    }
}

/// Open loop: messages `from..upto` of connection `id` came due while it was not up, so
/// they were not sent: counted, and how many of them were due in the measured window.
pub(crate) fn not_sent(id: u32, from: u64, upto: u64, ctx: &mut Ctx) {
    if let (Some(s), true) = (ctx.schedule, upto > from) {
        let (lo, hi) = (ctx.timeline.measure_start, ctx.timeline.measure_end);
        ctx.stats.not_sent += upto - from;
        ctx.stats.not_sent_measured += s.count_due(u64::from(id), from, upto, lo, hi);
    }
}

/// Window size: closed loop a few times the pipeline (UDP loss holds the front open for
/// a timeout while the rest moves on); open loop two seconds of this connection's
/// schedule (or the UDP timeout plus one), after which sending pauses and the lag shows.
pub(crate) fn window_capacity(cfg: &RunConfig, schedule: Option<Schedule>) -> usize {
    let n = match schedule {
        None => cfg.pipeline.saturating_mul(4),
        Some(s) => {
            let secs = (cfg.udp_timeout.as_secs_f64() + 1.0).max(2.0);
            (s.per_connection_rate() * secs) as usize
        }
    };
    n.clamp(16, 1 << 16).max(cfg.pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::test_ctx;

    /// Open loop: a connection up at time t joins at the first message due from t on; what
    /// came due before is counted as not sent (and none of it was measured), never sent.
    #[test]
    fn open_loop_joins_when_up() {
        let mut ctx = test_ctx(|c| (c.rate, c.connections) = (Some(1000.0), 2));
        ctx.timeline.measure_start = 10_000_000; // measuring from 10 ms
        let mut s = SendState::new(1, 0, &ctx);
        ctx.now = 7_500_000; // up at 7.5 ms: messages 0..=2 of conn 1 (1, 3, 5 ms... ) missed
        s.on_connect(&mut ctx);
        assert_eq!(s.m0, 4, "conn 1's messages are due at 1, 3, 5, 7, 9 ms");
        assert_eq!((ctx.stats.not_sent, ctx.stats.not_sent_measured), (4, 0));
        s.due = 5;
        assert_eq!(s.sendable(&ctx), 1, "only message 4, no burst of 0..=3");
        // Down from message 5 until 15.5 ms: 5 (11 ms) and 6 (13 ms) were due, measured.
        ctx.now = 15_500_000;
        not_sent(1, 5, s.next_m().max(5) + 2, &mut ctx);
        assert_eq!((ctx.stats.not_sent, ctx.stats.not_sent_measured), (6, 2));
    }

    /// `--reconnect-after N`: N messages per connection, then the session is over once
    /// all are answered.
    #[test]
    fn reconnect_after_limits_sends() {
        let mut ctx = test_ctx(|c| (c.reconnect_after, c.pipeline) = (Some(3), 8));
        let mut s = SendState::new(0, 0, &ctx);
        assert_eq!(s.sendable(&ctx), 3);
        for _ in 0..3 {
            s.push(&mut ctx);
        }
        assert_eq!(s.sendable(&ctx), 0);
        assert!(!s.session_over());
        let mut e = crate::verify::ErrorCounts::default();
        for seq in 0..3 {
            s.window.on_stream_echo(seq, &mut e);
        }
        assert!(s.session_over());
    }
}
