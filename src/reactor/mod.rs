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
//! This file holds the loop, dispatch and visits. Each sub-state is a type
//! of its own with its own methods: the `Acceptor` (`accept.rs`: the
//! listener, `max_conns`, the EMFILE back-off), the `Drain` (`drain.rs`:
//! the graceful shutdown's deadline and waiting), the `RunQueue`
//! (`runq.rs`), the `Room` (`room.rs`: chat fan-out) and `Memory`
//! (`account.rs`, `overdraft.rs`: the memory budget). `conns.rs` holds
//! the bookkeeping around a connection's IO and the deferred close,
//! `deadlines.rs` what bounds the poll timeout and fires timers. Every
//! timing decision takes `now` as a parameter, so `tests.rs` runs them on
//! virtual time.

use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::bind::Shard;
use crate::budget::TurnBudget;
use crate::config::Config;
use crate::error::Error;
use crate::protocol::Outbox;
use crate::ready::Ready;
use crate::shutdown::ShutdownHandle;
use crate::signals::SignalSet;
use crate::stamp::Stamp;
use crate::stats::Stats;
use crate::timer::Timers;
use crate::token::{conn_key, is_metrics, LISTENER, SIGNALS, UDP, WAKER};
use crate::udp::Udp;

mod accept;
mod account;
mod conns;
mod deadlines;
mod drain;
mod metrics;
mod overdraft;
mod room;
mod runq;

use accept::Acceptor;
use account::Memory;
use conns::{Shared, Slot};
use deadlines::Turn;
use drain::Drain;
use room::Room;
use runq::{Lane, RunQueue};

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
/// Most connections the slab and the timer heap reserve room for at start
/// (7 MiB of address space, mapped only as entries are used). Reserving
/// exactly `max_conns` spares the doubling's outgrown blocks, but a
/// `--max-conns` far past what the machine holds (allowed where the
/// open-files limit is that high) asked for terabytes at once, and a
/// failed allocation aborts the process. Past this they grow as used.
pub(super) const RESERVE_CONNS: usize = 1 << 16;

pub(crate) struct Reactor {
    /// The readiness poller (epoll on Linux) every socket is registered with.
    poll: Poll,
    /// Reused event buffer; at most `EVENTS_CAPACITY` events per `poll`.
    events: Events,
    /// The listener (token `LISTENER`): accepting, paused at `max_conns`,
    /// backing off, or stopped.
    acceptor: Acceptor,
    /// The UDP socket (token `UDP`), its bounded reply queue, and its
    /// readiness not served yet (served in `serve`, after the fresh lane).
    udp: Option<Udp>,
    /// SIGINT/SIGTERM (token `SIGNALS`), when `handle_signals`.
    signals: Option<SignalSet>,
    /// Its waker fires token `WAKER`; its flag says shutdown was asked for.
    shutdown: ShutdownHandle,
    /// Open connections. A connection's token is its key + `FIRST_CONN`;
    /// keys are reused, so anything remembered across turns also keeps the
    /// connection's `id`. Room for `max_conns` (at most `RESERVE_CONNS`) is
    /// reserved at start (pages are mapped as used; doubling left outgrown
    /// blocks resident).
    conns: Slab<Slot>,
    /// The last connection id handed out; ids are never reused.
    next_id: u64,
    /// What every connection call borrows (scratch buffer, counters, budget).
    shared: Shared,
    /// Connections with readiness to serve, fresh ones first.
    runq: RunQueue,
    /// Chat lines on their way to the members.
    room: Room,
    /// The memory budget, and the connections it paused.
    memory: Memory,
    /// Idle and linger deadlines (see `timer.rs`); the earliest one bounds
    /// the poll timeout.
    timers: Timers,
    /// Connections (slab key, id) to close after the current batch.
    to_close: Vec<(usize, u64)>,
    /// `Some` once shutdown began.
    drain: Option<Drain>,
    /// When to log the counters next (`--stats-interval`).
    next_stats: Option<Instant>,
    /// The settings, with `max_conns` this reactor's share.
    config: Config,
    /// `--root`, canonical, shared with every files-mode handler.
    root: Option<Rc<Path>>,
    /// The time read once after each `poll`: one clock read per batch, and
    /// the `now` every decision of the turn is given.
    now: Instant,
    /// `--metrics`: the loop's histograms, and (first reactor) the endpoint.
    metrics: Option<metrics::MetricsState>,
    /// What this turn did, for the long-turn log.
    turn: Turn,
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
            listener,
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
        let register = |what| move |source| Error::Register { what, source };
        let acceptor = Acceptor::new(listener, poll.registry(), max_conns)
            .map_err(register("tcp listener"))?;
        let udp = match udp {
            Some(mut socket) => {
                poll.registry()
                    .register(&mut socket, UDP, Interest::READABLE)
                    .map_err(register("udp socket"))?;
                Some(Udp::new(
                    socket,
                    config.mode,
                    config.udp_batch,
                    config.udp_coalesce,
                ))
            }
            None => None,
        };
        let metrics = match metrics {
            Some(m) => Some(
                metrics::MetricsState::new(m, poll.registry(), &stats.0)
                    .map_err(register("metrics listener"))?,
            ),
            None => None,
        };
        // The counters are shared: one reactor logging them is enough.
        let stats_interval = config.stats_interval.filter(|_| index == 0);
        let now = Instant::now();
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            acceptor,
            udp,
            signals,
            shutdown: shutdown.clone(),
            conns: Slab::with_capacity(config.max_conns.min(RESERVE_CONNS)),
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
            memory: Memory::new(config.max_memory / reactors),
            timers: Timers::with_capacity(config.max_conns.min(RESERVE_CONNS)),
            to_close: Vec::new(),
            drain: None,
            next_stats: stats_interval.map(|d| now + d),
            root: root.map(Rc::from),
            config,
            now,
            metrics,
            turn: Turn::default(),
        })
    }

    /// The loop. Returns after a graceful shutdown (the counters are in
    /// the shared `Stats`).
    pub(crate) fn run(mut self) -> Result<(), Error> {
        // A 20 µs pause must not last 70 (see `sys`). Held until `run`
        // returns: the thread may be the embedder's.
        let _precise_timers = match &self.udp {
            Some(udp) if udp.may_pause() => crate::sys::PreciseTimers::new()
                .inspect_err(|e| debug!("timer slack not set error={e}"))
                .ok(),
            _ => None,
        };
        loop {
            let mut timeout = self.poll_timeout(Instant::now());
            // Let a UDP batch fill (`--udp-coalesce`, see `udp.rs`).
            if self.pause_for_batch(timeout) {
                timeout = self.poll_timeout(Instant::now());
            }
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                // A signal interrupted epoll_wait: not an error, poll again.
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.finish();
                return Err(Error::Wait(e));
            }
            if self.turn(Instant::now()) == Exit::Now {
                self.finish();
                return Ok(());
            }
        }
    }

    /// One turn on the events `poll` just returned, at time `now` (the one
    /// clock read of the turn; tests pass virtual times). `Exit::Now` once
    /// the reactor must return: aborted, or the drain is done.
    fn turn(&mut self, now: Instant) -> Exit {
        self.now = now;
        self.shared.budget.refill();
        self.turn.begin(self.shared.budget.spent());
        // Take the events out so dispatch may borrow `self` mutably; an
        // empty `Events` does not allocate, and the buffer goes back after.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            let (token, ready) = readiness(event);
            if event.is_read_closed() {
                self.note_read_closed(token);
            }
            if self.dispatch(token, ready) == Exit::Now {
                return Exit::Now;
            }
        }
        self.events = events;
        self.serve();
        self.close_batch();
        self.fire_timers(now);
        self.balance_memory(now);
        self.log_stats(now);
        self.end_turn();
        if self.drain_done(now) {
            return Exit::Now;
        }
        Exit::No
    }

    /// One event, one call. Connection events only queue the connection:
    /// `serve` does the work, in an order and amount the budget decides.
    fn dispatch(&mut self, token: Token, ready: Ready) -> Exit {
        match token {
            // Clients wait in the backlog: accept them now (until WouldBlock).
            LISTENER => self.accept_all(),
            // Datagrams came, or the socket has room for queued replies:
            // served in `serve`, after the fresh connections.
            UDP => {
                if let Some(udp) = self.udp.as_mut() {
                    udp.note_ready(ready);
                }
            }
            // SIGINT/SIGTERM: begin the graceful drain.
            SIGNALS => self.on_signals(),
            // Another thread's `ShutdownHandle`: drain, or return at once.
            WAKER => return self.on_wake(),
            t if is_metrics(t) => self.metrics_event(t),
            // Every other token is a connection's (slab key + FIRST_CONN),
            // or a spurious event for one that closed: queue it, or trace.
            t => match conn_key(t) {
                Some(key) => self.queue(key, ready, Lane::Fresh),
                None => trace!("event for unknown token={}", t.0),
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
        if let Some(udp) = self.udp.as_mut() {
            let shared = &mut self.shared;
            let registry = self.poll.registry();
            udp.serve(
                registry,
                &mut shared.scratch,
                &shared.stats,
                &mut shared.budget,
            );
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
        if self.acceptor.take_requeue() {
            self.accept_all();
        }
    }

    // ----- connections -----------------------------------------------------

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
        let allowance = self.read_allowance(key);
        if self.gate_visit(key, allowance, ready.read) {
            // Unpaused: input that waited meanwhile raised no new edge.
            ready.read = true;
        }
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        self.shared.budget.spend_visit();
        self.turn.visit();
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
}

/// Whether `run` must return right away: the verdict of a turn, and of
/// dispatching one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Go on: poll again.
    No,
    /// Return now: aborted, or the drain is done.
    Now,
}

/// Reads an event's token and readiness. Errors and hang-ups count as both
/// readable and writable: the next read or write reports what happened.
fn readiness(e: &Event) -> (Token, Ready) {
    let read = e.is_readable() || e.is_read_closed() || e.is_error();
    let write = e.is_writable() || e.is_write_closed() || e.is_error();
    (e.token(), Ready { read, write })
}

#[cfg(test)]
mod tests;
