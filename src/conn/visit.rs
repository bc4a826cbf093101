//! A visit: what a connection does when the reactor serves its readiness.
//! READABLE runs the read loop (each read handed to the handler, which
//! usually writes its reply straight back), WRITABLE flushes what is queued;
//! each does a bounded share of work and returns the readiness it did not
//! use up. [`Conn::interest`] then says what to register with the poller.
//!
//! Why WRITABLE only while output is queued: a socket with room in its send
//! buffer is writable nearly all the time. Under level-triggered polling a
//! permanent WRITABLE interest would report every connection on every
//! `poll`: a wakeup per turn for each of them, a busy loop. mio is
//! edge-triggered (`EPOLLET`), so it would not spin, but it would still
//! cost: registering a writable socket for `EPOLLOUT` raises an event at
//! once, and every later event of the socket (new input) reports the whole
//! current readiness, so it would carry "writable" too, each one a
//! WRITABLE visit that finds nothing to send. Write-first makes output that
//! waits rare (a short write), so the interest is added then and dropped
//! when the buffer drains: two `epoll_ctl` calls per episode of a full
//! socket, none for a connection whose replies fit.

use std::io::{self, Read};

use log::{debug, trace};
use mio::Interest;

use super::flags::Flag;
use super::input::Input;
use super::{Conn, Ctx, StreamSocket};
use crate::output::sink::Sink;
use crate::protocol::{Flow, MoreOutput};
use crate::ready::Ready;
use crate::stats;

/// Reads per visit before yielding to other connections: with the 64 KiB
/// scratch buffer, 128 KiB. Enough to amortise the wakeup, small enough that
/// a bulk sender's visit is a fraction of a turn: the turn's budget
/// (`budget.rs`) stops a batch, this stops one connection within it (both
/// chosen from the same measurement). A connection that hits the cap is
/// queued again by the reactor, because edge-triggered readiness will not
/// report it again.
pub(super) const MAX_READS_PER_VISIT: usize = 2;

/// Bytes one visit may write from the pending buffer (on WRITABLE or a
/// chat handoff): the same share as reads. A flush stopped here, with the
/// socket perhaps still writable, is queued again like a capped read.
pub(super) const MAX_FLUSH_PER_VISIT: usize = 128 * 1024;

/// On Linux, epoll queues a fresh edge for every arrival of new bytes on a
/// stream socket, so a read that returned fewer bytes than asked proves the
/// receive queue was empty: later bytes will wake us again. Stopping there
/// saves the extra read that would only return `WouldBlock`, one of three
/// syscalls per echoed message (epoll(7), Q&A 9; tokio does the same).
/// Elsewhere we read until `WouldBlock`, as edge-triggered readiness demands.
pub(super) const SHORT_READ_MEANS_DRAINED: bool =
    cfg!(any(target_os = "linux", target_os = "android"));

impl<S: Read + Sink + StreamSocket> Conn<S> {
    /// READABLE: read until the socket is drained (see
    /// `SHORT_READ_MEANS_DRAINED`) or this visit's share is used up, handing
    /// each read to the handler, which usually writes its reply straight
    /// back. Returns the readiness left: `read` when it stopped with input
    /// maybe left (the cap, the turn's budget, the memory budget, a handler
    /// that wants no input until its last message is out), `write` when a
    /// streaming handler yielded (see `Conn::yielded`). No new edge will
    /// come for either, so the reactor must queue the connection again.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> Ready {
        if self.waits_to_read() {
            // Not reading, we learn of a reset only by asking (this event
            // may be it), and of a paused input's end only from its FIN's
            // event (`note_read_closed`).
            self.check_error(ctx);
            self.end_paused_input(ctx);
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
            trace!("read id={} n={n}", self.id);
            stats::add(&ctx.stats.bytes_in, n as u64);
            ctx.budget.spend_bytes(n);
            if self.input.to_handler() {
                allowance = allowance.saturating_sub(n);
                self.handle(n, ctx);
            }
            if n < want && SHORT_READ_MEANS_DRAINED && !self.flags.has(Flag::FinQueued) {
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

    /// The event says the peer half-closed (read-closed): the next
    /// `on_readable` reads on past a short read until it sees the EOF.
    pub fn note_read_closed(&mut self) {
        self.flags.set(Flag::FinQueued, true);
    }

    /// The interest to register now, or `None` when the connection waits for
    /// nothing (it is about to close).
    pub fn interest(&self) -> Option<Interest> {
        if self.close.is_some() {
            return None;
        }
        let read = self.can_read();
        let write = !self.out.is_empty() || self.handler.more_output() == MoreOutput::WhenWritable;
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
            // costs, and a paused peer's window soon closes. It also
            // serves a paused connection whose peer took the replies it
            // was owed: the switch from WRITABLE to READABLE re-arms the
            // registration, and input already waiting (its FIN too)
            // raises an event at once, so the budget's gate sees it hold
            // little and lets it read, though nothing new arrives.
            // The same for a chat member whose last message is still on
            // its way through the room: under connect-and-reset churn, a
            // newcomer's reset is seen at once, before its join notice went
            // out, and then nobody is told of either (see `reactor/room.rs`).
            (false, false) if self.waits_to_read() => Some(Interest::READABLE),
            (false, false) => None,
        }
    }

    /// A streaming handler (files) stopped at its per-call cap with output
    /// still to produce but nothing queued: no WRITABLE edge will come for an
    /// empty buffer, so the reactor must requeue us, after serving others.
    pub(super) fn yielded(&self) -> bool {
        self.close.is_none() && self.out.is_empty() && self.handler.more_output() == MoreOutput::Now
    }

    /// How many bytes the next read may take: the scratch buffer, the
    /// handler's limit, the memory allowance, and at shutdown what is left
    /// of the held input. 0 when the allowance is used up.
    fn read_size(&self, scratch: usize, allowance: usize) -> usize {
        if self.input.to_handler() {
            let limit = scratch.min(self.handler.read_limit(allowance));
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
        if self.input == Input::Discard {
            // The input held at shutdown ran out (or the handler closed):
            // what it left unfinished never will be.
            self.end_input_short(0, ctx);
        }
        if !self.flags.has(Flag::Paused) && self.out.len() >= ctx.max_pending {
            // The peer is not reading what we send. Stop reading it, so its
            // bytes wait in the kernel (and its TCP window closes) instead of
            // in our memory.
            debug!(
                "backpressure pause id={} peer={} pending={}",
                self.id,
                self.peer(),
                self.out.len()
            );
            stats::add(&ctx.stats.backpressure_pauses, 1);
            self.flags.set(Flag::Paused, true);
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>) {
        trace!("eof id={}", self.id);
        if self.input == Input::Open {
            self.run_handler(ctx, |p, _, out| (p.on_eof(out), ()));
        }
        self.input = Input::Eof;
    }
}
