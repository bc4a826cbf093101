//! A connection's yes/no facts, packed in one byte: they sit in the slab
//! entry that every connection pays for, idle or not, where four `bool`s
//! would round the entry up by a word.

/// One fact about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Flag {
    /// Reading is paused because the output reached the high-water mark
    /// (`>= max_pending`). Invariant: only set while the output is above the
    /// low-water mark; cleared once it is at or below it.
    Paused = 1,
    /// Reading is paused by the server-wide memory budget (`memory.rs`);
    /// the reactor clears it when the total falls back.
    MemoryPaused = 2,
    /// We sent FIN (at `last_active`): no more output will be produced.
    FinSent = 4,
    /// An event reported the peer's FIN (EPOLLRDHUP) as already queued. The
    /// FIN raised its edge before our read, so no new edge will come for it:
    /// the short-read shortcut must not stop us before we read the EOF.
    FinQueued = 8,
    /// The deadline moved earlier than any timer entry queued for it: a new
    /// connection's first deadline, or the linger time our FIN started.
    /// Cleared when the reactor takes it (`Conn::take_new_deadline`).
    NewDeadline = 16,
}

/// A set of [`Flag`]s; empty for a new connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags(u8);

impl Flags {
    /// A set holding only `flag`.
    pub(super) fn with(flag: Flag) -> Flags {
        Flags(flag as u8)
    }

    /// True if `flag` is set.
    pub(super) fn has(self, flag: Flag) -> bool {
        self.0 & flag as u8 != 0
    }

    /// Sets or clears `flag`.
    pub(super) fn set(&mut self, flag: Flag, on: bool) {
        if on {
            self.0 |= flag as u8;
        } else {
            self.0 &= !(flag as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_independent() {
        let mut f = Flags::default();
        f.set(Flag::Paused, true);
        f.set(Flag::FinQueued, true);
        assert!(f.has(Flag::Paused) && f.has(Flag::FinQueued));
        assert!(!f.has(Flag::MemoryPaused) && !f.has(Flag::FinSent));
        f.set(Flag::Paused, false);
        assert!(!f.has(Flag::Paused) && f.has(Flag::FinQueued));
    }
}
