//! [`Ready`]: what a socket was reported ready for and has not been served
//! for yet.
//!
//! mio reports readiness as edges: once told "readable", we are not told
//! again until new bytes arrive. So when a connection stops before it used
//! up what an event announced (its share of the turn ran out), the
//! readiness it still has must be kept and served later, or those bytes
//! would wait for an edge that never comes. The reactor keeps it in the
//! connection's slot while the connection waits in the run queue, and the
//! UDP socket's in `Udp::ready`.

use std::ops::BitOrAssign;

/// Readable and/or writable, not yet served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Input may be waiting (or the peer closed, or an error is pending).
    pub(crate) read: bool,
    /// The socket may take more output (or an error is pending).
    pub(crate) write: bool,
}

impl Ready {
    /// Readable only.
    pub(crate) const READ: Ready = Ready {
        read: true,
        write: false,
    };
    /// Writable only.
    pub(crate) const WRITE: Ready = Ready {
        read: false,
        write: true,
    };

    /// True when there is nothing to serve.
    pub(crate) fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, other: Ready) {
        self.read |= other.read;
        self.write |= other.write;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_accumulates() {
        let mut r = Ready::default();
        assert!(r.is_empty());
        r |= Ready::READ;
        r |= Ready::WRITE;
        let both = Ready {
            read: true,
            write: true,
        };
        assert_eq!(r, both);
        assert!(!r.is_empty());
    }
}
