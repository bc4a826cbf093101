//! `chat`: newline-delimited lines broadcast to every other client.
//!
//! The tutorials' chat server keeps a thread per client and a shared list of
//! sockets. Here a member's handler only turns its own bytes into messages;
//! the reactor, which owns every connection, delivers them after the handler
//! returns (see `outbox.rs`).
//!
//! Wire format, all lines ending in `\n`:
//!
//! - a line `text` from `1.2.3.4:5678` reaches every *other* member as
//!   `1.2.3.4:5678: text`; a sender never sees its own lines;
//! - `* 1.2.3.4:5678 joined` when a member connects, `* 1.2.3.4:5678 left`
//!   when it goes, for whatever reason; a member that goes before its join
//!   notice reached someone is announced to them not at all (each member
//!   sees another's join and leave as a pair, or neither: see
//!   `reactor/room.rs`, which also hands lines out ahead of notices);
//! - a line longer than `--max-line` bytes (terminator excluded) gets
//!   `error: line exceeds N bytes` back, and the member is disconnected
//!   (counted in `protocol_errors`). Its earlier lines still go out.
//!
//! All the lines of one read are built into one `Rc<[u8]>` chunk (see
//! `outbox.rs`) shared by every recipient's queue: a read of 2,000 lines to
//! 1,000 members is one allocation, not 2,000,000. The room hands it out
//! over as many turns as it takes (`reactor/room.rs`), and this member is
//! not read again until its chunk reached everyone (`wants_input`): a
//! flooder is slowed to the pace of the room. A member that does not read
//! is dropped once its queue exceeds `--max-pending` (the reactor does this,
//! in `Conn::deliver`), so one slow reader never stalls the room or grows
//! memory.
//!
//! Reads take at most `READ_LIMIT` bytes: a chunk is everything one member
//! puts ahead of everyone else's next lines, at every member, so it is kept
//! small (4 KiB of one-byte lines makes a chunk of about 40 KB).
//!
//! EOF: a partial line (no newline yet) when the member half-closes is
//! dropped, like a partial frame in `framed`: a line exists once its newline
//! arrives. The member then leaves.

use std::net::SocketAddr;
use std::rc::Rc;

use log::debug;

use super::lines::LineDecoder;
use super::outbox::Kind;
use super::{Flow, Handler};
use crate::output::Output;
use crate::stats;

/// Most bytes one read of a member takes (see the module docs).
pub const READ_LIMIT: usize = 4096;

/// One member of the room.
#[derive(Debug)]
pub struct Chat {
    /// Names the member in its messages and notices.
    peer: SocketAddr,
    /// `"<peer>: "`, built once: every line of this member starts with it.
    prefix: Box<[u8]>,
    max_line: usize,
    /// The member's unfinished line, if any (bounded by `max_line`).
    lines: LineDecoder,
    /// The room is still handing out this member's last message: take no
    /// input until it is done (backpressure through the room).
    delivering: bool,
}

impl Chat {
    pub fn new(peer: SocketAddr, max_line: usize) -> Chat {
        Chat {
            peer,
            prefix: format!("{peer}: ").into_bytes().into_boxed_slice(),
            max_line,
            lines: LineDecoder::new(max_line),
            delivering: false,
        }
    }

    /// Most input bytes whose chunk fits `out` bytes, whatever they hold.
    /// The worst case is empty lines: each input byte (`\n`) becomes the
    /// prefix and a newline. The memory budget lets a small holder add a few
    /// KiB (see `memory.rs`); without this cut, a 4 KiB read of newlines
    /// would add a chunk of some 70 KB, from every member at once.
    pub fn input_for(&self, out: usize) -> usize {
        (out / (self.prefix.len() + 1)).max(1)
    }
}

impl Handler for Chat {
    /// Announces the new member to everyone else.
    fn on_open(&mut self, out: &mut Output<'_>) -> Flow {
        out.room.push(Kind::Join, notice(self.peer, "joined"));
        self.delivering = true;
        Flow::Continue
    }

    /// Broadcasts every line `data` completes, as one chunk; refuses an
    /// overlong one (after the lines before it).
    fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        let (prefix, room) = (&self.prefix, &mut *out.room);
        let result = self.lines.feed(data, |line| room.push_line(prefix, line));
        self.delivering |= out.room.seal();
        if result.is_err() {
            debug!("chat: line too long peer={}", self.peer);
            stats::add(&out.stats.protocol_errors, 1);
            out.send(format!("error: line exceeds {} bytes\n", self.max_line).as_bytes());
            return Flow::Close;
        }
        Flow::Continue
    }

    /// False while the room still hands out this member's last message.
    fn wants_input(&self) -> bool {
        !self.delivering
    }

    /// The room finished handing out this member's last message.
    fn on_delivered(&mut self) {
        self.delivering = false;
    }

    /// Bytes of a partial line held, for the memory budget.
    fn held(&self) -> usize {
        self.lines.held()
    }

    /// The member is going: tell the others (and drop any partial line).
    fn on_close(&mut self) -> Option<Rc<[u8]>> {
        self.lines.clear();
        Some(notice(self.peer, "left"))
    }

    /// Reads stay small: a read's lines travel as one chunk that every
    /// member receives before anything sent after it. Under the memory
    /// budget, cut so the chunk a read makes fits the allowance (see
    /// `input_for`).
    fn read_limit(&self, allowance: usize) -> usize {
        if allowance == usize::MAX {
            READ_LIMIT
        } else {
            READ_LIMIT.min(self.input_for(allowance))
        }
    }
}

/// `* <peer> <what>\n`.
fn notice(peer: SocketAddr, what: &str) -> Rc<[u8]> {
    Rc::from(format!("* {peer} {what}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.1:4242".parse().unwrap()
    }

    fn texts(h: &mut Harness) -> Vec<String> {
        let bc = h.room.drain();
        bc.map(|(_, m)| String::from_utf8_lossy(&m).into_owned())
            .collect()
    }

    /// Join notice, then one message per read holding all its lines, then
    /// the leave notice; input is refused while a message is on its way.
    #[test]
    fn join_reads_and_leave_are_broadcast_in_order() {
        let mut h = Harness::new();
        let mut c = Chat::new(peer(), 64);
        assert_eq!(h.with(|out| c.on_open(out)), Flow::Continue);
        assert!(!c.wants_input(), "join notice on its way");
        c.on_delivered();
        let mut data = *b"hi\r\nthere\npart";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Continue);
        assert!(!c.wants_input());
        c.on_delivered();
        assert!(c.held() > 0, "the partial line is held");
        let mut data = *b"ial\n";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Continue);
        if let Some(left) = c.on_close() {
            h.room.push(Kind::Leave, left);
        }
        assert_eq!(
            texts(&mut h),
            [
                "* 10.0.0.1:4242 joined\n",
                "10.0.0.1:4242: hi\n10.0.0.1:4242: there\n",
                "10.0.0.1:4242: partial\n",
                "* 10.0.0.1:4242 left\n",
            ]
        );
        assert!(h.io.written.is_empty(), "a sender never sees its own lines");
    }

    /// A read with no complete line sends nothing and keeps taking input.
    #[test]
    fn a_read_without_a_line_sends_nothing() {
        let mut h = Harness::new();
        let mut c = Chat::new(peer(), 64);
        let mut data = *b"no newline yet";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Continue);
        assert!(h.room.is_empty());
        assert!(c.wants_input());
    }

    #[test]
    fn overlong_line_gets_an_error_and_a_close() {
        let mut h = Harness::new();
        let mut c = Chat::new(peer(), 4);
        let mut data = *b"ok\nwaytoolong\n";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Close);
        assert_eq!(texts(&mut h), ["10.0.0.1:4242: ok\n"]);
        assert_eq!(h.io.written, b"error: line exceeds 4 bytes\n");
        assert_eq!(h.stats.snapshot().protocol_errors, 1);
    }

    /// Under the memory budget a read is cut so that even a read of empty
    /// lines (the worst case) makes a chunk within the allowance, while a
    /// short line still fits.
    #[test]
    fn input_for_bounds_the_chunk_of_one_byte_lines() {
        let mut h = Harness::new();
        let mut c = Chat::new(peer(), 64);
        let allowance = 4096;
        let input = c.input_for(allowance);
        assert!(input >= 128, "a short line still fits: {input}");
        let mut data = b"\n".repeat(input);
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Continue);
        let chunk: usize = h.room.drain().map(|(_, m)| m.len()).sum();
        assert!(chunk <= allowance, "chunk {chunk} > {allowance}");
        assert!(
            chunk > allowance / 2,
            "the cut is not needlessly small: {chunk}"
        );
        assert_eq!(c.input_for(0), 1, "always at least one byte");
        // The hook the connection asks: the cut under the budget, and
        // READ_LIMIT either way.
        assert_eq!(c.read_limit(allowance), input.min(READ_LIMIT));
        assert_eq!(c.read_limit(usize::MAX), READ_LIMIT);
        assert_eq!(c.read_limit(1 << 30), READ_LIMIT);
    }
}
