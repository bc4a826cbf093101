//! The work one turn of the loop may do before it polls again.
//!
//! A reactor is only as good as its worst turn: while one turn runs, nothing
//! else does (no accepts, no timers, no signals, no other client). Capping
//! each connection's reads per event is not enough on its own: a hundred
//! busy connections in one batch of events, each doing its capped share,
//! still make a turn a hundred times as long. So the turn as a whole carries
//! a budget, spent by every byte read or written and every chat message
//! handed to a member. Once it is spent, the connections still waiting are
//! left on the run queue with the readiness they had (see
//! `reactor/runq.rs`) and the loop polls again, with a zero timeout, before
//! serving them.
//!
//! Pure bookkeeping, unit-tested; the reactor refills it at the top of each
//! turn.

/// Bytes (read plus written) one turn may move. Measured on a shared 2-core
/// VM (release build, loopback, `scripts/bulk-vs-light.sh`): bulk echo ran
/// at 2.4 GB/s each way on one core, so moving 1 MiB costs about 0.2 ms of
/// server CPU; a light client waits at most about one turn for its visit,
/// and fifty such turns still fit the 10 ms target. A larger budget saves
/// nothing measurable: the per-turn overhead (one `epoll_wait`, a clock
/// read) is already under 1% of a full turn.
pub const TURN_BYTES: usize = 1024 * 1024;

/// What a visit costs on top of the bytes it moves: its syscalls. A small
/// echo (one read, one write) takes about 7 us at 140,000 messages/s on
/// one core, about what moving 32 KiB costs; charging 8 KiB lets a turn
/// serve up to ~128 small visits (under 1 ms) instead of a whole batch of
/// 1,024 events (~7 ms), while keeping the extra `epoll_wait` below one
/// per hundred messages.
pub const VISIT_COST: usize = 8 * 1024;

/// Chat messages one turn may hand to members. A handoff is an `Rc` clone
/// and one `writev`, a few microseconds for a short line (plus the copy,
/// which the byte budget counts): 512 of them take a millisecond or two.
/// The 500-member chat flood (`examples/chat_burst.rs`) ran with turns of
/// at most 6 ms.
pub const TURN_HANDOFFS: usize = 512;

/// What is left of this turn's budget.
#[derive(Debug, Clone)]
pub struct TurnBudget {
    /// Bytes that may still be moved this turn.
    bytes: usize,
    /// Handoffs that may still be made this turn.
    handoffs: usize,
    /// Bytes spent since the budget was made, never saturating: the
    /// difference across a visit is what that visit moved.
    spent: u64,
}

impl Default for TurnBudget {
    fn default() -> TurnBudget {
        TurnBudget::new()
    }
}

impl TurnBudget {
    /// A full budget.
    pub fn new() -> TurnBudget {
        TurnBudget {
            bytes: TURN_BYTES,
            handoffs: TURN_HANDOFFS,
            spent: 0,
        }
    }

    /// A budget of `bytes` and `handoffs` (tests use small ones).
    pub fn with_limits(bytes: usize, handoffs: usize) -> TurnBudget {
        TurnBudget {
            bytes,
            handoffs,
            spent: 0,
        }
    }

    /// Starts a new turn.
    pub fn refill(&mut self) {
        self.bytes = TURN_BYTES;
        self.handoffs = TURN_HANDOFFS;
    }

    /// Records `n` bytes read or written.
    pub fn spend_bytes(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
        self.spent += n as u64;
    }

    /// Bytes spent so far, across turns: a running total to take
    /// differences of.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Records one visit to a connection (see `VISIT_COST`).
    pub fn spend_visit(&mut self) {
        self.spend_bytes(VISIT_COST);
    }

    /// Records one message handed to one member.
    pub fn spend_handoff(&mut self) {
        self.handoffs = self.handoffs.saturating_sub(1);
    }

    /// True once either allowance is used up: stop and poll again.
    pub fn exhausted(&self) -> bool {
        self.bytes == 0 || self.handoffs == 0
    }

    /// Bytes that may still be moved this turn.
    pub fn bytes_left(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_or_handoffs_exhaust_it_and_refill_restores_it() {
        let mut b = TurnBudget::with_limits(100, 2);
        b.spend_bytes(60);
        assert!(!b.exhausted());
        assert_eq!(b.bytes_left(), 40);
        b.spend_bytes(1000); // saturates, never wraps
        assert!(b.exhausted());
        assert_eq!(b.bytes_left(), 0);
        assert_eq!(b.spent(), 1060, "the running total does not saturate");
        b.refill();
        assert_eq!(b.bytes_left(), TURN_BYTES);
        let mut b = TurnBudget::with_limits(100, 2);
        b.spend_handoff();
        assert!(!b.exhausted());
        b.spend_handoff();
        assert!(b.exhausted(), "handoffs alone end the turn");
    }
}
