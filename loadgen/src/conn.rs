//! What every connection shares with its reactor thread: the [`Ctx`] (clock, codec,
//! histogram, counters, scratch buffer), the [`Client`] trait the TCP and UDP clients
//! implement, and [`SendState`], the send policy common to both (closed loop: keep
//! `--pipeline` in flight; open loop: send what the schedule made due), and what a run's
//! buffers will cost ([`run_bytes`]), checked by the configuration before anything starts.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::{Event, Source};

use crate::config::RunConfig;
use crate::payload::{self, Codec, MAX_DATAGRAM};
use crate::schedule::Schedule;
use crate::verify::{ErrorCounts, Window};

/// A send more than this late on its schedule counts as a late send.
pub const LATE_SEND_NS: u64 = 1_000_000;

/// Highest latency the histograms track: one hour, in ns (larger values saturate).
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// The one read buffer of a reactor thread: 64 KiB of TCP stream or one whole datagram.
pub const SCRATCH_LEN: usize = 64 * 1024 + MAX_DATAGRAM;

/// Open loop: a TCP connection's send buffer holds about this many bytes of due messages.
pub const OPEN_LOOP_BATCH: usize = 256 * 1024;

/// A duration in ns, saturating: user durations are capped far below the ~584 years a
/// u64 holds, but a library caller may pass `Duration::MAX` to mean "never".
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A new latency histogram: ns, 1 ns to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// Counters one thread keeps; the collector adds them up.
#[derive(Debug, Clone, Default)]
pub struct ThreadStats {
    /// Verification errors by kind.
    pub errors: ErrorCounts,
    /// Connections (UDP: sockets) established.
    pub opened: u64,
    /// Connections that could not be established.
    pub failed: u64,
    /// Established connections lost before the run ended (reset, EOF, error).
    pub broken: u64,
    /// Messages sent, warm-up included.
    pub sent: u64,
    /// Open loop: measured messages sent more than [`LATE_SEND_NS`] after their due time.
    pub late_sends: u64,
    /// Open loop: the largest send lag seen in the measured time, ns.
    pub max_lag_ns: u64,
    /// The first data error (corrupt, missing, duplicate, reordered: what fails a run),
    /// described, with when it was seen (ns since the epoch) to pick the earliest thread's.
    pub first_error: Option<(u64, String)>,
    /// The first connection error, to explain a failed run.
    pub conn_error: Option<String>,
}

impl ThreadStats {
    /// Adds another thread's counters.
    pub fn add(&mut self, o: &ThreadStats) {
        self.errors.add(&o.errors);
        self.opened += o.opened;
        self.failed += o.failed;
        self.broken += o.broken;
        self.sent += o.sent;
        self.late_sends += o.late_sends;
        self.max_lag_ns = self.max_lag_ns.max(o.max_lag_ns);
        let earlier = match (&self.first_error, &o.first_error) {
            (None, theirs) => theirs.is_some(),
            (Some((mine, _)), Some((theirs, _))) => theirs < mine,
            (Some(_), None) => false,
        };
        if earlier {
            self.first_error.clone_from(&o.first_error);
        }
        if self.conn_error.is_none() {
            self.conn_error.clone_from(&o.conn_error);
        }
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
    /// recorded when its reference time falls in it.
    pub measure_start: u64,
    /// End of the measured time; no new closed-loop sends after it.
    pub measure_end: u64,
    /// One read buffer for all connections of the thread (64 KiB + a datagram's worth).
    pub scratch: Vec<u8>,
    /// This thread's latencies of the current interval, ns.
    pub hist: Histogram<u64>,
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

    /// A good echo arrived now for a message whose latency counts from `t_ref`.
    pub fn record(&mut self, t_ref: u64) {
        if (self.measure_start..self.measure_end).contains(&t_ref) {
            self.hist.saturating_record(self.now.saturating_sub(t_ref));
        }
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
    /// It broke after being established.
    Broken(String),
    /// The server closed it after the measured time with nothing owed: not an error.
    Finished,
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
    /// Starts connecting connection `id` (non-blocking), from `bind` if given.
    fn open(id: u32, bind: Option<IpAddr>, ctx: &mut Ctx) -> io::Result<Self>;
    /// The socket, for registration.
    fn source(&mut self) -> &mut dyn Source;
    /// Readiness: finish connecting, read and verify everything, then send.
    fn on_event(&mut self, ev: &Event, ctx: &mut Ctx) -> Flow;
    /// Sends whatever the policy allows now, in one write where the transport allows.
    fn pump(&mut self, ctx: &mut Ctx) -> Flow;
    /// Called every few ms: connect timeout, UDP loss timeout.
    fn tick(&mut self, ctx: &mut Ctx) -> Flow;
    /// The connection ends: count whatever is still owed.
    fn finish(&mut self, ctx: &mut Ctx);
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
    /// Open loop: schedule index of seq 0. Indices that came due before the connection
    /// was established are skipped, not sent as a burst.
    pub m0: u64,
    /// Open loop: queued on the thread's list of connections to pump this wakeup.
    pub dirty: bool,
}

impl SendState {
    /// Fresh state for connection `id`, window sized for the run.
    pub fn new(id: u32, ctx: &Ctx) -> Self {
        SendState {
            id,
            window: Window::new(window_capacity(&ctx.cfg, ctx.schedule)),
            due: 0,
            m0: 0,
            dirty: false,
        }
    }

    /// The connection is up: in open loop, what came due before does not count.
    pub fn on_connect(&mut self) {
        self.m0 = self.due;
    }

    /// How many messages may be sent now.
    pub fn sendable(&self, ctx: &Ctx) -> usize {
        if !self.window.has_room() {
            return 0;
        }
        let want = match ctx.schedule {
            None if ctx.now >= ctx.measure_end => 0,
            None => ctx.cfg.pipeline.saturating_sub(self.window.in_flight()),
            Some(_) => self.due.saturating_sub(self.m0 + self.window.next_seq()) as usize,
        };
        want.min(self.window.capacity() - self.window.span())
    }

    /// Records one message as sent now; returns its seq. Open loop: its latency counts
    /// from its scheduled time, and a send later than [`LATE_SEND_NS`] is counted.
    pub fn push(&mut self, ctx: &mut Ctx) -> u64 {
        let t_ref = match &ctx.schedule {
            None => ctx.now,
            Some(s) => {
                let due = s.intended_ns(u64::from(self.id), self.m0 + self.window.next_seq());
                if due >= ctx.measure_start {
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
    let per_thread = (SCRATCH_LEN + cfg.size) as u64;
    (cfg.connections as u64)
        .saturating_mul(per_conn)
        .saturating_add((cfg.threads as u64).saturating_mul(per_thread))
}
