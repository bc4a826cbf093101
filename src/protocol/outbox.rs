//! Messages a handler produced for every *other* connection (the chat room).
//!
//! The reactor cannot lend a handler the other connections while this one
//! is borrowed, so a handler leaves its messages here and the reactor hands
//! them to the room after the call (`reactor/room.rs`).
//!
//! All the lines of one read become **one** shared chunk: the handler
//! appends each line (with its prefix) to one reused assembly buffer and
//! seals it once, which makes one `Rc<[u8]>` allocation per read. Members
//! then share that chunk: no allocation or copy per line, nor per member.
//! (A chunk per line per member made a 64 KiB read of one-byte lines 32,768
//! allocations and queue entries for every member.)
//!
//! Each message says what it is (`Kind`): the room serves members' lines
//! ahead of join and leave notices, and drops the notices of a connection
//! that left before its join reached anyone (`reactor/room.rs`).

use std::rc::Rc;

/// What a room message is, which decides its place in the room's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A member's lines: what people came to read, served first.
    Lines,
    /// `* <peer> joined`.
    Join,
    /// `* <peer> left` (made by `Handler::on_close`, never through here).
    Leave,
}

/// Keep at most this much assembly capacity between reads, so one huge
/// read (a long `--max-line`) does not pin its buffer forever.
const KEEP_CAPACITY: usize = 128 * 1024;

/// One reactor's outgoing room messages, reused across calls.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Lines of the current read, prefixed, not yet sealed.
    assembly: Vec<u8>,
    /// Sealed messages, in order, waiting for the reactor.
    messages: Vec<(Kind, Rc<[u8]>)>,
}

impl Outbox {
    /// Appends `prefix`, `line` and a newline to the chunk being assembled.
    pub fn push_line(&mut self, prefix: &[u8], line: &[u8]) {
        self.assembly.reserve(prefix.len() + line.len() + 1);
        self.assembly.extend_from_slice(prefix);
        self.assembly.extend_from_slice(line);
        self.assembly.push(b'\n');
    }

    /// Turns the lines pushed since the last seal into one message. Returns
    /// false (and produces nothing) when there were none.
    pub fn seal(&mut self) -> bool {
        if self.assembly.is_empty() {
            return false;
        }
        self.messages
            .push((Kind::Lines, Rc::from(&self.assembly[..])));
        self.assembly.clear();
        if self.assembly.capacity() > KEEP_CAPACITY {
            self.assembly = Vec::new();
        }
        true
    }

    /// Queues a ready-made message (a join notice).
    pub fn push(&mut self, kind: Kind, msg: Rc<[u8]>) {
        self.messages.push((kind, msg));
    }

    /// True when no sealed message waits.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Takes the sealed messages, oldest first.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (Kind, Rc<[u8]>)> {
        self.messages.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_of_one_read_become_one_message() {
        let mut o = Outbox::default();
        assert!(!o.seal(), "nothing to seal");
        for line in [&b"a"[..], b"bb", b""] {
            o.push_line(b"p: ", line);
        }
        assert!(o.seal());
        o.push(Kind::Join, Rc::from(&b"* joined\n"[..]));
        let got: Vec<(Kind, Rc<[u8]>)> = o.drain().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0, &*got[0].1),
            (Kind::Lines, &b"p: a\np: bb\np: \n"[..])
        );
        assert_eq!((got[1].0, &*got[1].1), (Kind::Join, &b"* joined\n"[..]));
        assert!(o.is_empty());
    }

    #[test]
    fn a_huge_assembly_buffer_is_released() {
        let mut o = Outbox::default();
        o.push_line(b"", &vec![b'x'; 2 * KEEP_CAPACITY]);
        assert!(o.seal());
        assert_eq!(o.assembly.capacity(), 0);
        o.push_line(b"", b"small");
        assert!(o.seal());
        assert!(o.assembly.capacity() > 0, "a small one is kept for reuse");
    }
}
