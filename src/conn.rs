//! One TCP connection: its socket, the bytes it still owes, and its state.
//!
//! The reactor *visits* a connection when mio reported it ready (or when it
//! was left with work last turn): [`Conn::on_readable`] and
//! [`Conn::on_writable`] do a bounded share of work and return the
//! [`Ready`] they did not use up, which the reactor queues again. Then it
//! asks [`Conn::interest`] what to register next and [`Conn::close_reason`]
//! whether to close it after the event batch. All socket IO for a
//! connection happens here; what the bytes *mean* is the protocol handler's
//! business (`protocol/`).
//!
//! The type is generic over the socket so unit tests drive it with a scripted
//! fake that returns short writes and `WouldBlock` on cue.
//!
//! Life of a connection: its input is open until the peer's EOF, a
//! handler's `Close` or shutdown (`conn/input.rs`); then it flushes what it
//! owes, sends FIN, and after a `Close` or shutdown reads and drops input
//! until the peer's EOF (or the linger time) before closing. Closing only
//! after the peer's EOF matters: closing a socket with unread input makes
//! the kernel send a reset, and a reset can destroy the error message we
//! just sent before the peer reads it.
//!
//! Also here: `conn/input.rs` (the input's states), `conn/room.rs` (a chat
//! member receiving the room's messages), `conn/shutdown.rs` (a connection
//! during the drain), `conn/ctx.rs` (what a visit borrows),
//! `conn/socket.rs` (the socket trait).

use std::io::{self, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::Interest;

use crate::buffer::OutBuf;
use crate::output::sink::Sink;
use crate::output::Output;
use crate::protocol::{Flow, Handler};
use crate::ready::Ready;
use crate::stats;

mod ctx;
mod input;
mod room;
mod shutdown;
mod socket;

pub use ctx::Ctx;
use input::Input;
pub use socket::{Peer, StreamSocket};

/// Reads per visit before yielding to other connections: with the 64 KiB
/// scratch buffer, 128 KiB. Enough to amortise the wakeup, small enough that
/// a bulk sender's visit is a fraction of a turn: the turn's budget
/// (`budget.rs`) stops a batch, this stops one connection within it (both
/// chosen from the same measurement). A connection that hits the cap is
/// queued again by the reactor, because edge-triggered readiness will not
/// report it again.
const MAX_READS_PER_VISIT: usize = 2;

/// Bytes one visit may write from the pending buffer (on WRITABLE or a
/// chat handoff): the same share as reads. A flush stopped here, with the
/// socket perhaps still writable, is queued again like a capped read.
const MAX_FLUSH_PER_VISIT: usize = 128 * 1024;

/// How long a connection we are closing may keep sending us input to discard
/// after our FIN, before we close it anyway.
pub const LINGER: Duration = Duration::from_secs(2);

/// On Linux, epoll queues a fresh edge for every arrival of new bytes on a
/// stream socket, so a read that returned fewer bytes than asked proves the
/// receive queue was empty: later bytes will wake us again. Stopping there
/// saves the extra read that would only return `WouldBlock`, one of three
/// syscalls per echoed message (epoll(7), Q&A 9; tokio does the same).
/// Elsewhere we read until `WouldBlock`, as edge-triggered readiness demands.
const SHORT_READ_MEANS_DRAINED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Why a connection was (or will be) closed; logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Everything owed was sent after the peer's EOF (or our FIN was answered).
    Done,
    /// The peer reset the connection or the pipe broke.
    Reset,
    /// Another IO error.
    Error,
    /// No traffic for the idle timeout.
    Idle,
    /// The linger time after our FIN ran out, or the drain timeout did.
    Timeout,
    /// Graceful shutdown: everything owed was delivered.
    Shutdown,
    /// A chat member whose unread output passed `max_pending`.
    SlowConsumer,
}

/// One TCP connection: the common slab entry every connection pays for,
/// idle or not, so it holds only what every mode needs (see
/// `tests::an_idle_connection_fits_its_bound` for its size). A mode's own
/// state is behind `handler`, output behind `out`, and the peer's address
/// is asked of the socket when a log line needs it.
#[derive(Debug)]
pub struct Conn<S> {
    pub socket: S,
    /// Unique for the server's lifetime: tells a stale timer entry for a
    /// reused slab slot from one for this connection.
    pub id: u64,
    /// Until our FIN: the last time bytes moved either way, that is, a read
    /// returned bytes (or the peer's EOF), or the socket took bytes we
    /// wrote, whichever call wrote them (a reply, a queued flush, a chat
    /// delivery, a file body). A readiness event alone is not activity: a
    /// spurious WRITABLE moves nothing. The idle timer compares to it.
    /// Once `fin_sent`: when we sent FIN, which starts the linger time; the
    /// idle rule is over then, so one field serves both (see `deadline`).
    last_active: Instant,
    /// Bytes owed to the peer that the socket would not take yet. Empty (and
    /// unallocated) for an idle connection.
    out: OutBuf,
    /// The mode's handler: what the bytes mean (`protocol/`). Boxed: a
    /// zero-sized handler (echo) allocates nothing, and a mode's state lives
    /// behind the box instead of in every slab entry.
    handler: Box<dyn Handler>,
    input: Input,
    /// Reading is paused because `out` passed the high-water mark. Invariant:
    /// only set while `out.len() > low_water`.
    paused: bool,
    /// Reading is paused by the server-wide memory budget (`memory.rs`);
    /// the reactor clears it when the total falls back.
    memory_paused: bool,
    /// We sent FIN (at `last_active`): no more output will be produced.
    fin_sent: bool,
    /// An event reported the peer's FIN (EPOLLRDHUP) as already queued. The
    /// FIN raised its edge before our read, so no new edge will come for it:
    /// the short-read shortcut must not stop us before we read the EOF.
    fin_queued: bool,
    /// Set once the connection must close; the reactor closes it after the
    /// event batch, so no later event in the batch reaches a reused slot.
    close: Option<CloseReason>,
}

impl<S: Read + Sink + StreamSocket> Conn<S> {
    /// A new connection. Runs the handler's `on_open` (chat's join notice).
    pub fn new(socket: S, id: u64, handler: Box<dyn Handler>, ctx: &mut Ctx<'_>) -> Self {
        let mut conn = Conn {
            socket,
            id,
            last_active: ctx.now,
            out: OutBuf::new(),
            handler,
            input: Input::Open,
            paused: false,
            memory_paused: false,
            fin_sent: false,
            fin_queued: false,
            close: None,
        };
        conn.run_handler(ctx, |p, _, out| (p.on_open(out), ()));
        conn.progress(ctx);
        conn
    }

    /// READABLE: read until the socket is drained (see
    /// `SHORT_READ_MEANS_DRAINED`) or this visit's share is used up, handing
    /// each read to the handler, which usually writes its reply straight
    /// back. Returns the readiness left: `read` when it stopped with input
    /// maybe left (the cap, the turn's budget, the memory budget, a handler
    /// that wants no input until its last message is out), `write` when a
    /// streaming handler yielded (see `Conn::yielded`). No new edge will
    /// come for either, so the reactor must queue the connection again.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> Ready {
        if self.memory_paused && self.close.is_none() {
            self.check_error(ctx);
        }
        let mut reads = 0;
        let mut allowance = ctx.read_allowance;
        // True once we know the kernel holds nothing more for us right now.
        let mut drained = false;
        while self.can_read() {
            if reads == MAX_READS_PER_VISIT || (reads > 0 && ctx.budget.exhausted()) {
                break;
            }
            let want = self.read_size(ctx.scratch.len(), allowance);
            if want == 0 {
                break; // the memory budget's allowance is used up
            }
            reads += 1;
            let n = match self.socket.read(&mut ctx.scratch[..want]) {
                Ok(n) => n,
                // Drained: the next arrival raises a new edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                // A signal arrived before any byte was read: just retry.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(e, ctx);
                    break;
                }
            };
            // Input moved (or the peer's FIN arrived): not idle.
            self.touch(ctx.now);
            if n == 0 {
                self.on_eof(ctx);
                break;
            }
            trace!("read peer={} n={}", self.peer(), n);
            stats::add(&ctx.stats.bytes_in, n as u64);
            ctx.budget.spend_bytes(n);
            if self.input.to_handler() {
                allowance = allowance.saturating_sub(n);
                self.handle(n, ctx);
            }
            if n < want && SHORT_READ_MEANS_DRAINED && !self.fin_queued {
                drained = true;
                break;
            }
        }
        self.progress(ctx);
        Ready {
            read: !drained && self.can_read(),
            write: self.yielded(),
        }
    }

    /// WRITABLE: send what is queued (this visit's share of it). If that
    /// unblocked reading (backpressure released, a file body finished), read
    /// at once: bytes that arrived while we were not reading raised their
    /// edge back then, and it will not come again. Returns the readiness
    /// left, as `on_readable` does.
    pub fn on_writable(&mut self, ctx: &mut Ctx<'_>) -> Ready {
        let could_read = self.can_read();
        let more = self.run_handler(ctx, |_, _, out| {
            let more = out.flush(MAX_FLUSH_PER_VISIT);
            (Flow::Continue, more)
        });
        self.progress(ctx);
        let mut left = Ready {
            read: false,
            write: more,
        };
        if !could_read && self.can_read() {
            left |= self.on_readable(ctx);
        }
        left.write |= self.yielded();
        left
    }

    /// The peer's address, looked up when displayed (for log lines).
    pub fn peer(&self) -> Peer<'_, S> {
        Peer(&self.socket)
    }

    /// The event says the peer half-closed (read-closed): the next
    /// `on_readable` reads on past a short read until it sees the EOF.
    pub fn note_read_closed(&mut self) {
        self.fin_queued = true;
    }

    /// The interest to register now, or `None` when the connection waits for
    /// nothing (it is about to close).
    pub fn interest(&self) -> Option<Interest> {
        if self.close.is_some() {
            return None;
        }
        let read = self.can_read();
        let write = !self.out.is_empty() || self.handler.awaits_writable();
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            // Paused by the memory budget with nothing to send: stay
            // registered, so that a reset from the peer still raises an
            // event (`on_readable` then finds the error). Deregistered, a
            // dead connection kept its bytes counted until the idle
            // timeout, and with every big holder paused the total never
            // fell: the budget stayed engaged for minutes after the
            // clients left. An edge per arriving segment is all this
            // costs, and a paused peer's window soon closes.
            (false, false) if self.memory_paused => Some(Interest::READABLE),
            (false, false) => None,
        }
    }

    /// `Some` once the connection should be closed.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close
    }

    /// Forces a close (idle timeout, drain timeout).
    pub fn set_close(&mut self, reason: CloseReason) {
        self.close.get_or_insert(reason);
    }

    /// When the connection's timer should next fire, and why it would close
    /// then: the idle deadline (`idle` after bytes last moved either way,
    /// see `last_active`), or the end of the linger time once we sent FIN.
    pub fn deadline(&self, idle: Option<Duration>) -> Option<(Instant, CloseReason)> {
        if self.fin_sent {
            Some((self.last_active + LINGER, CloseReason::Timeout))
        } else {
            idle.map(|d| (self.last_active + d, CloseReason::Idle))
        }
    }

    /// True while the connection still owes output (for the drain at shutdown).
    pub fn has_pending(&self) -> bool {
        !self.out.is_empty() || self.handler.has_more_output()
    }

    /// Bytes owed to the peer that wait in our output buffer.
    pub fn pending_bytes(&self) -> usize {
        self.out.len()
    }

    /// True while reading is paused, by backpressure or by the memory budget.
    pub fn is_paused(&self) -> bool {
        self.paused || self.memory_paused
    }

    /// Bytes this connection holds in memory for its peer: unsent output
    /// and the handler's partial input. The memory budget adds these up.
    pub fn held(&self) -> usize {
        self.out.len() + self.handler.held()
    }

    /// Stops (or resumes) reading for the memory budget. Returns true if
    /// that changed whether the connection reads.
    pub fn set_memory_paused(&mut self, paused: bool) -> bool {
        let before = self.can_read();
        self.memory_paused = paused;
        before != self.can_read()
    }

    /// True while the memory budget keeps this connection from reading.
    pub fn memory_paused(&self) -> bool {
        self.memory_paused
    }

    /// The handler's leave message, when the connection goes.
    pub fn on_close(&mut self) -> Option<Rc<[u8]>> {
        self.handler.on_close()
    }

    /// True when a read would be useful now.
    pub fn can_read(&self) -> bool {
        if self.close.is_some() {
            return false;
        }
        match self.input {
            Input::Eof => false,
            // Dropped bytes hold no memory and need no room.
            Input::Discard => true,
            Input::Open | Input::Held { .. } => {
                !self.paused && !self.memory_paused && self.handler.wants_input()
            }
        }
    }

    /// A streaming handler (files) stopped at its per-call cap with output
    /// still to produce but nothing queued: no WRITABLE edge will come for an
    /// empty buffer, so the reactor must requeue us, after serving others.
    fn yielded(&self) -> bool {
        self.close.is_none()
            && self.out.is_empty()
            && self.handler.has_more_output()
            && !self.handler.awaits_writable()
    }

    /// How many bytes the next read may take: the scratch buffer, the
    /// handler's limit, the memory allowance, and at shutdown what is left
    /// of the held input. 0 when the allowance is used up.
    fn read_size(&self, scratch: usize, allowance: usize) -> usize {
        if self.input.to_handler() {
            let allowance = self.handler.input_allowance(allowance);
            let limit = scratch.min(self.handler.read_limit()).min(allowance);
            self.input.read_size(limit)
        } else {
            scratch
        }
    }

    /// Hands `scratch[..n]` to the handler, then applies backpressure.
    fn handle(&mut self, n: usize, ctx: &mut Ctx<'_>) {
        self.input.consumed(n);
        self.run_handler(ctx, |p, scratch, out| {
            (p.on_data(&mut scratch[..n], out), ())
        });
        if !self.paused && self.out.len() >= ctx.max_pending {
            // The peer is not reading what we send. Stop reading it, so its
            // bytes wait in the kernel (and its TCP window closes) instead of
            // in our memory.
            debug!(
                "backpressure pause peer={} pending={}",
                self.peer(),
                self.out.len()
            );
            stats::add(&ctx.stats.backpressure_pauses, 1);
            self.paused = true;
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>) {
        trace!("eof peer={}", self.peer());
        if self.input == Input::Open {
            self.run_handler(ctx, |p, _, out| (p.on_eof(out), ()));
        }
        self.input = Input::Eof;
    }

    /// Runs a handler call with an `Output` over this connection; charges
    /// the bytes it wrote to the turn's budget and records its verdict and
    /// any write error. `f` gets the handler, the scratch buffer and the
    /// `Output`, and returns the verdict plus any value for the caller.
    fn run_handler<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        f: impl FnOnce(&mut dyn Handler, &mut [u8], &mut Output<'_>) -> (Flow, R),
    ) -> R {
        let mut out = Output::new(&mut self.socket, &mut self.out, ctx.room, ctx.stats);
        let (flow, r) = f(&mut *self.handler, ctx.scratch, &mut out);
        let done = out.finish();
        ctx.budget.spend_bytes(done.bytes);
        if done.bytes > 0 {
            // Every write goes through an `Output`, so this is the one place
            // where output counts as activity (see `last_active`).
            self.touch(ctx.now);
        }
        if let Some(e) = done.error {
            self.fail(e, ctx);
        }
        if flow == Flow::Close {
            self.input.close();
        }
        r
    }

    /// Bytes moved at `now`: the connection is not idle (see `last_active`).
    /// After our FIN the field holds the FIN's time, which activity must
    /// not move: the linger time is counted from it.
    fn touch(&mut self, now: Instant) {
        if !self.fin_sent {
            self.last_active = now;
        }
    }

    /// Closes the connection if its socket recorded an error (a reset).
    fn check_error(&mut self, ctx: &mut Ctx<'_>) {
        match self.socket.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => self.fail(e, ctx),
        }
    }

    /// Classifies an IO error and marks the connection for closing.
    fn fail(&mut self, e: io::Error, ctx: &mut Ctx<'_>) {
        let reason = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => {
                stats::add(&ctx.stats.resets, 1);
                CloseReason::Reset
            }
            _ => CloseReason::Error,
        };
        debug!("io error peer={} error={}", self.peer(), e);
        self.close.get_or_insert(reason);
    }

    /// After any IO: refill from a streaming handler, release backpressure, and
    /// once input is over and nothing more is owed, send FIN (and close, if
    /// the peer's EOF already came).
    fn progress(&mut self, ctx: &mut Ctx<'_>) {
        if self.close.is_some() {
            return;
        }
        if self.out.is_empty() && self.handler.has_more_output() {
            self.run_handler(ctx, |p, scratch, out| (p.on_drained(scratch, out), ()));
        }
        if self.paused && self.out.len() <= ctx.low_water {
            self.paused = false;
        }
        let finished = self.input.is_over() && !self.has_pending();
        if finished && !self.fin_sent && self.close.is_none() && !ctx.hold_fin {
            // Everything owed is out: tell the peer we are done sending.
            if let Err(e) = self.socket.shutdown_write() {
                self.fail(e, ctx);
                return;
            }
            self.fin_sent = true;
            self.last_active = ctx.now; // the linger time starts
        }
        if finished && self.input == Input::Eof && self.fin_sent {
            self.close.get_or_insert(CloseReason::Done);
        }
    }
}

#[cfg(test)]
mod tests;
