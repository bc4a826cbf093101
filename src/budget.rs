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

/// Bytes (read plus written) one turn may move. A light client's request
/// waits for the turn in progress to end, so this is chosen from the light
/// client's latency under bulk load (`scripts/bulk-vs-light.sh`: 100 bulk
/// connections, release build, shared 2-core VM). Bulk echo runs at about
/// 2.2 GB/s each way on one core, so 1 MiB costs about 0.2 ms; with 1 MiB
/// turns (and 4 reads per visit) the light client's p99 was 7.6 to 8.4 ms
/// against 1.6 to 3.0 ms on an idle server in the same run, with 256 KiB
/// turns (2 reads per visit) 0.6 to 1.0 ms against 0.13 to 0.15 ms, at the
/// same bulk throughput and syscalls per small message (1.9, against 2.04
/// before turns had a budget: the extra `epoll_wait` is lost in the noise).
pub(crate) const TURN_BYTES: usize = 256 * 1024;

/// What a visit costs on top of the bytes it moves: its syscalls. A small
/// echo (one read, one write) takes about 7 us at 140,000 messages/s on
/// one core, about what moving 32 KiB costs; charging 8 KiB lets a turn
/// serve up to 32 small visits (a quarter of a millisecond) instead of a
/// whole batch of 1,024 events (~7 ms).
pub(crate) const VISIT_COST: usize = 8 * 1024;

/// Chat messages one turn may hand to members. A handoff is an `Rc` clone
/// and one `writev`, a few microseconds for a short line (plus the copy,
/// which the byte budget counts): 512 of them take a millisecond or two.
/// With it the 500-member chat flood (`examples/chat_burst.rs`) ran with
/// turns of at most 7 ms, and another member's line reached everyone in
/// 4 ms.
pub(crate) const TURN_HANDOFFS: usize = 512;

/// What is left of this turn's budget.
#[derive(Debug, Clone)]
pub(crate) struct TurnBudget {
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
    pub(crate) fn new() -> TurnBudget {
        TurnBudget {
            bytes: TURN_BYTES,
            handoffs: TURN_HANDOFFS,
            spent: 0,
        }
    }

    /// A budget of `bytes` and `handoffs` (tests use small ones).
    #[cfg(test)]
    pub(crate) fn with_limits(bytes: usize, handoffs: usize) -> TurnBudget {
        TurnBudget {
            bytes,
            handoffs,
            spent: 0,
        }
    }

    /// Starts a new turn.
    pub(crate) fn refill(&mut self) {
        self.bytes = TURN_BYTES;
        self.handoffs = TURN_HANDOFFS;
    }

    /// Records `n` bytes read or written.
    pub(crate) fn spend_bytes(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
        self.spent += n as u64;
    }

    /// Bytes spent so far, across turns: a running total to take
    /// differences of.
    pub(crate) fn spent(&self) -> u64 {
        self.spent
    }

    /// Records one visit to a connection (see `VISIT_COST`).
    pub(crate) fn spend_visit(&mut self) {
        self.spend_bytes(VISIT_COST);
    }

    /// Records one message handed to one member.
    pub(crate) fn spend_handoff(&mut self) {
        self.handoffs = self.handoffs.saturating_sub(1);
    }

    /// True once either allowance is used up: stop and poll again.
    pub(crate) fn exhausted(&self) -> bool {
        self.bytes == 0 || self.handoffs == 0
    }

    /// Bytes that may still be moved this turn.
    #[cfg(test)]
    pub(crate) fn bytes_left(&self) -> usize {
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
