//! Where a connection's input stands: a small state machine, tested on its
//! own.
//!
//! ```text
//!   Open ──EOF──────────> Eof        nothing more will arrive
//!     ├──handler Close──> Discard    read and drop whatever comes
//!     └──shutdown──> Held { left } ──(left bytes handed over)──> Discard
//! ```
//!
//! `Held` is the graceful shutdown's promise: the bytes the kernel had
//! received when shutdown began were acknowledged to the peer, which counts
//! them as delivered, so they still go to the handler (once); only what
//! arrives after them is dropped.

/// The state of a connection's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    /// Reading and handing bytes to the handler.
    Open,
    /// Shutting down: the next `left` bytes still go to the handler; after
    /// them, `Discard`. Invariant: `left > 0`. A `u32` keeps the state at 8
    /// bytes: it counts a socket's receive queue, whose size is an `int`.
    Held { left: u32 },
    /// The peer sent EOF: nothing more will arrive.
    Eof,
    /// We are closing: bytes still arriving are read and dropped.
    Discard,
}

impl Input {
    /// True while what is read goes to the handler.
    pub fn to_handler(self) -> bool {
        matches!(self, Input::Open | Input::Held { .. })
    }

    /// True once nothing more will go to the handler: our FIN may follow as
    /// soon as everything owed is sent.
    pub fn is_over(self) -> bool {
        matches!(self, Input::Eof | Input::Discard)
    }

    /// The next read's size, given the size `limit` the other bounds allow:
    /// never past the end of the held input.
    pub fn read_size(self, limit: usize) -> usize {
        match self {
            Input::Held { left } => limit.min(left as usize),
            _ => limit,
        }
    }

    /// `n` bytes were handed to the handler.
    pub fn consumed(&mut self, n: usize) {
        if let Input::Held { left } = *self {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            *self = match left.saturating_sub(n) {
                0 => Input::Discard,
                left => Input::Held { left },
            };
        }
    }

    /// Shutdown began with `queued` bytes received but not yet read.
    pub fn shutdown(&mut self, queued: usize) {
        if *self == Input::Open {
            *self = match u32::try_from(queued).unwrap_or(u32::MAX) {
                0 => Input::Discard,
                left => Input::Held { left },
            };
        }
    }

    /// The handler asked to close: take no more requests.
    pub fn close(&mut self) {
        if self.to_handler() {
            *self = Input::Discard;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_hands_over_exactly_the_held_bytes() {
        let mut i = Input::Open;
        i.shutdown(10);
        assert_eq!(i, Input::Held { left: 10 });
        assert!(i.to_handler() && !i.is_over());
        assert_eq!(i.read_size(64), 10, "never read past the held input");
        i.consumed(4);
        assert_eq!(i, Input::Held { left: 6 });
        i.consumed(6);
        assert_eq!(i, Input::Discard);
        assert!(!i.to_handler() && i.is_over());
        assert_eq!(i.read_size(64), 64);
    }

    #[test]
    fn shutdown_with_nothing_held_discards_at_once() {
        let mut i = Input::Open;
        i.shutdown(0);
        assert_eq!(i, Input::Discard);
        // A second shutdown, or one after EOF, changes nothing.
        i.shutdown(5);
        assert_eq!(i, Input::Discard);
        let mut eof = Input::Eof;
        eof.shutdown(5);
        assert_eq!(eof, Input::Eof);
    }

    #[test]
    fn a_close_ends_even_the_held_input() {
        let mut i = Input::Held { left: 3 };
        i.close();
        assert_eq!(i, Input::Discard);
        let mut eof = Input::Eof;
        eof.close();
        assert_eq!(eof, Input::Eof, "nothing to stop after EOF");
        let mut open = Input::Open;
        open.consumed(100);
        assert_eq!(open, Input::Open, "only held input counts down");
    }
}
