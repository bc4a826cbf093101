//! What every connection shares with its reactor thread: the [`Ctx`] (clock, codec,
//! histograms, counters, scratch buffer), the [`Client`] trait the TCP and UDP clients
//! implement, and [`SendState`], the send policy common to both (closed loop: keep
//! `--pipeline` in flight; open loop: send what the schedule made due, from the moment the
//! connection is up; with `--reconnect-after`, only so many), and what a run's buffers will
//! cost ([`run_bytes`]), checked by the configuration before anything starts.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::{Event, Source};

use crate::config::{RunConfig, MAX_DURATION};
use crate::payload::{self, Codec, MAX_DATAGRAM};
use crate::schedule::Schedule;
use crate::stats::ThreadStats;
use crate::udp_batch::UdpBatch;
use crate::verify::Window;

/// A send more than this late on its schedule counts as a late send.
pub const LATE_SEND_NS: u64 = 1_000_000;

/// Highest latency the histograms hold, ns: the longest a measured message can wait (a
/// year of `--duration` plus a year of `--udp-timeout`, see `config::MAX_DURATION`) and a
/// minute to spare. A library caller can go past it; such values are counted
/// ([`ThreadStats::saturated`]) and reported, never dropped silently.
pub const MAX_LATENCY_NS: u64 = (2 * MAX_DURATION.as_secs() + 60) * 1_000_000_000;

/// The one read buffer of a reactor thread: 64 KiB of TCP stream or one whole datagram.
pub const SCRATCH_LEN: usize = 64 * 1024 + MAX_DATAGRAM;

/// Open loop: a TCP connection's send buffer holds about this many bytes of due messages.
pub const OPEN_LOOP_BATCH: usize = 256 * 1024;

/// A duration in ns, saturating: user durations are capped far below the ~584 years a
/// u64 holds, but a library caller may pass `Duration::MAX` to mean "never".
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A new latency histogram: ns, 1 ns to [`MAX_LATENCY_NS`], 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// Records `value` in `hist`; past the histogram's range it is recorded as the highest
/// value and counted in `saturated`.
pub fn record_into(hist: &mut Histogram<u64>, value: u64, saturated: &mut u64) {
    if hist.record(value).is_err() {
        *saturated += 1;
        hist.saturating_record(value);
    }
}

/// Per-thread state every connection of the thread works with.
pub struct Ctx {
    /// The run's settings.
    pub cfg: Arc<RunConfig>,
    /// Message encoder and checker.
    pub codec: Codec,
    /// Open loop only.
    pub schedule: Option<Schedule>,
    /// Time zero of the run (shared by all threads, so schedules line up).
    pub epoch: Instant,
    /// The clock as last read, ns since `epoch`. Refreshed after every read syscall, so a
    /// latency never includes time spent on other connections' bytes.
    pub now: u64,
    /// Measured time is `[measure_start, measure_end)`, ns since `epoch`; a message is
    /// recorded when its reference time falls in it. Both are `u64::MAX` during the
    /// connect phase, whose end decides them (`phase.rs`).
    pub measure_start: u64,
    /// End of the measured time; no new closed-loop sends after it.
    pub measure_end: u64,
    /// One read buffer for all connections of the thread (64 KiB + a datagram's worth).
    pub scratch: Vec<u8>,
    /// UDP on Linux with `--udp-batch` above 1: the thread's batch buffers
    /// (`udp_batch.rs`); `None` otherwise.
    pub udp_batch: Option<UdpBatch>,
    /// This thread's latencies of the current interval, ns.
    pub hist: Histogram<u64>,
    /// This thread's TCP handshake durations (every connect of the run), ns.
    pub connect_hist: Histogram<u64>,
    /// This thread's counters.
    pub stats: ThreadStats,
    /// Set once a connection of this thread works (TCP: connected; UDP: an answer came).
    pub up: bool,
}

impl Ctx {
    /// Reads the clock into `now`.
    pub fn refresh_now(&mut self) -> u64 {
        self.now = self.epoch.elapsed().as_nanos() as u64;
        self.now
    }

    /// Whether the connect phase is over: traffic flows from then on (warm-up first).
    pub fn started(&self) -> bool {
        self.measure_start != u64::MAX
    }

    /// Whether `t` (ns since the epoch) falls in the measured window.
    pub fn measured(&self, t: u64) -> bool {
        (self.measure_start..self.measure_end).contains(&t)
    }

    /// A good echo arrived now for a message whose latency counts from `t_ref`.
    pub fn record(&mut self, t_ref: u64) {
        if self.measured(t_ref) {
            let latency = self.now.saturating_sub(t_ref);
            record_into(&mut self.hist, latency, &mut self.stats.saturated);
        }
    }

    /// A TCP connect that started at `started` completed now.
    pub fn record_connect(&mut self, started: u64) {
        let took = self.now.saturating_sub(started);
        record_into(&mut self.connect_hist, took, &mut self.stats.saturated);
        self.stats.opened += 1;
        self.stats.connects_measured += u64::from(self.measured(self.now));
        self.up = true;
    }

    /// Records the first data error of this thread, described by `what` (only called
    /// while none is recorded, so describing costs nothing per message).
    pub fn data_error(&mut self, what: String) {
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some((self.now, what));
        }
    }

    /// Whether this is a UDP run.
    pub fn udp(&self) -> bool {
        self.cfg.protocol == crate::config::Protocol::Udp
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Closed {
    /// It never got established.
    ConnectFailed(String),
    /// It broke after being established: the peer closed or reset it.
    Broken(String),
    /// The server closed it after the measured time with nothing owed: not an error.
    Finished,
    /// `--reconnect-after`: it sent its messages and got every echo; open a new one.
    Reconnect,
}

/// What a handler tells the reactor.
#[derive(Debug)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Close it (after the event batch).
    Close(Closed),
}

/// One TCP connection or UDP socket, driven by the thread's reactor.
pub trait Client: Sized {
    /// Starts connecting connection `id` (non-blocking), from `source` if given. `resume`:
    /// open loop, the schedule index where its previous connection stopped (0 at first).
    fn open(id: u32, source: Option<IpAddr>, resume: u64, ctx: &mut Ctx) -> io::Result<Self>;
    /// The socket, for registration.
    fn source(&mut self) -> &mut dyn Source;
    /// Readiness: finish connecting, read and verify everything, then send.
    fn on_event(&mut self, ev: &Event, ctx: &mut Ctx) -> Flow;
    /// Sends whatever the policy allows now, in one write where the transport allows.
    fn pump(&mut self, ctx: &mut Ctx) -> Flow;
    /// When [`Client::on_deadline`] must run next, ns since the epoch: a connect timeout,
    /// a UDP datagram's loss timeout. `None`: nothing pending.
    fn deadline(&self, ctx: &Ctx) -> Option<u64>;
    /// A deadline passed (or maybe not: the caller may be early; check the clock).
    fn on_deadline(&mut self, ctx: &mut Ctx) -> Flow;
    /// The connection ends: count whatever is still owed.
    fn finish(&mut self, ctx: &mut Ctx);
    /// Whether it is established (UDP: from the start).
    fn is_up(&self) -> bool;
    /// Messages sent and not yet resolved.
    fn outstanding(&self) -> usize;
    /// The send policy state.
    fn sender(&mut self) -> &mut SendState;
}

/// Send policy and verification window of one connection.
#[derive(Debug)]
pub struct SendState {
    /// Connection id carried in every payload.
    pub id: u32,
    /// Messages in flight.
    pub window: Window,
    /// Open loop: schedule indices below this are due (advanced by the thread's cursor).
    pub due: u64,
    /// Open loop: schedule index of seq 0, the first message due once the connection was
    /// up. Earlier ones are counted as not sent, never sent as a burst.
    pub m0: u64,
    /// Open loop: where the previous connection in this slot stopped (0 for the first):
    /// messages from here to `m0` came due while no connection was up.
    resume: u64,
    /// `--reconnect-after`: messages this connection sends before it closes.
    limit: Option<u64>,
    /// Open loop: queued on the thread's list of connections to pump this wakeup.
    pub dirty: bool,
}

impl SendState {
    /// Fresh state for connection `id`, window sized for the run.
    pub fn new(id: u32, resume: u64, ctx: &Ctx) -> Self {
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
    pub fn on_connect(&mut self, ctx: &mut Ctx) {
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
    pub fn next_m(&self) -> u64 {
        self.m0 + self.window.next_seq()
    }

    /// `--reconnect-after`: every allowed message was sent and answered.
    pub fn session_over(&self) -> bool {
        self.limit
            .is_some_and(|l| self.window.next_seq() >= l && self.window.in_flight() == 0)
    }

    /// How many messages may be sent now: none during the connect phase (connections
    /// open first, then traffic starts for all of them at once).
    pub fn sendable(&self, ctx: &Ctx) -> usize {
        if !self.window.has_room() || !ctx.started() {
            return 0;
        }
        let want = match ctx.schedule {
            None if ctx.now >= ctx.measure_end => 0,
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
    pub fn push(&mut self, ctx: &mut Ctx) -> u64 {
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
pub fn not_sent(id: u32, from: u64, upto: u64, ctx: &mut Ctx) {
    if let (Some(s), true) = (ctx.schedule, upto > from) {
        let (lo, hi) = (ctx.measure_start, ctx.measure_end);
        ctx.stats.not_sent += upto - from;
        ctx.stats.not_sent_measured += s.count_due(u64::from(id), from, upto, lo, hi);
    }
}

/// Window size: closed loop a few times the pipeline (UDP loss holds the front open for
/// a timeout while the rest moves on); open loop two seconds of this connection's
/// schedule (or the UDP timeout plus one), after which sending pauses and the lag shows.
fn window_capacity(cfg: &RunConfig, schedule: Option<Schedule>) -> usize {
    let n = match schedule {
        None => cfg.pipeline.saturating_mul(4),
        Some(s) => {
            let secs = (cfg.udp_timeout.as_secs_f64() + 1.0).max(2.0);
            (s.per_connection_rate() * secs) as usize
        }
    };
    n.clamp(16, 1 << 16).max(cfg.pipeline)
}

/// Per connection, beyond its buffers: its client struct and slot in the thread's table,
/// rounded up.
const CONNECTION_OVERHEAD: u64 = 256;

/// Messages a TCP send buffer holds (its fixed capacity): closed loop `--pipeline`, open
/// loop [`OPEN_LOOP_BATCH`] bytes' worth, at most what a window of `slots` tracks.
pub fn send_batch(cfg: &RunConfig, wire: usize, slots: usize) -> usize {
    match cfg.rate {
        None => cfg.pipeline,
        Some(_) => (OPEN_LOOP_BATCH / wire).clamp(1, slots),
    }
}

/// About how many bytes the run allocates, all connections open: per thread the scratch
/// buffer and the codec's pattern; per connection its window, its send buffer
/// ([`send_batch`]) and a partial echo. Saturates.
pub fn run_bytes(cfg: &RunConfig) -> u64 {
    let wire = payload::wire_len(cfg.size, cfg.framed) as u64;
    let schedule = cfg.rate.map(|r| Schedule::new(r, cfg.connections));
    let capacity = window_capacity(cfg, schedule);
    let window = Window::bytes_for(capacity) as u64;
    let slots = Window::slots_for(capacity);
    let out = (send_batch(cfg, wire as usize, slots) as u64).saturating_mul(wire);
    let per_conn = CONNECTION_OVERHEAD + window + out.saturating_add(wire);
    let per_thread = (SCRATCH_LEN + cfg.size) as u64 + UdpBatch::bytes_for(cfg);
    (cfg.connections as u64)
        .saturating_mul(per_conn)
        .saturating_add((cfg.threads as u64).saturating_mul(per_thread))
}

/// A context for unit tests of what runs on it (the echo stream, the send policy): the
/// run's defaults with `change` applied, measuring from time 0 on.
#[cfg(test)]
pub(crate) fn test_ctx(change: impl FnOnce(&mut RunConfig)) -> Ctx {
    let mut cfg = RunConfig::new("127.0.0.1:9".parse().expect("an address"));
    change(&mut cfg);
    let schedule = cfg.rate.map(|r| Schedule::new(r, cfg.connections));
    Ctx {
        codec: Codec::new(cfg.size, cfg.framed),
        schedule,
        epoch: Instant::now(),
        now: 0,
        measure_start: 0,
        measure_end: u64::MAX,
        scratch: Vec::new(),
        udp_batch: None,
        hist: new_histogram(),
        connect_hist: new_histogram(),
        stats: ThreadStats::default(),
        up: false,
        cfg: Arc::new(cfg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latency past the histogram's range is recorded as its maximum and counted, not
    /// lost; the range covers the longest run the command line allows.
    #[test]
    fn saturation_is_counted() {
        let mut h = new_histogram();
        let mut saturated = 0;
        let year = 365 * 24 * 3600 * 1_000_000_000u64;
        record_into(&mut h, 2 * year, &mut saturated);
        assert_eq!((saturated, h.len()), (0, 1));
        record_into(&mut h, u64::MAX / 2, &mut saturated);
        assert_eq!((saturated, h.len()), (1, 2));
    }

    /// Open loop: a connection up at time t joins at the first message due from t on; what
    /// came due before is counted as not sent (and none of it was measured), never sent.
    #[test]
    fn open_loop_joins_when_up() {
        let mut ctx = test_ctx(|c| (c.rate, c.connections) = (Some(1000.0), 2));
        ctx.measure_start = 10_000_000; // measuring from 10 ms
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
