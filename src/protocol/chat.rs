//! `chat`: newline-delimited lines broadcast to every other client.
//!
//! The tutorials' chat server keeps a thread per client and a shared list of
//! sockets. Here a member's handler only turns its own bytes into messages;
//! the reactor, which owns every connection, delivers them after the handler
//! returns (see `Output::broadcast`).
//!
//! Wire format, all lines ending in `\n`:
//!
//! - a line `text` from `1.2.3.4:5678` reaches every *other* member as
//!   `1.2.3.4:5678: text`; a sender never sees its own lines;
//! - `* 1.2.3.4:5678 joined` when a member connects, `* 1.2.3.4:5678 left`
//!   when it goes, for whatever reason;
//! - a line longer than `--max-line` bytes (terminator excluded) gets
//!   `error: line exceeds N bytes` back, and the member is disconnected
//!   (counted in `protocol_errors`). Its earlier lines still go out.
//!
//! Each message is built once as an `Rc<[u8]>` and shared by every
//! recipient's queue: a line to 1,000 members is one allocation, not 1,000.
//! A member that does not read is dropped once its queue passes
//! `--max-pending` (the reactor does this, in `Conn::deliver`), so one slow
//! reader never stalls the room or grows memory.
//!
//! EOF: a partial line (no newline yet) when the member half-closes is
//! dropped, like a partial frame in `framed`: a line exists once its newline
//! arrives. The member then leaves.

use std::net::SocketAddr;
use std::rc::Rc;

use log::debug;

use super::lines::LineDecoder;
use super::{Flow, Output};
use crate::stats;

/// One member of the room.
#[derive(Debug)]
pub struct Chat {
    /// Names the member in its messages and notices.
    peer: SocketAddr,
    max_line: usize,
    /// The member's unfinished line, if any (bounded by `max_line`).
    lines: LineDecoder,
}

impl Chat {
    pub fn new(peer: SocketAddr, max_line: usize) -> Chat {
        Chat {
            peer,
            max_line,
            lines: LineDecoder::new(max_line),
        }
    }

    /// Announces the new member to everyone else.
    pub fn on_open(&mut self, out: &mut Output<'_>) -> Flow {
        out.broadcast(notice(self.peer, "joined"));
        Flow::Continue
    }

    /// Broadcasts every line `data` completes; refuses an overlong one.
    pub fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        let peer = self.peer;
        let result = self
            .lines
            .feed(data, |line| out.broadcast(message(peer, line)));
        if result.is_err() {
            debug!("chat: line too long peer={peer}");
            stats::add(&out.stats.protocol_errors, 1);
            out.send(format!("error: line exceeds {} bytes\n", self.max_line).as_bytes());
            return Flow::Close;
        }
        Flow::Continue
    }

    /// The member is going: tell the others (and drop any partial line).
    pub fn on_close(&mut self) -> Option<Rc<[u8]>> {
        self.lines.clear();
        Some(notice(self.peer, "left"))
    }
}

/// `<peer>: <line>\n`, built with one allocation of exactly its size.
pub fn message(peer: SocketAddr, line: &[u8]) -> Rc<[u8]> {
    let prefix = format!("{peer}: ");
    // Chained slice iterators report an exact length, so `collect` into
    // `Rc<[u8]>` allocates once.
    prefix
        .as_bytes()
        .iter()
        .chain(line)
        .chain(b"\n")
        .copied()
        .collect()
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

    fn texts(h: &Harness) -> Vec<String> {
        let bc = h.broadcasts.iter();
        bc.map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    #[test]
    fn join_lines_and_leave_are_broadcast_in_order() {
        let mut h = Harness::new();
        let mut c = Chat::new(peer(), 64);
        assert_eq!(h.with(|out| c.on_open(out)), Flow::Continue);
        let mut data = *b"hi\r\nthere\npart";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Continue);
        let mut data = *b"ial\n";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Continue);
        h.broadcasts.extend(c.on_close());
        assert_eq!(
            texts(&h),
            [
                "* 10.0.0.1:4242 joined\n",
                "10.0.0.1:4242: hi\n",
                "10.0.0.1:4242: there\n",
                "10.0.0.1:4242: partial\n",
                "* 10.0.0.1:4242 left\n",
            ]
        );
        assert!(h.io.written.is_empty(), "a sender never sees its own lines");
    }

    #[test]
    fn overlong_line_gets_an_error_and_a_close() {
        let mut h = Harness::new();
        let mut c = Chat::new(peer(), 4);
        let mut data = *b"ok\nwaytoolong\n";
        assert_eq!(h.with(|out| c.on_data(&mut data, out)), Flow::Close);
        assert_eq!(texts(&h), ["10.0.0.1:4242: ok\n"]);
        assert_eq!(h.io.written, b"error: line exceeds 4 bytes\n");
        assert_eq!(h.stats.snapshot().protocol_errors, 1);
    }

    #[test]
    fn message_is_exactly_sized() {
        let m = message(peer(), b"x");
        assert_eq!(&*m, b"10.0.0.1:4242: x\n");
    }
}
