//! THE event loop: one thread, one `mio::Poll`, one `match` on the token.
//!
//! Each turn of the loop: compute how long we may sleep (until the next timer,
//! or not at all if work was requeued), `poll`, dispatch every event, then, at
//! a safe point after the batch, close the connections that asked to be
//! closed, fire due timers, and check the shutdown drain.
//!
//! Tokens: a few fixed ones below `FIRST_CONN` for the listener, the UDP
//! socket, signals and the waker; every other token is a slab key plus
//! `FIRST_CONN`, so the two ranges never collide.
//!
//! This file holds the loop, dispatch and the connection bookkeeping;
//! `accept.rs` the listener's states and limits, `deadlines.rs` what bounds
//! the poll timeout (idle timers, back-off, stats), `drain.rs` the shutdown.

use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, trace, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::conn::{CloseReason, Conn, Ctx};
use crate::error::Error;
use crate::server::Shard;
use crate::shutdown::ShutdownHandle;
use crate::stats::{self, Counters, Stats};
use crate::timer::Timers;
use crate::udp::Udp;

mod accept;
mod deadlines;
mod drain;

use accept::AcceptState;
use drain::Exit;

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

/// A connection in the slab, with the interest registered for it (so we call
/// `reregister` only when it changes) and the earliest timer entry it has.
struct Slot {
    conn: Conn<TcpStream>,
    registered: Option<Interest>,
    timer: Option<Instant>,
}

/// What every connection call borrows from the reactor, kept apart from the
/// slab so both can be borrowed at once.
struct Shared {
    /// The one read buffer (`SCRATCH_SIZE`) every socket reads into; its
    /// contents mean nothing between calls.
    scratch: Box<[u8]>,
    /// Chat lines one connection produced, waiting to be handed to the
    /// others. Empty between connection calls: `after_conn_io` delivers them
    /// right away, and a sender stops reading after each read that produced
    /// some, so at most one read's worth of lines is ever here.
    broadcasts: Vec<Rc<[u8]>>,
    /// The counters, shared with `Stats` handles on other threads.
    stats: std::sync::Arc<Counters>,
    /// `--max-pending`, and half of it (see `Config::low_water`).
    max_pending: usize,
    low_water: usize,
}

impl Shared {
    fn ctx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            scratch: &mut self.scratch,
            broadcasts: &mut self.broadcasts,
            stats: &self.stats,
            now,
            max_pending: self.max_pending,
            low_water: self.low_water,
        }
    }
}

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
    /// The UDP socket (token `UDP`) and its bounded reply queue.
    udp: Option<Udp>,
    /// SIGINT/SIGTERM as events (token `SIGNALS`), when `handle_signals`.
    signals: Option<Signals>,
    /// Its waker fires token `WAKER`; its flag says shutdown was asked for.
    shutdown: ShutdownHandle,
    /// Open connections. A connection's token is its key + `FIRST_CONN`;
    /// keys are reused, so anything remembered across turns also keeps the
    /// connection's `id`.
    conns: Slab<Slot>,
    /// The last connection id handed out; ids are never reused.
    next_id: u64,
    shared: Shared,
    /// Idle and linger deadlines (see `timer.rs`); the earliest one bounds
    /// the poll timeout.
    timers: Timers,
    /// Connections (slab key, id) to close after the current batch.
    to_close: Vec<(usize, u64)>,
    /// Connections (slab key, id) that stopped with work left and no
    /// readiness edge to come for it: reads that hit the per-event cap, a
    /// chat sender whose lines went to the room first, a file body that
    /// yielded, input to discard at shutdown. Served again next turn without
    /// sleeping. The id tells a reused slab key from the connection queued.
    requeue: Vec<(usize, u64)>,
    /// The UDP socket stopped at its per-event cap; serve it next turn.
    udp_requeue: bool,
    /// `Some(deadline)` once shutdown began.
    draining: Option<Instant>,
    /// During a drain: some connection sent everything but the peer has not
    /// acknowledged it all yet.
    drain_waiting: bool,
    /// When to log the counters next (`--stats-interval`).
    next_stats: Option<Instant>,
    config: Config,
    /// `--root`, canonical, shared with every files-mode handler.
    root: Option<Rc<Path>>,
    /// The time read once after each `poll`: one clock read per batch.
    now: Instant,
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
        // Signals go to one reactor, which passes them on to the others.
        let signals = if config.handle_signals && index == 0 {
            let mut s = Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
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
            udp,
            signals,
            shutdown: shutdown.clone(),
            conns: Slab::new(),
            next_id: 0,
            shared: Shared {
                scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
                broadcasts: Vec::new(),
                stats: stats.0.clone(),
                max_pending: config.max_pending,
                low_water: config.low_water(),
            },
            timers: Timers::new(),
            to_close: Vec::new(),
            requeue: Vec::new(),
            udp_requeue: false,
            draining: None,
            drain_waiting: false,
            next_stats: stats_interval.map(|d| now + d),
            root: root.map(Rc::from),
            config,
            now,
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
            // Take the events out so dispatch may borrow `self` mutably; an
            // empty `Events` does not allocate, and the buffer goes back after.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in events.iter() {
                let (token, readable, writable) = readiness(event);
                if event.is_read_closed() {
                    self.note_read_closed(token);
                }
                if self.dispatch(token, readable, writable) == Exit::Now {
                    self.finish();
                    return Ok(());
                }
            }
            self.events = events;
            self.serve_requeued();
            self.close_batch();
            self.fire_timers();
            self.log_stats();
            if self.drain_done() {
                self.finish();
                return Ok(());
            }
        }
    }

    /// One event, one call.
    fn dispatch(&mut self, token: Token, readable: bool, writable: bool) -> Exit {
        match token {
            LISTENER => self.accept_all(),
            UDP => self.udp_event(readable, writable),
            SIGNALS => return self.on_signals(),
            WAKER => {
                if self.shutdown.is_aborted() {
                    return Exit::Now;
                }
                if self.shutdown.is_requested() {
                    self.begin_shutdown();
                }
            }
            // Every other token is a slab key offset by FIRST_CONN.
            Token(t) => match t.checked_sub(FIRST_CONN) {
                Some(key) => self.conn_event(key, readable, writable),
                None => trace!("event for unknown token={t}"),
            },
        }
        Exit::No
    }

    // ----- connections -----------------------------------------------------

    fn conn_event(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(slot) = self.conns.get_mut(key) else {
            // The connection closed earlier (an event for a vacant key is
            // spurious, and harmless).
            trace!("event for vacant token={}", key + FIRST_CONN);
            return;
        };
        if slot.conn.close_reason().is_some() {
            return;
        }
        let mut ctx = self.shared.ctx(self.now);
        let mut again = false;
        if writable {
            again |= slot.conn.on_writable(&mut ctx);
        }
        if readable {
            again |= slot.conn.on_readable(&mut ctx);
        }
        if again {
            self.requeue.push((key, slot.conn.id));
        }
        self.after_conn_io(key);
    }

    /// The peer's FIN is already queued on this connection: tell it, so its
    /// read loop does not stop at a short read before the EOF (no new edge
    /// would come for it).
    fn note_read_closed(&mut self, token: Token) {
        if let Some(slot) = token
            .0
            .checked_sub(FIRST_CONN)
            .and_then(|k| self.conns.get_mut(k))
        {
            slot.conn.note_read_closed();
        }
    }

    /// Serves connections (and the UDP socket) that stopped at the fairness cap.
    fn serve_requeued(&mut self) {
        for (key, id) in std::mem::take(&mut self.requeue) {
            if self.conns.get(key).is_some_and(|s| s.conn.id == id) {
                self.conn_event(key, true, false);
            }
        }
        if std::mem::take(&mut self.udp_requeue) {
            self.udp_event(true, false);
        }
    }

    /// After a connection did IO: deliver its broadcasts, sync its interest
    /// with what it needs, keep its timer, and queue it for closing if done.
    fn after_conn_io(&mut self, key: usize) {
        if !self.shared.broadcasts.is_empty() {
            self.deliver_broadcasts(Some(key));
        }
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(reason) = slot.conn.close_reason() {
            trace!("closing token={} reason={reason:?}", key + FIRST_CONN);
            self.to_close.push((key, slot.conn.id));
            return;
        }
        let wanted = slot.conn.interest();
        if wanted != slot.registered {
            let token = Token(key + FIRST_CONN);
            let registry = self.poll.registry();
            let result = match (slot.registered, wanted) {
                (None, Some(i)) => registry.register(&mut slot.conn.socket, token, i),
                (Some(_), Some(i)) => registry.reregister(&mut slot.conn.socket, token, i),
                (Some(_), None) => registry.deregister(&mut slot.conn.socket),
                (None, None) => Ok(()),
            };
            trace!("interest token={} {:?}", token.0, wanted);
            match result {
                Ok(()) => slot.registered = wanted,
                Err(e) => {
                    warn!("register token={} error={e}", token.0);
                    slot.conn.set_close(CloseReason::Error);
                    self.to_close.push((key, slot.conn.id));
                    return;
                }
            }
        }
        // Lazy timers: only schedule when the deadline moved *earlier* than
        // the entry already queued (see timer.rs).
        if let Some((at, _)) = slot.conn.deadline(self.config.idle_timeout) {
            if slot.timer.is_none_or(|t| at < t) {
                self.timers.schedule(at, key, slot.conn.id);
                slot.timer = Some(at);
            }
        }
    }

    /// Hands every queued broadcast to every connection except `from`. One
    /// `Rc` is shared by all recipients: no copy per member.
    fn deliver_broadcasts(&mut self, from: Option<usize>) {
        let messages = std::mem::take(&mut self.shared.broadcasts);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys.into_iter().filter(|&k| Some(k) != from) {
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            // A member already closing was queued for it when it was marked.
            if slot.conn.close_reason().is_some() {
                continue;
            }
            if slot.conn.deliver(&messages, &mut self.shared.ctx(self.now)) {
                self.requeue.push((key, slot.conn.id));
            }
            // Recipients do not broadcast on delivery, so this cannot recurse.
            self.after_conn_io(key);
        }
    }

    /// Closes what the batch marked, at a point where no event still refers
    /// to those keys. A chat leave notice may mark more; loop until none.
    fn close_batch(&mut self) {
        while let Some((key, id)) = self.to_close.pop() {
            if self.conns.get(key).is_none_or(|s| s.conn.id != id) {
                continue; // already closed (marked twice)
            }
            let mut slot = self.conns.remove(key);
            let reason = slot.conn.close_reason().unwrap_or(CloseReason::Done);
            if slot.registered.is_some() {
                if let Err(e) = self.poll.registry().deregister(&mut slot.conn.socket) {
                    trace!("deregister token={} error={e}", key + FIRST_CONN);
                }
            }
            debug!(
                "close token={} peer={} reason={reason:?}",
                key + FIRST_CONN,
                slot.conn.peer
            );
            stats::add(&self.shared.stats.closed, 1);
            stats::sub(&self.shared.stats.active, 1);
            if let Some(msg) = slot.conn.on_close() {
                self.shared.broadcasts.push(msg);
                self.deliver_broadcasts(None);
            }
            // Dropping the socket closes it.
        }
        self.compact_timers();
        if self.conns.len() < self.config.max_conns - self.config.max_conns / 10 {
            self.full_logged = false;
        }
        if self.accept == AcceptState::Full && self.conns.len() < self.config.max_conns {
            self.resume_accepting();
        }
    }

    // ----- UDP -------------------------------------------------------------

    fn udp_event(&mut self, readable: bool, writable: bool) {
        let Some(udp) = self.udp.as_mut() else {
            return;
        };
        let before = udp.interest();
        if writable {
            udp.on_writable(&self.shared.stats);
        }
        if readable && self.draining.is_none() {
            self.udp_requeue = udp.on_readable(&mut self.shared.scratch, &self.shared.stats);
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
fn readiness(e: &Event) -> (Token, bool, bool) {
    let readable = e.is_readable() || e.is_read_closed() || e.is_error();
    let writable = e.is_writable() || e.is_write_closed() || e.is_error();
    (e.token(), readable, writable)
}
