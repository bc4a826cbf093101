//! The server-wide memory budget (`--max-memory`): every byte the server
//! holds for its clients, counted in one place.
//!
//! `--max-pending` bounds one connection's output, and `--max-frame` one
//! partial frame, but ten thousand connections each holding a partial 1 MiB
//! frame are 10 GiB. So each reactor also keeps a running total of what its
//! connections hold: unsent output (a chat line owed to five members counts
//! five times: conservative, never an undercount), partial frames, partial
//! lines, unanswered file requests, and chat chunks still on their way
//! through the room (each once). Chat's reads are cut so that their chunk
//! fits what a read may add (`Chat::input_for`): a read of empty lines
//! grows some 16-fold into prefixed lines.
//!
//! Policy: while the total is over the limit, a connection holding
//! `SMALL_HOLDING` bytes or more is not read (the biggest holders are the
//! ones whose reads would grow it), and one holding less may read only up to
//! that much: a new client's small request is still served, and no client
//! can add more than `SMALL_HOLDING` plus its reply before it too is paused.
//! Reading resumes for everyone once the total falls to the low-water mark,
//! three quarters of the limit, so the server does not flap at the edge.
//! Nobody is disconnected for holding memory: clients are slowed down, and their bytes
//! wait in the kernel (their TCP windows close), not in our memory.
//! (Redis's `maxmemory-clients` disconnects the biggest client instead.)
//! A paused connection still hears of its peer's reset and FIN: a partial
//! frame its FIN leaves incomplete is dropped then (`conn/ending.rs`), so
//! input that can never become a reply does not keep the budget engaged.
//!
//! Progress: pausing alone can deadlock. Framed clients whose frames in
//! flight add up to more than the budget are each paused mid-frame, and a
//! partial frame is given back only when it completes, which takes reads
//! the budget forbids: the total never falls. So while the budget is over,
//! one paused holder of an unfinished frame at a time gets an *overdraft*
//! (`memory/overdraft.rs`): it may read past the budget exactly the bytes
//! its frame still misses (`Handler::unfinished`), no more. When its frame
//! is done and the reply taken (it holds no more than before), the next
//! paused holder gets it, first paused first (one with nothing to read is
//! passed over until more of its input arrives: it could only hold the
//! overdraft idle, while everyone behind it waited); each completed frame gives
//! back what its holder held, until the total falls to the low-water mark
//! and everyone reads. Holders of echo or chat output do not qualify (they
//! hold bytes owed, which go when their peer reads), nor do partial lines
//! (a line has no known end). A holder that stops moving bytes for
//! `OVERDRAFT_STALL` (or has not finished after `OVERDRAFT_LIMIT`) loses
//! the overdraft: if it read nothing with it, it just waits again at the
//! back; if it did, its unfinished frame is dropped as at EOF (counted in
//! `partial_frames`) and, if it still holds more than before (a reply it
//! does not read), the connection is closed. That is what keeps the
//! overdraft one frame: the next holder starts only once the last one gave
//! back what it took, and a client that stalls costs the others at most
//! `OVERDRAFT_STALL`, and itself its frame.
//!
//! So each reactor's total stays below the limit plus one frame (the
//! overdraft: the frame header plus `--max-frame`), plus what the visit
//! that crossed the limit added (up to two reads, or half a frame when a
//! partial frame's buffer doubled), plus `connections x ~2 x
//! SMALL_HOLDING`, whatever clients do. Pure bookkeeping, unit-tested.

pub(crate) mod overdraft;

/// Default `--max-memory`: 1 GiB. Ordinary traffic holds next to nothing
/// (echo replies go straight back; an idle connection owns no buffer), so
/// the budget only matters when clients misbehave or stall, and then it
/// should engage before the machine runs short, yet not for the heaviest
/// honest use: 4,000 slow readers each at the default `--max-pending`, or
/// a thousand 1 MiB frames in flight at once. On a machine with less than
/// ~4 GiB to spare, set it lower.
pub(crate) const DEFAULT_MAX_MEMORY: usize = 1024 * 1024 * 1024;

/// Over the budget, a connection holding less than this may still read
/// (at most up to this much): enough for any small request.
pub(crate) const SMALL_HOLDING: usize = 4096;

/// One reactor's share of `--max-memory`, and what it holds now.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    limit: usize,
    /// Three quarters of `limit`: reads resume at or below it.
    low_water: usize,
    /// Bytes held by all connections now.
    held: usize,
    /// True from when `held` passed `limit` until it fell to `low_water`.
    over: bool,
}

/// What a change in the total did to the budget's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pressure {
    /// Nothing changed.
    Same,
    /// The total just passed the limit: big holders stop reading.
    Engaged,
    /// The total just fell to the low-water mark: everyone may read again.
    Released,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            low_water: limit / 4 * 3,
            held: 0,
            over: false,
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// True while reads are restricted.
    pub(crate) fn is_over(&self) -> bool {
        self.over
    }

    /// One connection's holding went from `before` to `after` bytes.
    pub(crate) fn update(&mut self, before: usize, after: usize) -> Pressure {
        self.held = (self.held + after).saturating_sub(before);
        if !self.over && self.held > self.limit {
            self.over = true;
            Pressure::Engaged
        } else if self.over && self.held <= self.low_water {
            self.over = false;
            Pressure::Released
        } else {
            Pressure::Same
        }
    }

    /// How many bytes a connection holding `held` may read now: unlimited
    /// under the budget, a small top-up over it, 0 for the big holders.
    pub(crate) fn read_allowance(&self, held: usize) -> usize {
        if self.over {
            SMALL_HOLDING.saturating_sub(held)
        } else {
            usize::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engages_past_the_limit_and_releases_at_low_water() {
        let mut m = MemoryBudget::new(100_000);
        assert_eq!(m.update(0, 60_000), Pressure::Same);
        assert_eq!(m.read_allowance(60_000), usize::MAX);
        assert_eq!(m.update(0, 50_000), Pressure::Engaged);
        assert_eq!(m.held(), 110_000);
        // Big holders stop; small ones may top up to SMALL_HOLDING.
        assert_eq!(m.read_allowance(60_000), 0);
        assert_eq!(m.read_allowance(SMALL_HOLDING), 0);
        assert_eq!(m.read_allowance(0), SMALL_HOLDING);
        assert_eq!(m.read_allowance(100), SMALL_HOLDING - 100);
        // Below the limit but above low water (75,000): still restricted.
        assert_eq!(m.update(50_000, 20_000), Pressure::Same);
        assert!(m.is_over());
        assert_eq!(m.update(60_000, 50_000), Pressure::Released);
        assert_eq!(m.held(), 70_000);
        assert_eq!(m.read_allowance(70_000), usize::MAX);
    }

    #[test]
    fn a_connection_going_away_gives_back_what_it_held() {
        let mut m = MemoryBudget::new(100);
        m.update(0, 150);
        assert!(m.is_over());
        assert_eq!(m.update(150, 0), Pressure::Released);
        assert_eq!(m.held(), 0);
    }
}
