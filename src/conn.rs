//! One TCP connection: its socket, the bytes it still owes, and its state.
//!
//! The reactor calls [`Conn::on_readable`] and [`Conn::on_writable`] when mio
//! reports readiness, then asks [`Conn::interest`] what to register next and
//! [`Conn::close_reason`] whether to close it after the event batch. All
//! socket IO for a connection happens here; what the bytes *mean* is the
//! protocol handler's business (`protocol/`).
//!
//! The type is generic over the socket so unit tests drive it with a scripted
//! fake that returns short writes and `WouldBlock` on cue.
//!
//! Life of a connection:
//!
//! ```text
//!   Open ──EOF──────────────> Eof ──────┐  flush, then FIN, then close
//!     │                                  │
//!     └─handler Close / shutdown─> Discard  flush, then FIN, then read and
//!                                           drop input until the peer's EOF
//!                                           (or the linger time), then close
//! ```
//!
//! Closing only after the peer's EOF matters: closing a socket with unread
//! input makes the kernel send a reset, and a reset can destroy the error
//! message we just sent before the peer reads it.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::Interest;

use crate::buffer::OutBuf;
use crate::protocol::sink::Sink;
use crate::protocol::{Flow, Output, Protocol};
use crate::stats::{self, Counters};

/// Reads per readiness event before yielding to other connections. With a
/// 64 KiB scratch buffer that is 1 MiB: enough to amortise the wakeup, small
/// enough that one fast sender cannot starve the rest (Redis caps work per
/// event the same way). A connection that hits the cap is requeued by the
/// reactor, because edge-triggered readiness will not report it again.
const MAX_READS_PER_EVENT: usize = 16;

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

/// What a connection needs from its socket beyond `Read + Write`.
pub trait StreamSocket {
    /// Sends FIN while staying open for reading.
    fn shutdown_write(&self) -> io::Result<()>;

    /// Bytes the kernel holds that the peer has not acknowledged yet. Closing
    /// while the peer still sends us data makes the kernel answer with a
    /// reset, which throws these bytes away; so a graceful shutdown waits for
    /// zero. `0` where the platform cannot tell.
    fn unacked(&self) -> usize {
        0
    }
}

impl StreamSocket for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    #[cfg(target_os = "linux")]
    fn unacked(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int through the pointer,
        // which points at `n` for the duration of the call.
        let rc = unsafe { libc::ioctl(self.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc == 0 {
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }
}

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

/// Where the connection's input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Reading and handing bytes to the handler.
    Open,
    /// The peer sent EOF: nothing more will arrive.
    Eof,
    /// We are closing: bytes still arriving are read and dropped.
    Discard,
}

/// What a connection needs from the reactor for one call.
pub struct Ctx<'a> {
    /// The reactor-wide read buffer; its contents are garbage between calls.
    pub scratch: &'a mut [u8],
    /// Chat messages for every other connection, delivered after the call.
    pub broadcasts: &'a mut Vec<Rc<[u8]>>,
    pub stats: &'a Counters,
    /// The time at the top of this loop iteration (one clock read per batch).
    pub now: Instant,
    /// High-water mark: pending output at or past it pauses reading.
    pub max_pending: usize,
    /// Low-water mark: pending output at or below it resumes reading.
    pub low_water: usize,
}

/// One TCP connection.
#[derive(Debug)]
pub struct Conn<S> {
    pub socket: S,
    pub peer: SocketAddr,
    /// Unique for the server's lifetime: tells a stale timer entry for a
    /// reused slab slot from one for this connection.
    pub id: u64,
    /// Last time bytes moved either way; the idle timer compares to it.
    pub last_active: Instant,
    /// Bytes owed to the peer that the socket would not take yet. Empty (and
    /// unallocated) for an idle connection.
    out: OutBuf,
    proto: Protocol,
    input: Input,
    /// Reading is paused because `out` passed the high-water mark. Invariant:
    /// only set while `out.len() > low_water`.
    paused: bool,
    /// When we sent FIN; `Some` means no more output will be produced.
    fin_sent: Option<Instant>,
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
    pub fn new(socket: S, peer: SocketAddr, id: u64, proto: Protocol, ctx: &mut Ctx<'_>) -> Self {
        let mut conn = Conn {
            socket,
            peer,
            id,
            last_active: ctx.now,
            out: OutBuf::new(),
            proto,
            input: Input::Open,
            paused: false,
            fin_sent: None,
            fin_queued: false,
            close: None,
        };
        let mut out = Output::new(&mut conn.socket, &mut conn.out, ctx.broadcasts, ctx.stats);
        let flow = conn.proto.on_open(&mut out);
        let err = out.finish();
        conn.absorb(err, flow, ctx);
        conn.progress(ctx);
        conn
    }

    /// READABLE: read until the socket is drained (see
    /// `SHORT_READ_MEANS_DRAINED`), handing each read to the handler, which
    /// usually writes its reply straight back. Returns true when the
    /// per-event read cap stopped it with input maybe left, or when a
    /// streaming handler yielded (see `Conn::yielded`): the reactor must
    /// call again, since no new edge will come for either.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut budget = MAX_READS_PER_EVENT;
        // True once we know the kernel holds nothing more for us right now.
        let mut drained = false;
        while self.can_read() {
            // Per-event cap (fairness), and chat: hand this read's lines to
            // the room before reading more, so one fast sender's backlog is
            // delivered a read at a time instead of piling up in memory.
            if budget == 0 || !ctx.broadcasts.is_empty() {
                break;
            }
            budget -= 1;
            let n = match self.socket.read(ctx.scratch) {
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
            self.last_active = ctx.now;
            if n == 0 {
                self.on_eof(ctx);
                break;
            }
            trace!("read peer={} n={}", self.peer, n);
            stats::add(&ctx.stats.bytes_in, n as u64);
            if self.input == Input::Open {
                self.handle(n, ctx);
            }
            if n < ctx.scratch.len() && SHORT_READ_MEANS_DRAINED && !self.fin_queued {
                drained = true;
                break;
            }
        }
        self.progress(ctx);
        // We stopped with bytes perhaps still queued (the cap, the room, or a
        // handler that wanted no input until it answered) and may read now:
        // their edge has passed, so ask to be called again.
        (!drained && self.can_read()) || self.yielded()
    }

    /// WRITABLE: send what is queued. If that unblocked reading (backpressure
    /// released, a file body finished), read at once: bytes that arrived while
    /// we were not reading raised their edge back then, and it will not come
    /// again. Returns the same requeue flag as `on_readable`.
    pub fn on_writable(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let could_read = self.can_read();
        let mut out = Output::new(&mut self.socket, &mut self.out, ctx.broadcasts, ctx.stats);
        out.flush();
        let err = out.finish();
        self.absorb(err, Flow::Continue, ctx);
        self.last_active = ctx.now;
        self.progress(ctx);
        if !could_read && self.can_read() {
            return self.on_readable(ctx);
        }
        self.yielded()
    }

    /// The event says the peer half-closed (read-closed): the next
    /// `on_readable` reads on past a short read until it sees the EOF.
    pub fn note_read_closed(&mut self) {
        self.fin_queued = true;
    }

    /// Queues broadcast messages (chat) without copying them, then sends
    /// them in as few `writev` calls as the socket allows. A member whose
    /// unread output passes the high-water mark is dropped: one slow reader
    /// must not stall the room or grow without bound. Returns the same
    /// requeue flag as `on_readable`: flushing may release backpressure, and
    /// the bytes that arrived meanwhile raised their edge long ago.
    pub fn deliver(&mut self, messages: &[Rc<[u8]>], ctx: &mut Ctx<'_>) -> bool {
        if self.close.is_some() || self.fin_sent.is_some() {
            return false;
        }
        let could_read = self.can_read();
        let mut out = Output::new(&mut self.socket, &mut self.out, ctx.broadcasts, ctx.stats);
        for msg in messages {
            out.queue_shared(Rc::clone(msg));
        }
        out.flush();
        let err = out.finish();
        self.absorb(err, Flow::Continue, ctx);
        if self.close.is_none() && self.out.len() > ctx.max_pending {
            debug!(
                "slow consumer peer={} pending={}",
                self.peer,
                self.out.len()
            );
            stats::add(&ctx.stats.slow_consumers, 1);
            self.close = Some(CloseReason::SlowConsumer);
        }
        // The flush may also have sent the last bytes owed after the peer's
        // EOF: `progress` sends our FIN and closes, as WRITABLE would have.
        self.progress(ctx);
        !could_read && self.can_read()
    }

    /// Graceful shutdown: stop taking requests, finish what is owed, then close.
    /// Input already queued in the kernel is read and dropped now: closing a
    /// socket with unread bytes sends a reset, and a reset can destroy the
    /// output we are about to flush before the peer reads it. Returns the
    /// same requeue flag as `on_readable`.
    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.input == Input::Open {
            self.input = Input::Discard;
        }
        self.on_readable(ctx)
    }

    /// The interest to register now, or `None` when the connection waits for
    /// nothing (it is about to close).
    pub fn interest(&self) -> Option<Interest> {
        if self.close.is_some() {
            return None;
        }
        let read = self.can_read();
        let write = !self.out.is_empty() || self.proto.awaits_writable();
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
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
    /// then: the idle deadline, or the end of the linger time once we sent FIN.
    pub fn deadline(&self, idle: Option<Duration>) -> Option<(Instant, CloseReason)> {
        match self.fin_sent {
            Some(at) => Some((at + LINGER, CloseReason::Timeout)),
            None => idle.map(|d| (self.last_active + d, CloseReason::Idle)),
        }
    }

    /// True when the peer has received everything we sent: nothing queued
    /// here, nothing unacknowledged in the kernel.
    pub fn fully_delivered(&self) -> bool {
        !self.has_pending() && self.socket.unacked() == 0
    }

    /// True while the connection still owes output (for the drain at shutdown).
    pub fn has_pending(&self) -> bool {
        !self.out.is_empty() || self.proto.has_more_output()
    }

    /// The handler's leave message, when the connection goes.
    pub fn on_close(&mut self) -> Option<Rc<[u8]>> {
        self.proto.on_close()
    }

    /// A streaming handler (files) stopped at its per-call cap with output
    /// still to produce but nothing queued: no WRITABLE edge will come for an
    /// empty buffer, so the reactor must requeue us, after serving others.
    fn yielded(&self) -> bool {
        self.close.is_none()
            && self.out.is_empty()
            && self.proto.has_more_output()
            && !self.proto.awaits_writable()
    }

    /// True when a read would be useful now.
    fn can_read(&self) -> bool {
        if self.close.is_some() {
            return false;
        }
        match self.input {
            Input::Eof => false,
            Input::Discard => true,
            Input::Open => !self.paused && self.proto.wants_input(),
        }
    }

    /// Hands `scratch[..n]` to the handler, then applies backpressure.
    fn handle(&mut self, n: usize, ctx: &mut Ctx<'_>) {
        let mut out = Output::new(&mut self.socket, &mut self.out, ctx.broadcasts, ctx.stats);
        let flow = self.proto.on_data(&mut ctx.scratch[..n], &mut out);
        let err = out.finish();
        self.absorb(err, flow, ctx);
        if !self.paused && self.out.len() >= ctx.max_pending {
            // The peer is not reading what we send. Stop reading it, so its
            // bytes wait in the kernel (and its TCP window closes) instead of
            // in our memory.
            debug!(
                "backpressure pause peer={} pending={}",
                self.peer,
                self.out.len()
            );
            stats::add(&ctx.stats.backpressure_pauses, 1);
            self.paused = true;
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>) {
        trace!("eof peer={}", self.peer);
        if self.input == Input::Open {
            let mut out = Output::new(&mut self.socket, &mut self.out, ctx.broadcasts, ctx.stats);
            let flow = self.proto.on_eof(&mut out);
            let err = out.finish();
            self.absorb(err, flow, ctx);
        }
        self.input = Input::Eof;
    }

    /// Records a handler's verdict and any write error.
    fn absorb(&mut self, err: Option<io::Error>, flow: Flow, ctx: &mut Ctx<'_>) {
        if let Some(e) = err {
            self.fail(e, ctx);
        }
        if flow == Flow::Close && self.input == Input::Open {
            self.input = Input::Discard;
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
        debug!("io error peer={} error={}", self.peer, e);
        self.close.get_or_insert(reason);
    }

    /// After any IO: refill from a streaming handler, release backpressure, and
    /// once input is over and nothing more is owed, send FIN (and close, if
    /// the peer's EOF already came).
    fn progress(&mut self, ctx: &mut Ctx<'_>) {
        if self.close.is_some() {
            return;
        }
        if self.out.is_empty() && self.proto.has_more_output() {
            let mut out = Output::new(&mut self.socket, &mut self.out, ctx.broadcasts, ctx.stats);
            let flow = self.proto.on_drained(ctx.scratch, &mut out);
            let err = out.finish();
            self.absorb(err, flow, ctx);
        }
        if self.paused && self.out.len() <= ctx.low_water {
            self.paused = false;
        }
        let finished = self.input != Input::Open && !self.has_pending();
        if finished && self.fin_sent.is_none() && self.close.is_none() {
            // Everything owed is out: tell the peer we are done sending.
            if let Err(e) = self.socket.shutdown_write() {
                self.fail(e, ctx);
                return;
            }
            self.fin_sent = Some(ctx.now);
        }
        if finished && self.input == Input::Eof {
            self.close.get_or_insert(CloseReason::Done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ReadStep, ScriptedIo};
    use std::cell::Cell;

    impl StreamSocket for ScriptedIo {
        fn shutdown_write(&self) -> io::Result<()> {
            FIN.with(|f| f.set(f.get() + 1));
            Ok(())
        }
    }

    thread_local! { static FIN: Cell<u32> = const { Cell::new(0) }; }

    struct Env {
        scratch: Vec<u8>,
        broadcasts: Vec<Rc<[u8]>>,
        stats: Counters,
    }

    impl Env {
        fn new(scratch: usize) -> Env {
            Env {
                scratch: vec![0; scratch],
                broadcasts: Vec::new(),
                stats: Counters::default(),
            }
        }
        fn ctx(&mut self, max_pending: usize) -> Ctx<'_> {
            Ctx {
                scratch: &mut self.scratch,
                broadcasts: &mut self.broadcasts,
                stats: &self.stats,
                now: Instant::now(),
                max_pending,
                low_water: max_pending / 2,
            }
        }
    }

    fn echo_conn(io: ScriptedIo, env: &mut Env, max_pending: usize) -> Conn<ScriptedIo> {
        let peer = "127.0.0.1:9".parse().unwrap();
        Conn::new(io, peer, 1, Protocol::Echo, &mut env.ctx(max_pending))
    }

    /// Bytes the socket would not take are kept and sent, in order, on WRITABLE.
    #[test]
    fn short_writes_queue_the_rest_and_writable_drains_it() {
        let mut env = Env::new(64);
        let io = ScriptedIo::new(vec![Some(3), None, Some(100)]).with_reads(vec![
            ReadStep::Data(b"abcdef".to_vec()),
            ReadStep::WouldBlock,
        ]);
        let mut c = echo_conn(io, &mut env, 1024);
        assert!(!c.on_readable(&mut env.ctx(1024)));
        assert_eq!(c.socket.written, b"abc");
        assert_eq!(c.interest(), Some(Interest::READABLE | Interest::WRITABLE));
        c.on_writable(&mut env.ctx(1024));
        assert_eq!(c.socket.written, b"abcdef");
        assert_eq!(c.interest(), Some(Interest::READABLE));
        assert!(
            !c.out.has_allocation(),
            "drained connection keeps no buffer"
        );
    }

    /// A short read ends the read loop on Linux (one read per message), and
    /// Interrupted is retried.
    #[test]
    fn interrupted_is_retried_and_short_read_ends_the_loop() {
        let mut env = Env::new(64);
        let io = ScriptedIo::new(vec![Some(100); 4]).with_reads(vec![
            ReadStep::Interrupted,
            ReadStep::Data(b"hi".to_vec()),
            ReadStep::Data(b"later".to_vec()),
        ]);
        let mut c = echo_conn(io, &mut env, 1024);
        c.on_readable(&mut env.ctx(1024));
        assert_eq!(c.socket.written, b"hi");
        if SHORT_READ_MEANS_DRAINED {
            assert_eq!(c.socket.read_calls, 2);
        }
        c.on_readable(&mut env.ctx(1024));
        assert_eq!(c.socket.written, b"hilater");
    }

    /// Data and FIN that arrived together (one event, read-closed set) are
    /// both read in that event: no later edge would announce the FIN.
    #[test]
    fn queued_fin_is_read_past_a_short_read() {
        let mut env = Env::new(64);
        let io = ScriptedIo::new(vec![Some(100); 4])
            .with_reads(vec![ReadStep::Data(b"bye".to_vec()), ReadStep::Eof]);
        let mut c = echo_conn(io, &mut env, 1024);
        c.note_read_closed();
        c.on_readable(&mut env.ctx(1024));
        assert_eq!(c.socket.written, b"bye");
        assert_eq!(c.close_reason(), Some(CloseReason::Done));
    }

    /// A member whose input ended, and whose last owed bytes go out with a
    /// broadcast's flush, sends FIN and closes right then (regression: it
    /// used to wait, deregistered, for the idle timeout).
    #[test]
    fn broadcast_flush_that_drains_after_eof_finishes_the_connection() {
        let mut env = Env::new(64);
        let io = ScriptedIo::new(vec![Some(2), None, Some(1000), Some(1000)])
            .with_reads(vec![ReadStep::Data(b"owed".to_vec()), ReadStep::Eof]);
        let mut c = echo_conn(io, &mut env, 1024);
        c.note_read_closed();
        c.on_readable(&mut env.ctx(1024));
        assert_eq!(c.socket.written, b"ow");
        assert_eq!(c.close_reason(), None, "still owes bytes");
        let fins = FIN.with(Cell::get);
        let msg: Rc<[u8]> = Rc::from(&b"* x left\n"[..]);
        c.deliver(&[msg], &mut env.ctx(1024));
        assert_eq!(c.socket.written, b"owed* x left\n");
        assert_eq!(FIN.with(Cell::get), fins + 1, "FIN sent");
        assert_eq!(c.close_reason(), Some(CloseReason::Done));
    }

    /// A peer that does not read: reading pauses at the high-water mark, and
    /// resumes (reading at once, without waiting for an edge) once drained.
    #[test]
    fn backpressure_pauses_and_resumes_reading() {
        let mut env = Env::new(8);
        let reads = (0..10).map(|i| ReadStep::Data(vec![i; 8])).collect();
        let io = ScriptedIo::new(vec![]).with_reads(reads);
        let mut c = echo_conn(io, &mut env, 16);
        c.on_readable(&mut env.ctx(16));
        assert_eq!(c.out.len(), 16, "stops reading at the high-water mark");
        assert_eq!(c.interest(), Some(Interest::WRITABLE));
        assert_eq!(env.stats.snapshot().backpressure_pauses, 1);
        // The peer reads everything; WRITABLE drains, then reads resume at once.
        c.socket.writes = vec![Some(1000); 100].into();
        c.on_writable(&mut env.ctx(16));
        assert_eq!(c.socket.written.len(), 80);
        let expect: Vec<u8> = (0..10u8).flat_map(|i| [i; 8]).collect();
        assert_eq!(c.socket.written, expect);
    }

    /// After EOF everything owed is flushed, then FIN, then close.
    #[test]
    fn half_close_flushes_then_closes() {
        FIN.with(|f| f.set(0));
        let mut env = Env::new(64);
        let io = ScriptedIo::new(vec![Some(2)])
            .with_reads(vec![ReadStep::Data(b"tail".to_vec()), ReadStep::Eof]);
        let mut c = echo_conn(io, &mut env, 1024);
        c.on_readable(&mut env.ctx(1024));
        c.on_readable(&mut env.ctx(1024));
        assert_eq!(c.close_reason(), None, "2 bytes still owed");
        assert_eq!(FIN.with(|f| f.get()), 0);
        c.socket.writes = vec![Some(100)].into();
        c.on_writable(&mut env.ctx(1024));
        assert_eq!(c.socket.written, b"tail");
        assert_eq!(FIN.with(|f| f.get()), 1);
        assert_eq!(c.close_reason(), Some(CloseReason::Done));
    }

    /// A reset is a quiet close, counted.
    #[test]
    fn reset_closes_and_counts() {
        let mut env = Env::new(64);
        let io = ScriptedIo::new(vec![])
            .with_reads(vec![ReadStep::Error(io::ErrorKind::ConnectionReset)]);
        let mut c = echo_conn(io, &mut env, 1024);
        c.on_readable(&mut env.ctx(1024));
        assert_eq!(c.close_reason(), Some(CloseReason::Reset));
        assert_eq!(env.stats.snapshot().resets, 1);
        assert_eq!(c.interest(), None);
    }

    /// One connection cannot monopolise the loop: the read cap asks for a requeue.
    #[test]
    fn read_cap_requests_requeue() {
        let mut env = Env::new(4);
        let reads = (0..40).map(|_| ReadStep::Data(vec![1; 4])).collect();
        let io = ScriptedIo::new(vec![Some(1000); 100]).with_reads(reads);
        let mut c = echo_conn(io, &mut env, 1 << 20);
        assert!(c.on_readable(&mut env.ctx(1 << 20)));
        assert_eq!(c.socket.read_calls, MAX_READS_PER_EVENT);
    }
}
