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

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::event::{Event, Source};
use mio::net::TcpStream;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::conn::{ns, send_batch, Client, Closed, Ctx, Flow, SendState};
use crate::io_text;
use crate::payload::{quote, Codec, Decoded};
use crate::verify::ErrorCounts;

/// A TCP client connection.
pub struct TcpClient {
    stream: TcpStream,
    /// Set once the non-blocking connect completed.
    connected: bool,
    /// When the connect started, ns: it fails after `connect_timeout`.
    started: u64,
    send: SendState,
    /// Encoded messages the socket has not taken yet; capacity fixed at open, never grown.
    out: Vec<u8>,
    /// The start of an echo split across reads; capacity one message.
    partial: Vec<u8>,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Creates the socket with socket2 (source address, NODELAY) and starts connecting.
fn start_connect(target: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    // Latency is the point: never let Nagle hold a small message back.
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = bind {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // The normal case: the handshake continues; WRITABLE says when it is done.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || would_block(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl Client for TcpClient {
    fn open(id: u32, bind: Option<IpAddr>, ctx: &mut Ctx) -> io::Result<Self> {
        let stream = start_connect(ctx.cfg.target, bind)?;
        let wire = ctx.codec.wire_len();
        let send = SendState::new(id, ctx);
        let msgs = send_batch(&ctx.cfg, wire, send.window.capacity());
        Ok(TcpClient {
            stream,
            connected: false,
            started: ctx.now,
            send,
            out: Vec::with_capacity(msgs * wire),
            partial: Vec::with_capacity(wire),
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
                Err(e) => return Flow::Close(Closed::ConnectFailed(io_text(&e))),
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
        let wire = ctx.codec.wire_len();
        let room = (self.out.capacity() - self.out.len()) / wire;
        for _ in 0..self.send.sendable(ctx).min(room) {
            let seq = self.send.push(ctx);
            ctx.codec.encode_into(self.send.id, seq, &mut self.out);
        }
        self.flush()
    }

    fn tick(&mut self, ctx: &mut Ctx) -> Flow {
        let limit = ns(ctx.cfg.connect_timeout);
        if !self.connected && ctx.now.saturating_sub(self.started) >= limit {
            let why = format!("connect timed out after {:?}", ctx.cfg.connect_timeout);
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
                ctx.stats.opened += 1;
                ctx.up = true;
                self.send.on_connect();
                log::debug!(
                    "connected id={} local={:?}",
                    self.send.id,
                    self.stream.local_addr()
                );
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
                    self.consume(&scratch[..n], ctx);
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
        if owed == 0 && ctx.now >= ctx.measure_end {
            return Flow::Close(Closed::Finished);
        }
        let (id, front) = (self.send.id, self.send.window.front());
        let junk = !self.partial.is_empty() && !ctx.codec.is_prefix_of(id, front, &self.partial);
        if junk && ctx.stats.first_error.is_none() {
            ctx.data_error(format!(
                "conn {id} seq {front}: the server sent {} bytes that are not an echo, then closed: {}",
                self.partial.len(),
                quote(&self.partial)
            ));
        }
        Flow::Close(Closed::Broken(format!(
            "server closed the connection with {owed} messages owed"
        )))
    }

    /// Splits received bytes into message-sized echoes (the stream has no other framing:
    /// the k-th `wire_len` bytes must be message k) and verifies each.
    fn consume(&mut self, mut bytes: &[u8], ctx: &mut Ctx) {
        let wire = ctx.codec.wire_len();
        if !self.partial.is_empty() {
            let take = (wire - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < wire {
                return;
            }
            let partial = std::mem::take(&mut self.partial);
            self.verify(&partial, bytes, ctx);
            self.partial = partial;
            self.partial.clear();
        }
        let whole = bytes.len() / wire * wire;
        for at in (0..whole).step_by(wire) {
            self.verify(&bytes[at..at + wire], &bytes[at + wire..], ctx);
        }
        self.partial.extend_from_slice(&bytes[whole..]);
    }

    /// Verifies one echo; `after` is what followed it in the same read, quoted with it
    /// when it is the first data error and not even a header (a server's message).
    fn verify(&mut self, msg: &[u8], after: &[u8], ctx: &mut Ctx) {
        let decoded = ctx.codec.decode(msg);
        let id = self.send.id;
        let watch = ctx.stats.first_error.is_none();
        let (before, front) = (ctx.stats.errors, self.send.window.front());
        if let Some(t_ref) = self
            .send
            .window
            .on_stream_message(decoded, id, &mut ctx.stats.errors)
        {
            ctx.record(t_ref);
        }
        if watch && ctx.stats.errors.fails(false) != before.fails(false) {
            let echo = Echo {
                id,
                front,
                decoded,
                msg,
                after,
            };
            let what = echo.describe(&ctx.codec, &before, &ctx.stats.errors);
            ctx.data_error(what);
        }
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

/// One echo that was a data error, with what is needed to say what went wrong.
struct Echo<'a> {
    /// The connection.
    id: u32,
    /// The message the stream was due to deliver.
    front: u64,
    decoded: Decoded,
    msg: &'a [u8],
    /// The bytes that followed in the same read.
    after: &'a [u8],
}

impl Echo<'_> {
    /// What differed, given the error counts before and after the window judged it.
    fn describe(&self, codec: &Codec, before: &ErrorCounts, after: &ErrorCounts) -> String {
        let (id, front) = (self.id, self.front);
        match self.decoded {
            Decoded::Intact { conn, seq } if conn == id => {
                if after.missing > before.missing {
                    format!(
                        "conn {id}: the echo of seq {seq} came where seq {front} was due ({} messages skipped)",
                        seq - front
                    )
                } else if after.duplicate > before.duplicate {
                    format!("conn {id} seq {seq}: echoed twice")
                } else if after.reordered > before.reordered {
                    format!("conn {id} seq {seq}: echoed after later messages")
                } else {
                    format!("conn {id} seq {front}: got seq {seq}, which was never sent")
                }
            }
            Decoded::Intact { conn, seq } => {
                format!("conn {id} seq {front}: got the echo of conn {conn} seq {seq}")
            }
            Decoded::Damaged { conn, seq } if conn == id => {
                format!(
                    "conn {id} seq {seq}: {}",
                    codec.describe_diff(id, seq, self.msg)
                )
            }
            // Not even the header: quote what came, it may be the server talking.
            Decoded::Damaged { .. } | Decoded::Garbage => {
                let mut got = self.msg.to_vec();
                got.extend_from_slice(
                    &self.after[..self.after.len().min(crate::payload::QUOTE_MAX)],
                );
                format!(
                    "conn {id} seq {front}: {}; received {}",
                    codec.describe_diff(id, front, self.msg),
                    quote(&got)
                )
            }
        }
    }
}
