//! One TCP connection: non-blocking connect, batched writes, reads verified as they land.
//!
//! Per wakeup a connection makes at most one `read` that returns data (plus one that says
//! `WouldBlock` only when the buffer filled exactly, or one that sees the EOF when the event
//! also reported the peer's FIN) and one `write` carrying every message it may send, so with
//! `--pipeline K` the syscalls per message fall to about 2/K.
//!
//! Readiness is edge-triggered: READABLE|WRITABLE are registered once and never changed, a
//! WRITABLE edge only arrives after a write left the send buffer full, and a READABLE edge
//! arrives for every new segment.
//!
//! The connect is stamped just before `connect()` is called: the handshake's duration (the
//! connect latency histogram) and the connect timeout both count from there. The timeout
//! is declared only after the socket itself was asked (`SO_ERROR`, then whether it has a
//! peer), so a connect that finished while loadgen was busy is never called late.

use std::io::{self, Read, Write};
use std::net::IpAddr;

use mio::event::{Event, Source};
use mio::net::TcpStream;

use crate::budget::send_batch;
use crate::clock::ns;
use crate::conn::{Client, Closed, Flow};
use crate::ctx::Ctx;
use crate::error::ConnectFailure;
use crate::io_text::io_text;
use crate::payload::quote;
use crate::send::SendState;
use crate::stream::EchoStream;

/// A TCP client connection.
pub(crate) struct TcpClient {
    stream: TcpStream,
    /// Set once the non-blocking connect completed.
    connected: bool,
    /// When `connect()` was called, ns: the handshake time and the timeout count from here.
    started: u64,
    send: SendState,
    /// Encoded messages the socket has not taken yet; capacity fixed at open, never grown.
    out: Vec<u8>,
    /// The receive side: echoes cut into messages and verified.
    echoes: EchoStream,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

impl Client for TcpClient {
    fn open(id: u32, source: Option<IpAddr>, resume: u64, ctx: &mut Ctx) -> io::Result<Self> {
        let started = ctx.refresh_now();
        let stream = crate::source::start_connect(ctx.cfg.target, source)?;
        let wire = ctx.codec.wire_len();
        let send = SendState::new(id, resume, ctx);
        let msgs = send_batch(&ctx.cfg, wire, send.window.capacity());
        Ok(TcpClient {
            stream,
            connected: false,
            started,
            send,
            out: Vec::with_capacity(msgs * wire),
            echoes: EchoStream::new(wire),
        })
    }

    fn source(&mut self) -> &mut dyn Source {
        &mut self.stream
    }

    fn on_event(&mut self, ev: &Event, ctx: &mut Ctx) -> Flow {
        if !self.connected {
            match self.finish_connect(ctx) {
                Ok(true) => {}
                // Spurious wakeup: the handshake is still going.
                Ok(false) => return Flow::Continue,
                Err(e) => return Flow::Close(Closed::ConnectFailed((&e).into())),
            }
        }
        // EOF or an error may sit behind data reported by the same event: read through them.
        let hung_up = ev.is_read_closed() || ev.is_error();
        if ev.is_readable() || hung_up {
            if let Flow::Close(why) = self.read_all(hung_up, ctx) {
                return Flow::Close(why);
            }
        }
        self.pump(ctx)
    }

    fn pump(&mut self, ctx: &mut Ctx) -> Flow {
        if !self.connected {
            return Flow::Continue;
        }
        if self.send.session_over() {
            return Flow::Close(Closed::Reconnect);
        }
        let wire = ctx.codec.wire_len();
        let room = (self.out.capacity() - self.out.len()) / wire;
        for _ in 0..self.send.sendable(ctx).min(room) {
            let seq = self.send.push(ctx);
            ctx.codec.encode_into(self.send.id, seq, &mut self.out);
        }
        self.flush()
    }

    fn deadline(&self, ctx: &Ctx) -> Option<u64> {
        (!self.connected).then(|| self.started.saturating_add(ns(ctx.cfg.connect_timeout)))
    }

    fn on_deadline(&mut self, ctx: &mut Ctx) -> Flow {
        if self.connected {
            return Flow::Continue;
        }
        // Ask the socket before calling it a timeout: it may have connected (or failed)
        // while the loop was busy elsewhere.
        match self.finish_connect(ctx) {
            Ok(true) => return self.pump(ctx),
            Ok(false) => {}
            Err(e) => return Flow::Close(Closed::ConnectFailed((&e).into())),
        }
        let limit = ns(ctx.cfg.connect_timeout);
        if ctx.now.saturating_sub(self.started) >= limit {
            let why = ConnectFailure::TimedOut(ctx.cfg.connect_timeout);
            return Flow::Close(Closed::ConnectFailed(why));
        }
        Flow::Continue
    }

    fn finish(&mut self, ctx: &mut Ctx) {
        let (owed, front) = (self.send.window.in_flight(), self.send.window.front());
        if owed > 0 && ctx.stats.first_error.is_none() {
            let id = self.send.id;
            ctx.data_error(format!(
                "conn {id} seq {front}: never echoed ({owed} messages owed when the connection ended)"
            ));
        }
        self.send.window.abandon(false, &mut ctx.stats.errors);
    }

    fn is_up(&self) -> bool {
        self.connected
    }

    fn outstanding(&self) -> usize {
        self.send.window.in_flight()
    }

    fn sender(&mut self) -> &mut SendState {
        &mut self.send
    }
}

impl TcpClient {
    /// After a WRITABLE (or error) edge on a connecting socket: `Ok(true)` once connected.
    fn finish_connect(&mut self, ctx: &mut Ctx) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.connected = true;
                ctx.record_connect(self.started);
                self.send.on_connect(ctx);
                if log::log_enabled!(log::Level::Debug) {
                    let local = self
                        .stream
                        .local_addr()
                        .map_or("?".into(), |a| a.to_string());
                    log::debug!("connected id={} local={local}", self.send.id);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads until the socket is drained, verifying every complete echo. `hung_up`: the
    /// event also reported the peer's FIN (or an error), so read on to the EOF (or error).
    fn read_all(&mut self, hung_up: bool, ctx: &mut Ctx) -> Flow {
        let mut scratch = std::mem::take(&mut ctx.scratch);
        let flow = loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => break self.on_eof(ctx),
                Ok(n) => {
                    ctx.refresh_now();
                    self.echoes.consume(&scratch[..n], &mut self.send, ctx);
                    // A short read means the receive queue is empty; Linux epoll queues a
                    // new edge for every new arrival, so the extra read that would only
                    // say WouldBlock is skipped (epoll(7) Q&A 9, same as tokio#4840).
                    // Not when this event reported a FIN or an error: its edge was merged
                    // into this one (it came with the data, or before we collected the
                    // event), no other will follow, and only a read past the data sees it.
                    if cfg!(target_os = "linux") && n < scratch.len() && !hung_up {
                        break Flow::Continue;
                    }
                }
                Err(e) if would_block(&e) => break Flow::Continue,
                Err(e) if interrupted(&e) => continue,
                Err(e) => break Flow::Close(Closed::Broken(io_text(&e))),
            }
        };
        ctx.scratch = scratch;
        flow
    }

    /// The server closed its side: fine once nothing is owed after the measured time.
    /// Otherwise the connection broke; and when the last bytes the server sent are not the
    /// start of an echo (a server's error message, typically), they are the first error,
    /// quoted.
    fn on_eof(&mut self, ctx: &mut Ctx) -> Flow {
        let owed = self.send.window.in_flight();
        if owed == 0 && ctx.now >= ctx.timeline.measure_end {
            return Flow::Close(Closed::Finished);
        }
        let (id, front) = (self.send.id, self.send.window.front());
        let left = self.echoes.leftover();
        let junk = !left.is_empty() && !ctx.codec.is_prefix_of(id, front, left);
        if junk && ctx.stats.first_error.is_none() {
            ctx.data_error(format!(
                "conn {id} seq {front}: the server sent {} bytes that are not an echo, then closed: {}",
                left.len(),
                quote(left)
            ));
        }
        Flow::Close(Closed::Broken(format!(
            "server closed the connection with {owed} messages owed"
        )))
    }

    /// Writes what is pending in one syscall. A short write means the send buffer is full:
    /// stop, the WRITABLE edge will call back. The unsent tail moves to the front.
    fn flush(&mut self) -> Flow {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    let short = n < self.out.len();
                    self.out.drain(..n);
                    if short {
                        break;
                    }
                }
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Flow::Close(Closed::Broken(io_text(&e))),
            }
        }
        Flow::Continue
    }
}
