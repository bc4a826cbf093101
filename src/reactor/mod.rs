//! THE event loop: one thread, one `mio::Poll`, one `match` on the token.
//!
//! Each turn of the loop: compute how long we may sleep (until the next timer,
//! or not at all if work is waiting), `poll`, queue every connection event on
//! the run queue (`runq.rs`), then serve the queue and the chat room within
//! the turn's budget (`budget.rs`), and, at a safe point after that, close
//! the connections that asked to be closed, fire due timers, and check the
//! shutdown drain. Work the budget did not reach stays queued with its
//! readiness, and the next `poll` does not sleep.
//!
//! Tokens: a few fixed ones below `FIRST_CONN` for the listener, the UDP
//! socket, signals, the waker and the metrics endpoint (`metrics.rs`);
//! every other token is a slab key plus `FIRST_CONN`, so the two ranges
//! never collide.
//!
//! This file holds the loop, dispatch and visits; `runq.rs` the run queue,
//! `conns.rs` the bookkeeping around a connection's IO and the deferred
//! close, `accept.rs` the listener's states and limits, `deadlines.rs` what
//! bounds the poll timeout (idle timers, back-off, stats), `drain.rs` the
//! shutdown, `room.rs` chat fan-out, `account.rs` the memory budget.

use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{trace, warn};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::budget::TurnBudget;
use crate::config::Config;

use crate::error::Error;
use crate::memory::MemoryBudget;
use crate::protocol::Outbox;
use crate::ready::Ready;
use crate::server::Shard;
use crate::shutdown::ShutdownHandle;
use crate::signals::SignalSet;
use crate::stamp::Stamp;
use crate::stats::Stats;
use crate::timer::Timers;
use crate::udp::Udp;

mod accept;
mod account;
mod conns;
mod deadlines;
mod drain;
mod metrics;
mod room;
mod runq;

use accept::AcceptState;
use conns::{Shared, Slot};
use drain::Exit;
use room::Room;
use runq::{Lane, RunQueue};

pub const LISTENER: Token = Token(0);
pub const UDP: Token = Token(1);
pub const SIGNALS: Token = Token(2);
pub const WAKER: Token = Token(3);
/// Connection tokens start here: `Token(key + FIRST_CONN)`.
const FIRST_CONN: usize = 16;

/// The reactor-wide read buffer. 64 KiB holds the largest UDP datagram
/// (65,507 bytes) and amortises syscalls on bulk TCP transfers.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Events taken per `poll`.
const EVENTS_CAPACITY: usize = 1024;
/// A visit that moved this much (a full scratch buffer) marks a bulk
/// connection: its events wait in the old lane for `HEAVY_MEMORY`.
const HEAVY_VISIT: usize = SCRATCH_SIZE;
/// How long a bulk connection is remembered as one. A bulk sender drains its
/// socket now and then for a moment (waiting for its own echoes); fq_codel
/// likewise treats a flow as new again only after a full round idle. Far
/// longer than such gaps, far shorter than a light client's pauses.
const HEAVY_MEMORY: Duration = Duration::from_millis(50);

pub(crate) struct Reactor {
    /// The readiness poller (epoll on Linux) every socket is registered with.
    poll: Poll,
    /// Reused event buffer; at most `EVENTS_CAPACITY` events per `poll`.
    events: Events,
    /// Registered under `LISTENER` only while `accept` is `Accepting` or
    /// `Backoff`.
    listener: TcpListener,
    accept: AcceptState,
    /// Logged the current run of accept errors already (log once per burst).
    accept_error_logged: bool,
    /// Warned that `max_conns` was reached. Cleared only once connections
    /// drop below 90% of it, so a server held at its limit (each close lets
    /// one more in) warns once, not once per freed slot.
    full_logged: bool,
    /// The accept loop stopped at its per-turn cap; accept again next turn.
    accept_requeue: bool,
    /// The UDP socket (token `UDP`) and its bounded reply queue.
    udp: Option<Udp>,
    /// SIGINT/SIGTERM (token `SIGNALS`), when `handle_signals`.
    signals: Option<SignalSet>,
    /// Its waker fires token `WAKER`; its flag says shutdown was asked for.
    shutdown: ShutdownHandle,
    /// Open connections. A connection's token is its key + `FIRST_CONN`;
    /// keys are reused, so anything remembered across turns also keeps the
    /// connection's `id`. Room for `max_conns` is reserved at start (pages
    /// are mapped as used; doubling left outgrown blocks resident).
    conns: Slab<Slot>,
    /// The last connection id handed out; ids are never reused.
    next_id: u64,
    shared: Shared,
    /// Connections with readiness to serve, fresh ones first.
    runq: RunQueue,
    /// Chat lines on their way to the members.
    room: Room,
    /// This reactor's share of `--max-memory`, and what is held now.
    memory: MemoryBudget,
    /// Connections (slab key, id) the memory budget stopped reading; all
    /// resume when the total falls to the low-water mark.
    memory_paused: Vec<(usize, u64)>,
    /// Idle and linger deadlines (see `timer.rs`); the earliest one bounds
    /// the poll timeout.
    timers: Timers,
    /// Connections (slab key, id) to close after the current batch.
    to_close: Vec<(usize, u64)>,
    /// UDP readiness not served yet (from an event, or left by a read loop
    /// that stopped at its cap): served in `serve`, after the fresh lane.
    udp_ready: Ready,
    /// `Some(deadline)` once shutdown began.
    draining: Option<Instant>,
    /// During a drain: some connection sent everything but the peer has not
    /// acknowledged it all yet.
    drain_waiting: bool,
    /// During a chat drain: some member still holds input it had when the
    /// drain began. Those are lines for the others, who must not be closed
    /// (or sent their FIN) before they get them.
    room_input_held: bool,
    /// `room.bytes()` at its last accounting (see `account_room`).
    room_held: usize,
    /// When to log the counters next (`--stats-interval`).
    next_stats: Option<Instant>,
    config: Config,
    /// `--root`, canonical, shared with every files-mode handler.
    root: Option<Rc<Path>>,
    /// The time read once after each `poll`: one clock read per batch.
    now: Instant,
    /// `--metrics`: the loop's histograms, and (first reactor) the endpoint.
    metrics: Option<metrics::MetricsState>,
    /// The budget's running total (`TurnBudget::spent`) and the visits made
    /// when this turn began, to report what a long turn did.
    turn_start: (u64, u64),
    /// Visits made since start (a running total).
    visits: u64,
}

impl Reactor {
    /// Registers one shard's sockets (and, for the first reactor, the
    /// signals) with its poller.
    pub(crate) fn new(
        shard: Shard,
        config: &Config,
        shutdown: &ShutdownHandle,
        stats: &Stats,
        root: Option<&Path>,
    ) -> Result<Reactor, Error> {
        let Shard {
            poll,
            mut listener,
            udp,
            max_conns,
            index,
            reactors,
            metrics,
            signals,
        } = shard;
        let config = Config {
            max_conns,
            ..config.clone()
        };
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let udp = match udp {
            Some(mut socket) => {
                poll.registry()
                    .register(&mut socket, UDP, Interest::READABLE)?;
                Some(Udp::new(socket, config.mode, config.udp_batch))
            }
            None => None,
        };
        let metrics = match metrics {
            Some(m) => Some(metrics::MetricsState::new(m, poll.registry(), &stats.0)?),
            None => None,
        };
        // The counters are shared: one reactor logging them is enough.
        let stats_interval = config.stats_interval.filter(|_| index == 0);
        let now = Instant::now();
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listener,
            accept: AcceptState::Accepting,
            accept_error_logged: false,
            full_logged: false,
            accept_requeue: false,
            udp,
            signals,
            shutdown: shutdown.clone(),
            conns: Slab::with_capacity(config.max_conns),
            next_id: 0,
            shared: Shared {
                scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
                outbox: Outbox::default(),
                stats: stats.0.clone(),
                budget: TurnBudget::new(),
                max_pending: config.max_pending,
                low_water: config.low_water(),
            },
            runq: RunQueue::default(),
            room: Room::default(),
            // Shared nothing: each reactor keeps an equal share.
            memory: MemoryBudget::new(config.max_memory / reactors),
            memory_paused: Vec::new(),
            timers: Timers::with_capacity(config.max_conns),
            to_close: Vec::new(),
            udp_ready: Ready::default(),
            draining: None,
            drain_waiting: false,
            room_input_held: false,
            room_held: 0,
            next_stats: stats_interval.map(|d| now + d),
            root: root.map(Rc::from),
            config,
            now,
            metrics,
            turn_start: (0, 0),
            visits: 0,
        })
    }

    /// The loop. Returns after a graceful shutdown (the counters are in
    /// the shared `Stats`).
    pub(crate) fn run(mut self) -> Result<(), Error> {
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                // A signal interrupted epoll_wait: not an error, poll again.
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.finish();
                return Err(Error::Poll(e));
            }
            self.now = Instant::now();
            self.shared.budget.refill();
            self.turn_start = (self.shared.budget.spent(), self.visits);
            // Take the events out so dispatch may borrow `self` mutably; an
            // empty `Events` does not allocate, and the buffer goes back after.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in events.iter() {
                let (token, ready) = readiness(event);
                if event.is_read_closed() {
                    self.note_read_closed(token);
                }
                if self.dispatch(token, ready) == Exit::Now {
                    self.finish();
                    return Ok(());
                }
            }
            self.events = events;
            self.serve();
            self.close_batch();
            self.fire_timers();
            self.resume_if_released();
            self.log_stats();
            self.end_turn();
            if self.drain_done() {
                self.finish();
                return Ok(());
            }
        }
    }

    /// One event, one call. Connection events only queue the connection:
    /// `serve` does the work, in an order and amount the budget decides.
    fn dispatch(&mut self, token: Token, ready: Ready) -> Exit {
        match token {
            LISTENER => self.accept_all(),
            UDP => self.udp_ready |= ready,
            SIGNALS => self.on_signals(),
            WAKER => {
                if self.shutdown.is_aborted() {
                    return Exit::Now;
                }
                if self.shutdown.is_requested() {
                    self.begin_shutdown();
                }
            }
            t if crate::metrics::owns(t) => self.metrics_event(t),
            // Every other token is a slab key offset by FIRST_CONN.
            Token(t) => match t.checked_sub(FIRST_CONN) {
                Some(key) => self.queue(key, ready, Lane::Fresh),
                None => trace!("event for unknown token={t}"),
            },
        }
        Exit::No
    }

    /// Serves the run queue and the room until the turn's budget is spent:
    /// fresh connections first (see `runq.rs`), then the UDP socket, the
    /// room's deliveries, and connections with work left, each at most once.
    /// All but the fresh lane get at least one step per turn, so none of
    /// them starves however busy the others are.
    fn serve(&mut self) {
        while !self.shared.budget.exhausted() {
            let Some((key, id)) = self.runq.pop(Lane::Fresh) else {
                break;
            };
            self.visit(key, id);
        }
        let udp = std::mem::take(&mut self.udp_ready);
        if !udp.is_empty() {
            self.udp_event(udp);
        }
        self.advance_room();
        // Only those queued before this point: a connection its visit
        // requeues waits for the next turn.
        for i in 0..self.runq.len(Lane::Old) {
            if i > 0 && self.shared.budget.exhausted() {
                break;
            }
            if let Some((key, id)) = self.runq.pop(Lane::Old) {
                self.visit(key, id);
            }
        }
        if std::mem::take(&mut self.accept_requeue) {
            self.accept_all();
        }
    }

    // ----- connections -----------------------------------------------------

    /// Records readiness for connection `key` and queues it in `lane`, unless
    /// it is queued already (then it keeps its place, with the readiness
    /// added). A connection that recently made a heavy visit goes to the
    /// old lane even from an event, as fq_codel keeps a bulk flow that
    /// drained for a moment among the old flows: otherwise a hundred bulk
    /// senders that each drain their socket now and then would fill the
    /// fresh lane, and a light client would wait behind them again.
    fn queue(&mut self, key: usize, ready: Ready, lane: Lane) {
        let Some(slot) = self.conns.get_mut(key) else {
            // The connection closed earlier (an event for a vacant key is
            // spurious, and harmless).
            trace!("event for vacant token={}", key + FIRST_CONN);
            return;
        };
        if ready.is_empty() {
            return;
        }
        if slot.ready.is_empty() {
            let heavy = slot.heavy_until.is_some_and(|t| self.now < t.instant());
            let lane = if heavy { Lane::Old } else { lane };
            self.runq.push(lane, key, slot.conn.id);
        }
        slot.ready |= ready;
    }

    /// Serves one connection's recorded readiness: one bounded share of
    /// work. What it did not use up is queued again in the old lane.
    fn visit(&mut self, key: usize, id: u64) {
        let hold_fin = self.hold_fin();
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if slot.conn.id != id {
            return; // stale entry: the slot was reused
        }
        let mut ready = std::mem::take(&mut slot.ready);
        if slot.conn.close_reason().is_some() {
            return;
        }
        let allowance = self.memory.read_allowance(slot.held);
        if self.memory_gate(key, allowance) {
            // Unpaused: input that waited meanwhile raised no new edge.
            ready.read = true;
        }
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        self.shared.budget.spend_visit();
        self.visits += 1;
        let before = self.shared.budget.spent();
        let mut ctx = self.shared.ctx(self.now, allowance, hold_fin);
        let mut left = Ready::default();
        if ready.write {
            left |= slot.conn.on_writable(&mut ctx);
        }
        if ready.read {
            left |= slot.conn.on_readable(&mut ctx);
        }
        if self.shared.budget.spent() - before >= HEAVY_VISIT as u64 {
            slot.heavy_until = Some(Stamp::new(self.now + HEAVY_MEMORY));
        }
        self.queue(key, left, Lane::Old);
        self.after_conn_io(key);
    }

    // ----- UDP -------------------------------------------------------------

    fn udp_event(&mut self, ready: Ready) {
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        let before = udp.interest();
        if ready.write {
            udp.on_writable(&self.shared.stats);
        }
        if ready.read && self.draining.is_none() {
            let (scratch, stats) = (&mut self.shared.scratch, &self.shared.stats);
            if udp.on_readable(scratch, stats, &mut self.shared.budget) {
                self.udp_ready |= Ready::READ; // stopped early: more next turn
            }
        }
        let after = udp.interest();
        if after != before {
            if let Err(e) = self.poll.registry().reregister(&mut udp.socket, UDP, after) {
                warn!("udp reregister error={e}");
            }
        }
    }
}

/// Reads an event's token and readiness. Errors and hang-ups count as both
/// readable and writable: the next read or write reports what happened.
fn readiness(e: &Event) -> (Token, Ready) {
    let read = e.is_readable() || e.is_read_closed() || e.is_error();
    let write = e.is_writable() || e.is_write_closed() || e.is_error();
    (e.token(), Ready { read, write })
}
