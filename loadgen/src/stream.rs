//! A TCP connection's echo stream, cut back into messages and verified, counting each
//! fault once.
//!
//! A stream has no framing of its own: the k-th `wire_len` bytes must be the echo of
//! message k. Each such chunk is judged:
//!
//! - an intact echo of this connection's message: the window says whether it is the one
//!   due, a skip ahead (missing), a repeat (duplicate) or a late arrival (reordered);
//! - this connection's message with its header intact and another byte wrong: damaged in
//!   place, one corrupt, and it stands for the message that was due;
//! - anything else (a header that does not check, another connection's message, a seq
//!   never sent): the stream is no longer where it should be. One corrupt, and the reader
//!   **hunts**: it looks, byte by byte, for the next valid header of this connection (conn
//!   id, a seq already sent, and the check word agree) and carries on from there. If that
//!   header is the message that was due, the junk was extra (a foreign echo inserted); if it
//!   is a later one, the junk took the due message's place.
//!
//! So a foreign echo counts 1 corrupt (not also a duplicate), and a few dropped bytes
//! count the one or two messages they cut, then every later message verifies again.

use crate::ctx::Ctx;
use crate::payload::{quote, Codec, Decoded, QUOTE_MAX};
use crate::send::SendState;
use crate::verify::ErrorCounts;

/// The receive side of one TCP connection.
#[derive(Debug)]
pub(crate) struct EchoStream {
    /// Normally the start of an echo split across reads; while hunting, the bytes not yet
    /// scanned. Capacity one message, never grown.
    partial: Vec<u8>,
    /// Hunting for the next valid header (after junk), with the bytes skipped so far.
    hunting: Option<u64>,
}

/// What a chunk turned out to be.
enum Judged {
    /// Verified (good or not), the stream is in step.
    InStep,
    /// Not where the stream should be: hunt for the next header.
    Lost,
}

impl EchoStream {
    /// A reader for messages of `wire_len` bytes.
    pub(crate) fn new(wire_len: usize) -> Self {
        EchoStream {
            partial: Vec::with_capacity(wire_len),
            hunting: None,
        }
    }

    /// Bytes received but not yet judged: the start of a message, or unscanned junk.
    pub(crate) fn leftover(&self) -> &[u8] {
        &self.partial
    }

    /// Whether the reader is looking for a header after junk.
    #[cfg(test)]
    pub(crate) fn is_hunting(&self) -> bool {
        self.hunting.is_some()
    }

    /// Takes received bytes: verifies every complete echo, hunts through junk.
    pub(crate) fn consume(&mut self, mut bytes: &[u8], send: &mut SendState, ctx: &mut Ctx) {
        let wire = ctx.codec.wire_len();
        loop {
            if self.hunting.is_some() {
                bytes = self.hunt(bytes, send, ctx);
                if self.hunting.is_some() {
                    return; // all scanned, no header yet
                }
            }
            if !self.partial.is_empty() {
                let take = (wire - self.partial.len()).min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.partial.len() < wire {
                    return;
                }
                let msg = std::mem::take(&mut self.partial);
                let judged = self.judge(&msg, bytes, send, ctx);
                self.partial = msg;
                match judged {
                    Judged::InStep => self.partial.clear(),
                    Judged::Lost => {
                        // Hunt from the chunk's second byte: it may hold the next start.
                        self.partial.remove(0);
                        self.hunting = Some(1);
                        continue;
                    }
                }
            }
            while bytes.len() >= wire {
                match self.judge(&bytes[..wire], &bytes[wire..], send, ctx) {
                    Judged::InStep => bytes = &bytes[wire..],
                    Judged::Lost => {
                        bytes = &bytes[1..];
                        self.hunting = Some(1);
                        break;
                    }
                }
            }
            if self.hunting.is_none() {
                self.partial.extend_from_slice(bytes);
                return;
            }
        }
    }

    /// Scans `partial` + `bytes` for the next valid header, one buffer's worth at a time
    /// (the error path: copying is fine). Found: `partial` starts with it, hunting ends,
    /// and the rest of `bytes` is returned. Not found: keeps the tail a header may start in.
    fn hunt<'a>(&mut self, mut bytes: &'a [u8], send: &mut SendState, ctx: &mut Ctx) -> &'a [u8] {
        let (wire, span) = (ctx.codec.wire_len(), ctx.codec.header_span());
        let (id, below) = (send.id, send.window.next_seq());
        loop {
            let take = (wire - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let skipped = self.hunting.get_or_insert(0);
            if let Some((at, seq)) = ctx.codec.find_header(id, below, &self.partial) {
                *skipped += at as u64;
                self.partial.drain(..at);
                self.resynced(seq, send);
                return bytes;
            }
            let drop = self.partial.len().saturating_sub(span - 1);
            *skipped += drop as u64;
            self.partial.drain(..drop);
            if bytes.is_empty() {
                return bytes;
            }
        }
    }

    /// Found the header of message `seq` after junk (counted corrupt when it was met). If
    /// it is a later message than the one due, the junk took the due one's place: that one
    /// is resolved; messages between count missing when the found one is verified.
    fn resynced(&mut self, seq: u64, send: &mut SendState) {
        if let Some(skipped) = self.hunting.take() {
            log::debug!("resynchronised id={} seq={seq} skipped={skipped}", send.id);
        }
        if seq > send.window.front() {
            send.window.resolve_front();
        }
    }

    /// Verifies one message-sized chunk; `after` is what followed it in the same read,
    /// quoted with it when it is the first data error and not even a header.
    fn judge(&mut self, msg: &[u8], after: &[u8], send: &mut SendState, ctx: &mut Ctx) -> Judged {
        let decoded = ctx.codec.decode(msg);
        let id = send.id;
        let watch = ctx.stats.first_error.is_none();
        let (before, front) = (ctx.stats.errors, send.window.front());
        let below = send.window.next_seq();
        let judged = match decoded {
            Decoded::Intact { conn, seq } if conn == id && seq < below => {
                if let Some(t_ref) = send.window.on_stream_echo(seq, &mut ctx.stats.errors) {
                    ctx.record(t_ref);
                }
                Judged::InStep
            }
            Decoded::Damaged { conn, seq } if conn == id && seq < below => {
                send.window.on_stream_damaged(&mut ctx.stats.errors);
                Judged::InStep
            }
            _ => {
                ctx.stats.errors.corrupt += 1;
                Judged::Lost
            }
        };
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
        judged
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
                got.extend_from_slice(&self.after[..self.after.len().min(QUOTE_MAX)]);
                format!(
                    "conn {id} seq {front}: {}; received {}",
                    codec.describe_diff(id, front, self.msg),
                    quote(&got)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::test_ctx;

    /// A connection `id` that sent `n` messages (pipeline n), and those messages as the
    /// server should echo them.
    fn setup(id: u32, n: u64) -> (Ctx, SendState, Vec<u8>) {
        let mut ctx = test_ctx(|c| c.pipeline = n as usize);
        let mut send = SendState::new(id, 0, &ctx);
        let mut wire = Vec::new();
        for _ in 0..n {
            let seq = send.push(&mut ctx);
            ctx.codec.encode_into(id, seq, &mut wire);
        }
        (ctx, send, wire)
    }

    /// Feeds `bytes` in reads of `step` bytes.
    fn feed(bytes: &[u8], step: usize, ctx: &mut Ctx, send: &mut SendState) -> EchoStream {
        let mut s = EchoStream::new(ctx.codec.wire_len());
        for chunk in bytes.chunks(step) {
            s.consume(chunk, send, ctx);
        }
        s
    }

    /// A clean stream verifies whole however it is split into reads.
    #[test]
    fn clean_stream_any_split() {
        for step in [1, 7, 64, 100, 1000] {
            let (mut ctx, mut send, wire) = setup(3, 10);
            feed(&wire, step, &mut ctx, &mut send);
            assert_eq!(ctx.stats.errors, ErrorCounts::default(), "step {step}");
            assert_eq!((ctx.hist.len(), send.window.in_flight()), (10, 0));
        }
    }

    /// Another connection's echo inserted between two messages is one corrupt message,
    /// not also a duplicate, and everything after it verifies.
    #[test]
    fn foreign_echo_counts_once() {
        for step in [1, 13, 64, 4096] {
            let (mut ctx, mut send, wire) = setup(3, 10);
            let mut bytes = wire[..4 * 64].to_vec();
            ctx.codec.encode_into(9, 4, &mut bytes);
            bytes.extend_from_slice(&wire[4 * 64..]);
            let s = feed(&bytes, step, &mut ctx, &mut send);
            let e = ctx.stats.errors;
            assert_eq!(
                (e.corrupt, e.duplicate, e.missing),
                (1, 0, 0),
                "step {step}"
            );
            assert_eq!(
                (ctx.hist.len(), send.window.in_flight()),
                (10, 0),
                "step {step}"
            );
            assert!(!s.is_hunting());
            let what = ctx.stats.first_error.unwrap().1;
            assert_eq!(what, "conn 3 seq 4: got the echo of conn 9 seq 4");
        }
    }

    /// Ten bytes dropped inside a message: that message and the next one it cut into are
    /// corrupt, the stream finds its footing on the next header, and the rest verify.
    #[test]
    fn dropped_bytes_resync() {
        for step in [1, 10, 64, 4096] {
            let (mut ctx, mut send, wire) = setup(3, 20);
            let mut bytes = wire.clone();
            bytes.drain(5 * 64 + 20..5 * 64 + 30);
            let s = feed(&bytes, step, &mut ctx, &mut send);
            let e = ctx.stats.errors;
            assert_eq!(
                (e.corrupt, e.missing, e.duplicate),
                (2, 0, 0),
                "step {step}"
            );
            assert_eq!(
                (ctx.hist.len(), send.window.in_flight()),
                (18, 0),
                "step {step}"
            );
            assert!(!s.is_hunting() && s.leftover().is_empty());
        }
    }

    /// Junk in place of a header (a flipped header byte) is one corrupt; junk with no
    /// header after it keeps hunting, holding at most a header's worth of bytes.
    #[test]
    fn junk_in_place_and_unending() {
        let (mut ctx, mut send, mut wire) = setup(3, 5);
        wire[2 * 64 + 5] ^= 1;
        feed(&wire, 64, &mut ctx, &mut send);
        let e = ctx.stats.errors;
        assert_eq!((e.corrupt, e.missing, ctx.hist.len()), (1, 0, 4));
        let (mut ctx, mut send, _) = setup(3, 5);
        let s = feed(&[b'x'; 1000], 100, &mut ctx, &mut send);
        assert_eq!(ctx.stats.errors.corrupt, 1);
        assert!(s.is_hunting() && s.leftover().len() < ctx.codec.header_span());
    }
}
