//! One UDP socket: connected to the target, one message per datagram.
//!
//! Datagram sockets have no short-read shortcut: every readable edge is drained with
//! `recv` until `WouldBlock`. On the plain path each datagram is one `send` and one
//! `recv`; on Linux the datagrams of one turn go as one `sendmmsg` and answers come in
//! batches by `recvmmsg` (`udp_batch.rs`, `--udp-batch`), with the same accounting and
//! checks. A datagram not answered within `--udp-timeout` is counted lost by
//! [`Client::on_deadline`], which also frees its place in the closed-loop pipeline. A UDP
//! socket has no handshake: it is up, and joins the open-loop schedule, when created.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::event::{Event, Source};
use mio::net::UdpSocket;

use crate::clock::ns;
use crate::conn::{Client, Closed, Flow};
use crate::ctx::Ctx;
use crate::io_text::io_text;
use crate::payload::{quote, Codec, Decoded};
use crate::send::SendState;
use crate::udp_batch::UdpBatch;
use crate::verify::ErrorCounts;

/// A UDP client socket.
pub(crate) struct UdpClient {
    socket: UdpSocket,
    send: SendState,
    /// The datagram being sent; capacity one message, reused.
    out: Vec<u8>,
    /// Answers seen; a socket that never got one and is refused counts as a failed
    /// connection rather than a broken one.
    answered: bool,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

impl Client for UdpClient {
    fn open(id: u32, source: Option<IpAddr>, resume: u64, ctx: &mut Ctx) -> io::Result<Self> {
        let target = ctx.cfg.target;
        let local = source.unwrap_or(match target {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
        // Connected: the kernel filters other senders, and an ICMP "port unreachable"
        // comes back as ECONNREFUSED on the next call instead of a silent loss.
        socket.connect(target)?;
        ctx.stats.opened += 1;
        ctx.refresh_now();
        let mut send = SendState::new(id, resume, ctx);
        send.on_connect(ctx);
        let out = Vec::with_capacity(ctx.codec.wire_len());
        Ok(UdpClient {
            socket,
            send,
            out,
            answered: false,
        })
    }

    fn source(&mut self) -> &mut dyn Source {
        &mut self.socket
    }

    fn on_event(&mut self, ev: &Event, ctx: &mut Ctx) -> Flow {
        if ev.is_readable() || ev.is_error() {
            if let Flow::Close(why) = self.recv_all(ctx) {
                return Flow::Close(why);
            }
        }
        self.pump(ctx)
    }

    fn pump(&mut self, ctx: &mut Ctx) -> Flow {
        if let Some(mut batch) = ctx.udp_batch.take() {
            let flow = self.send_batches(&mut batch, ctx);
            ctx.udp_batch = Some(batch);
            return flow;
        }
        for _ in 0..self.send.sendable(ctx) {
            self.out.clear();
            let seq = self.send.window.next_seq();
            ctx.codec.encode_into(self.send.id, seq, &mut self.out);
            match self.socket.send(&self.out) {
                Ok(_) => {
                    self.send.push(ctx);
                }
                // Socket buffer full: the WRITABLE edge calls pump again.
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return self.failed(e),
            }
        }
        Flow::Continue
    }

    fn deadline(&self, ctx: &Ctx) -> Option<u64> {
        let sent = self.send.window.oldest_pending_sent()?;
        Some(sent.saturating_add(ns(ctx.cfg.udp_timeout)))
    }

    fn on_deadline(&mut self, ctx: &mut Ctx) -> Flow {
        let timeout = ns(ctx.cfg.udp_timeout);
        self.send
            .window
            .expire(ctx.now, timeout, &mut ctx.stats.errors);
        self.pump(ctx)
    }

    fn finish(&mut self, ctx: &mut Ctx) {
        self.send.window.abandon(true, &mut ctx.stats.errors);
    }

    fn is_up(&self) -> bool {
        true
    }

    fn outstanding(&self) -> usize {
        self.send.window.in_flight()
    }

    fn sender(&mut self) -> &mut SendState {
        &mut self.send
    }
}

impl UdpClient {
    /// Receives until `WouldBlock`, verifying each datagram.
    pub(crate) fn recv_all(&mut self, ctx: &mut Ctx) -> Flow {
        if let Some(mut batch) = ctx.udp_batch.take() {
            let flow = self.recv_batches(&mut batch, ctx);
            ctx.udp_batch = Some(batch);
            return flow;
        }
        let mut scratch = std::mem::take(&mut ctx.scratch);
        let flow = loop {
            match self.socket.recv(&mut scratch) {
                Ok(n) => {
                    ctx.refresh_now();
                    self.on_datagram(&scratch[..n], n, ctx);
                }
                Err(e) if would_block(&e) => break Flow::Continue,
                Err(e) if interrupted(&e) => continue,
                Err(e) => break self.failed(e),
            }
        };
        ctx.scratch = scratch;
        flow
    }

    /// Sends what [`SendState::sendable`] allows now in batches of up to `batch.max`
    /// datagrams per `sendmmsg`. Each batch is encoded from the next sequence number on,
    /// and only the datagrams the kernel took are counted as sent, in order; the rest are
    /// encoded again for the next call, which ends the turn on a full buffer.
    ///
    /// [`SendState::sendable`]: crate::send::SendState::sendable
    #[cfg(target_os = "linux")]
    fn send_batches(&mut self, batch: &mut UdpBatch, ctx: &mut Ctx) -> Flow {
        let wire = ctx.codec.wire_len();
        let mut left = self.send.sendable(ctx);
        while left > 0 {
            let n = left.min(batch.max);
            batch.out.clear();
            let first = self.send.window.next_seq();
            for seq in first..first + n as u64 {
                ctx.codec.encode_into(self.send.id, seq, &mut batch.out);
            }
            match batch.mmsg.send(&self.socket, &batch.out, wire) {
                Ok(took) => {
                    for _ in 0..took {
                        self.send.push(ctx);
                    }
                    left -= took.min(left);
                }
                // Socket buffer full: the WRITABLE edge calls pump again.
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return self.failed(e),
            }
        }
        Flow::Continue
    }

    /// Receives in batches of up to `batch.max` datagrams per `recvmmsg` until
    /// `WouldBlock`, verifying each datagram as the plain path does.
    #[cfg(target_os = "linux")]
    fn recv_batches(&mut self, batch: &mut UdpBatch, ctx: &mut Ctx) -> Flow {
        let mut scratch = std::mem::take(&mut ctx.scratch);
        let flow = loop {
            match batch
                .mmsg
                .recv(&self.socket, &mut scratch, batch.slot, &mut batch.lens)
            {
                Ok(got) => {
                    ctx.refresh_now();
                    for (i, &len) in batch.lens[..got].iter().enumerate() {
                        let datagram = &scratch[i * batch.slot..][..len.min(batch.slot)];
                        self.on_datagram(datagram, len, ctx);
                    }
                }
                Err(e) if would_block(&e) => break Flow::Continue,
                Err(e) if interrupted(&e) => continue,
                Err(e) => break self.failed(e),
            }
        };
        ctx.scratch = scratch;
        flow
    }

    /// Not Linux: batching is never on (`UdpBatch::for_run`).
    #[cfg(not(target_os = "linux"))]
    fn send_batches(&mut self, _batch: &mut UdpBatch, _ctx: &mut Ctx) -> Flow {
        unreachable!("UDP batches are Linux only")
    }

    /// Not Linux: batching is never on (`UdpBatch::for_run`).
    #[cfg(not(target_os = "linux"))]
    fn recv_batches(&mut self, _batch: &mut UdpBatch, _ctx: &mut Ctx) -> Flow {
        unreachable!("UDP batches are Linux only")
    }

    /// One datagram of `len` bytes arrived (`datagram` holds it, or its first bytes when
    /// it was cut to a receive slot): verified against the window, its latency recorded,
    /// and the thread's first data error described.
    fn on_datagram(&mut self, datagram: &[u8], len: usize, ctx: &mut Ctx) {
        self.answered = true;
        ctx.up = true;
        // A cut datagram is longer than a message, so it decodes as garbage either way.
        let decoded = ctx.codec.decode(datagram);
        let watch = ctx.stats.first_error.is_none();
        let before = ctx.stats.errors;
        let errors = &mut ctx.stats.errors;
        if let Some(t_ref) = self.send.window.on_datagram(decoded, self.send.id, errors) {
            ctx.record(t_ref);
        }
        if watch && ctx.stats.errors.fails(true) != before.fails(true) {
            let after = &ctx.stats.errors;
            let what = describe(
                &ctx.codec,
                self.send.id,
                decoded,
                datagram,
                len,
                &before,
                after,
            );
            ctx.data_error(what);
        }
    }

    /// A socket error (typically ECONNREFUSED: nothing listens on the target port). The
    /// text is the error alone: the report and the connect error already name the target.
    fn failed(&self, e: io::Error) -> Flow {
        if self.answered {
            Flow::Close(Closed::Broken(io_text(&e)))
        } else {
            Flow::Close(Closed::ConnectFailed((&e).into()))
        }
    }
}

/// What was wrong with a datagram of `len` bytes (`datagram` holds it or its start) that
/// was a data error (corrupt or duplicate), given the error counts before and after the
/// window judged it.
fn describe(
    codec: &Codec,
    id: u32,
    decoded: Decoded,
    datagram: &[u8],
    len: usize,
    before: &ErrorCounts,
    after: &ErrorCounts,
) -> String {
    match decoded {
        Decoded::Damaged { conn, seq } if conn == id => {
            format!(
                "conn {id} seq {seq}: {}",
                codec.describe_diff(id, seq, datagram)
            )
        }
        Decoded::Intact { conn, seq } if conn == id && after.duplicate > before.duplicate => {
            format!("conn {id} seq {seq}: answered twice")
        }
        Decoded::Intact { conn, seq } if conn == id => {
            format!("conn {id}: got seq {seq}, which was never sent")
        }
        Decoded::Intact { conn, seq } | Decoded::Damaged { conn, seq } => {
            format!("conn {id}: got the answer of conn {conn} seq {seq}")
        }
        Decoded::Garbage if len != codec.wire_len() => format!(
            "conn {id}: a datagram of {} bytes, expected {}; received {}",
            len,
            codec.wire_len(),
            quote(datagram)
        ),
        Decoded::Garbage => format!(
            "conn {id}: a datagram with an unreadable header; received {}",
            quote(datagram)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of bad datagram is described: a changed byte, a duplicate, another
    /// socket's answer, a wrong length, an unreadable header (quoted).
    #[test]
    fn bad_datagrams_are_described() {
        let codec = Codec::new(32, false);
        let mut msg = Vec::new();
        codec.encode_into(2, 5, &mut msg);
        let none = ErrorCounts::default();
        let dup = ErrorCounts {
            duplicate: 1,
            ..none
        };
        let say = |d, bytes: &[u8], after: &ErrorCounts| {
            describe(&codec, 2, d, bytes, bytes.len(), &none, after)
        };
        let mut damaged = msg.clone();
        damaged[20] ^= 1;
        let want = format!(
            "conn 2 seq 5: byte 20 differs (expected {:#04x}, got {:#04x})",
            msg[20], damaged[20]
        );
        let d = Decoded::Damaged { conn: 2, seq: 5 };
        assert_eq!(say(d, &damaged, &none), want);
        let ok = Decoded::Intact { conn: 2, seq: 5 };
        assert_eq!(say(ok, &msg, &dup), "conn 2 seq 5: answered twice");
        assert_eq!(
            say(ok, &msg, &none),
            "conn 2: got seq 5, which was never sent"
        );
        let other = Decoded::Intact { conn: 7, seq: 1 };
        assert_eq!(
            say(other, &msg, &none),
            "conn 2: got the answer of conn 7 seq 1"
        );
        assert_eq!(
            say(Decoded::Garbage, b"hi", &none),
            r#"conn 2: a datagram of 2 bytes, expected 32; received "hi""#
        );
        let junk = [b'x'; 32];
        let text = say(Decoded::Garbage, &junk, &none);
        assert!(text.starts_with("conn 2: a datagram with an unreadable header; received \"xx"));
    }
}
