//! One TCP connection: its socket, the bytes it still owes, and its state.
//!
//! The reactor *visits* a connection when mio reported it ready (or when it
//! was left with work last turn): [`Conn::on_readable`] and
//! [`Conn::on_writable`] do a bounded share of work and return the
//! `Ready` they did not use up, which the reactor queues again. Then it
//! asks [`Conn::interest`] what to register next and [`Conn::close_reason`]
//! whether to close it after the event batch. All socket IO for a
//! connection happens here; what the bytes *mean* is the protocol handler's
//! business (`protocol/`), and how bytes reach the socket is `output.rs`'s.
//!
//! Idle: a connection is idle when no bytes moved either way, nothing read
//! and nothing written, for `--idle-timeout`. Reads count in the read loop;
//! every write goes through an `Output`, whose byte count `run_handler`
//! reads back, so replies, flushes, chat deliveries and file bodies all
//! count in one place. A readiness event alone does not. And before an
//! idle deadline closes it, the kernel's own sending counts
//! ([`Conn::note_kernel_sent`]): a slow reader drains our socket buffer
//! long after our last write.
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
//! Also here: `conn/visit.rs` (READABLE, WRITABLE and the interest to
//! register), `conn/input.rs` (the input's states), `conn/room.rs` (a chat
//! member receiving the room's messages), `conn/shutdown.rs` (a connection
//! during the drain), `conn/ending.rs` (input known to end before what the
//! handler holds can complete), `conn/ctx.rs` (what a visit borrows),
//! `conn/flags.rs` (its yes/no state in one byte), `conn/socket.rs` (the
//! socket trait).

use std::io::{self, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::debug;

use crate::buffer::OutBuf;
use crate::output::sink::Sink;
use crate::output::Output;
use crate::protocol::{Flow, Handler, MoreOutput};
use crate::stamp::Stamp;
use crate::stats;

mod ctx;
mod ending;
mod flags;
mod input;
mod room;
mod shutdown;
mod socket;
mod visit;

pub use ctx::Ctx;
use flags::{Flag, Flags};
use input::Input;
pub use socket::{Peer, StreamSocket};
#[cfg(test)]
use visit::{MAX_FLUSH_PER_VISIT, MAX_READS_PER_VISIT, SHORT_READ_MEANS_DRAINED};

/// How long a connection we are closing may keep sending us input to discard
/// after our FIN, before we close it anyway.
pub const LINGER: Duration = Duration::from_secs(2);

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
    /// A chat member whose unread output exceeded `max_pending` (more than
    /// it; exactly `max_pending` is kept).
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
    /// Unique for the reactor's lifetime: tells a stale timer entry for a
    /// reused slab slot from one for this connection, and names the
    /// connection in log lines (`id=`), which the reactor's `open` line
    /// pairs with the peer's address (see `Peer` for why that is needed).
    pub id: u64,
    /// Until our FIN: the last time bytes moved either way, that is, a read
    /// returned bytes (or the peer's EOF), or the socket took bytes we
    /// wrote, whichever call wrote them (a reply, a queued flush, a chat
    /// delivery, a file body). A readiness event alone is not activity: a
    /// spurious WRITABLE moves nothing. The idle timer compares to it.
    /// Once `Flag::FinSent`: when we sent FIN, which starts the linger time; the
    /// idle rule is over then, so one field serves both (see `deadline`).
    last_active: Stamp,
    /// Bytes owed to the peer that the socket would not take yet. Empty (and
    /// unallocated) for an idle connection.
    out: OutBuf,
    /// The mode's handler: what the bytes mean (`protocol/`). Boxed: a
    /// zero-sized handler (echo) allocates nothing, and a mode's state lives
    /// behind the box instead of in every slab entry.
    handler: Box<dyn Handler>,
    input: Input,
    /// Paused (backpressure, memory budget), FIN sent, FIN queued: see
    /// `conn/flags.rs`.
    flags: Flags,
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
            last_active: Stamp::new(ctx.now),
            out: OutBuf::new(),
            handler,
            input: Input::Open,
            // Its first deadline needs a timer entry.
            flags: Flags::with(Flag::NewDeadline),
            close: None,
        };
        conn.run_handler(ctx, |p, _, out| (p.on_open(out), ()));
        conn.progress(ctx);
        conn
    }

    /// The peer's address, looked up when displayed (for log lines); `?`
    /// once the connection is reset or closed (see `Peer`).
    pub fn peer(&self) -> Peer<'_, S> {
        Peer(&self.socket)
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
        let since = self.last_active.instant();
        if self.flags.has(Flag::FinSent) {
            Some((since + LINGER, CloseReason::Timeout))
        } else {
            idle.map(|d| (since + d, CloseReason::Idle))
        }
    }

    /// The deadline to queue a timer entry for, once, when it moved
    /// earlier than any entry queued for it before (at open, and when our
    /// FIN starts the linger time). Activity only moves the deadline later,
    /// which needs no new entry: the old one comes due, finds the connection
    /// active since, and is queued again at the new deadline. So the timer
    /// heap is touched per idle period, not per message, and the reactor
    /// keeps no per-connection record of what it queued.
    pub fn take_new_deadline(&mut self, idle: Option<Duration>) -> Option<Instant> {
        if !self.flags.has(Flag::NewDeadline) {
            return None;
        }
        self.flags.set(Flag::NewDeadline, false);
        self.deadline(idle).map(|(at, _)| at)
    }

    /// Called just before the reactor closes the connection. Closed for lack
    /// of progress (idle, or the linger or drain time ran out) while still
    /// owing bytes, in our buffer or unacknowledged in the kernel's, the
    /// peer is not taking them: a FIN would queue behind them and the
    /// kernel would hold them (up to the send buffer, megabytes) while it
    /// retries for minutes. A reset frees them at once.
    pub fn reset_if_stalled(&self) {
        let stalled = matches!(self.close, Some(CloseReason::Idle | CloseReason::Timeout));
        if stalled && (self.has_pending() || self.socket.unacked() > 0) {
            if let Err(e) = self.socket.reset_on_close() {
                debug!("reset_on_close id={} error={e}", self.id);
            }
        }
    }

    /// True while the connection still owes output (for the drain at shutdown).
    pub fn has_pending(&self) -> bool {
        !self.out.is_empty() || self.handler.more_output() != MoreOutput::Nothing
    }

    /// Bytes owed to the peer that wait in our output buffer.
    pub fn pending_bytes(&self) -> usize {
        self.out.len()
    }

    /// True while reading is paused, by backpressure or by the memory budget.
    pub fn is_paused(&self) -> bool {
        self.flags.has(Flag::Paused) || self.flags.has(Flag::MemoryPaused)
    }

    /// Bytes this connection holds in memory for its peer: unsent output
    /// and the handler's partial input. The memory budget adds these up.
    pub fn held(&self) -> usize {
        self.out.len() + self.handler.held()
    }

    /// The fewest input bytes the handler still needs before what it holds
    /// becomes a reply (the rest of a partial frame, see
    /// `Handler::unfinished`); 0 once no more input will reach it. What the
    /// memory budget's overdraft lets a paused holder read (`memory.rs`).
    pub fn unfinished(&self) -> usize {
        if self.close.is_none() && self.input.to_handler() {
            self.handler.unfinished()
        } else {
            0
        }
    }

    /// False only if the kernel is known to hold no input for us now (a
    /// platform that cannot tell says true). The memory budget's overdraft
    /// goes only to a paused holder that can use it at once: one with
    /// nothing to read would hold it, and keep everyone behind it waiting,
    /// for the whole stall time, turn after turn (`reactor/overdraft.rs`).
    pub fn has_input_waiting(&self) -> bool {
        self.socket.queued_input().is_none_or(|n| n > 0)
    }

    /// When bytes last moved either way (or we sent FIN): how the memory
    /// budget's overdraft tells a holder that stalled.
    pub fn last_moved(&self) -> Instant {
        self.last_active.instant()
    }

    /// Stops (or resumes) reading for the memory budget. Returns true if
    /// that changed whether the connection reads.
    pub fn set_memory_paused(&mut self, paused: bool) -> bool {
        let before = self.can_read();
        self.flags.set(Flag::MemoryPaused, paused);
        before != self.can_read()
    }

    /// True while the memory budget keeps this connection from reading.
    pub fn memory_paused(&self) -> bool {
        self.flags.has(Flag::MemoryPaused)
    }

    /// True while reading waits for something other than the peer: the
    /// memory budget, or a handler that takes no input until its last
    /// message left through the room and has nothing else to do. Such a
    /// connection stays registered for READABLE, and an event then means
    /// a reset is worth checking for (`on_readable`).
    fn waits_to_read(&self) -> bool {
        let waits_for_room = self.input.to_handler()
            && !self.handler.wants_input()
            && self.handler.more_output() == MoreOutput::Nothing;
        self.close.is_none() && (self.flags.has(Flag::MemoryPaused) || waits_for_room)
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
                !self.flags.has(Flag::Paused)
                    && !self.flags.has(Flag::MemoryPaused)
                    && self.handler.wants_input()
            }
        }
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

    /// At an idle deadline: bytes may have moved without a write of ours.
    /// Our socket buffer grows to megabytes, so for a peer that reads
    /// steadily but slowly, the kernel keeps sending it what we wrote
    /// long ago while our next write waits seconds for room (WRITABLE
    /// comes once a third of the buffer is free). Those bytes moved too:
    /// the last time the kernel sent data counts as activity. A peer that
    /// reads nothing gets no data (only window probes), so it still idles.
    pub fn note_kernel_sent(&mut self, now: Instant) {
        let Some(ago) = self.socket.since_data_sent() else {
            return;
        };
        // The kernel counts back from the real clock at this call, not
        // from the turn's `now` (which tests set to virtual times).
        if let Some(at) = Instant::now().checked_sub(ago) {
            let at = at.min(now);
            if Stamp::new(at) > self.last_active {
                self.touch(at);
            }
        }
    }

    /// Bytes moved at `now`: the connection is not idle (see `last_active`).
    /// After our FIN the field holds the FIN's time, which activity must
    /// not move: the linger time is counted from it.
    fn touch(&mut self, now: Instant) {
        if !self.flags.has(Flag::FinSent) {
            self.last_active = Stamp::new(now);
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
        debug!("io error id={} peer={} error={e}", self.id, self.peer());
        self.close.get_or_insert(reason);
    }

    /// After any IO: refill from a streaming handler, release backpressure, and
    /// once input is over and nothing more is owed, send FIN (and close, if
    /// the peer's EOF already came).
    fn progress(&mut self, ctx: &mut Ctx<'_>) {
        if self.close.is_some() {
            return;
        }
        if self.out.is_empty() && self.handler.more_output() != MoreOutput::Nothing {
            self.run_handler(ctx, |p, scratch, out| (p.on_drained(scratch, out), ()));
        }
        if self.flags.has(Flag::Paused) && self.out.len() <= ctx.low_water {
            self.flags.set(Flag::Paused, false);
        }
        let finished = self.input.is_over() && !self.has_pending();
        if finished && !self.flags.has(Flag::FinSent) && self.close.is_none() && !ctx.hold_fin {
            // Everything owed is out: tell the peer we are done sending.
            if let Err(e) = self.socket.shutdown_write() {
                self.fail(e, ctx);
                return;
            }
            self.flags.set(Flag::FinSent, true);
            self.last_active = Stamp::new(ctx.now); // the linger time starts
            self.flags.set(Flag::NewDeadline, true);
        }
        if finished && self.input == Input::Eof && self.flags.has(Flag::FinSent) {
            self.close.get_or_insert(CloseReason::Done);
        }
    }
}

#[cfg(test)]
mod tests;
