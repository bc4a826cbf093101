//! When the reactor should pause so that a UDP batch fills
//! (`--udp-coalesce`, "interrupt moderation"; see `udp.rs` for why).
//!
//! Two rules, both about whether a pause pays for its own syscall and
//! wakeup:
//!
//! - **Start**: a read that found [`COALESCE_MIN`] or more datagrams
//!   waiting says they arrive faster than the loop turns, so a pause will
//!   gather more. One is what a lone request-reply client sends: it never
//!   makes the reactor pause.
//! - **Keep**: a pause must bring more than the loop finds without one.
//!   Each read made without a pause sets that baseline; a read after a
//!   pause that found no more than it (a client that sends a burst and
//!   waits for the replies: the pause only delays its next burst, which
//!   would have come whole anyway) is a miss, and the next reads that would
//!   pause do not, for a number of them that doubles with every miss in a
//!   row (16, 32, ... 1024) and starts over after a pause that paid. Such a
//!   client pays for one pause in a thousand bursts; many clients with
//!   datagrams in flight keep paying off and keep the pauses.
//!
//! Pure bookkeeping, no clock and no socket: the unit tests below drive it
//! read by read.

use std::time::Duration;

/// Datagrams a read must find waiting before the reactor pauses. Measured
/// at 20,000 datagrams a second from 50 sockets, a threshold of 2 cost
/// about 25% more server CPU per datagram than no pause at all, 4 and 8
/// nothing measurable, and all three gave the same batches under full
/// load.
pub(crate) const COALESCE_MIN: usize = 4;
/// Reads that would pause let pass after a first miss.
const FIRST_BACKOFF: u32 = 16;
/// The longest run of reads let pass after misses in a row.
const MAX_BACKOFF: u32 = 1024;

/// The pause rule's state (see the module docs).
#[derive(Debug)]
pub(crate) struct Moderation {
    /// `--udp-coalesce`; zero: never pause.
    pause: Duration,
    /// Datagrams the latest read found.
    found: usize,
    /// Datagrams the latest read made without a pause found: what the
    /// clients bring by themselves.
    baseline: usize,
    /// The reactor paused since the latest read.
    paused: bool,
    /// Reads that would pause still to let pass.
    skip: u32,
    /// How many to let pass after the next miss.
    backoff: u32,
}

impl Moderation {
    pub(crate) fn new(pause: Duration) -> Moderation {
        Moderation {
            pause,
            found: 0,
            baseline: 0,
            paused: false,
            skip: 0,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Whether a pause is configured at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.pause.is_zero()
    }

    /// How long to pause before the next poll, if at all.
    pub(crate) fn pause(&self) -> Option<Duration> {
        let due = self.enabled() && self.skip == 0 && self.found >= COALESCE_MIN;
        due.then_some(self.pause)
    }

    /// The reactor paused: the next read tells whether that paid.
    pub(crate) fn paused(&mut self) {
        self.paused = true;
    }

    /// A turn served the socket and read `found` datagrams (0 if it read
    /// none).
    pub(crate) fn read(&mut self, found: usize) {
        self.found = found;
        if std::mem::take(&mut self.paused) {
            if found > self.baseline {
                self.backoff = FIRST_BACKOFF;
            } else {
                self.skip = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            return;
        }
        self.baseline = found;
        if self.skip > 0 && found >= COALESCE_MIN {
            self.skip -= 1;
        }
    }

    /// UDP stopped: nothing more to pause for.
    pub(crate) fn stop(&mut self) {
        self.pause = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_micros(20);

    /// Reads as the reactor would make them: a pause before each read that
    /// follows one the rule said to pause after. Returns how many paused.
    fn run(m: &mut Moderation, reads: impl IntoIterator<Item = usize>) -> usize {
        let mut pauses = 0;
        for found in reads {
            if m.pause().is_some() {
                m.paused();
                pauses += 1;
            }
            m.read(found);
        }
        pauses
    }

    #[test]
    fn a_lone_datagram_or_a_few_never_pause() {
        let mut m = Moderation::new(PAUSE);
        assert_eq!(m.pause(), None, "nothing read yet");
        assert_eq!(run(&mut m, [1, 0, 2, COALESCE_MIN - 1, 1]), 0);
        m.read(COALESCE_MIN);
        assert_eq!(m.pause(), Some(PAUSE));
        let mut off = Moderation::new(Duration::ZERO);
        off.read(100);
        assert_eq!(off.pause(), None, "--udp-coalesce 0");
    }

    /// Many clients: 4 found without a pause, then 20 after each one.
    #[test]
    fn pauses_that_gather_more_go_on() {
        let mut m = Moderation::new(PAUSE);
        let pauses = run(&mut m, [4].into_iter().chain([20; 1000]));
        assert_eq!(pauses, 1000, "every read after the first followed a pause");
    }

    /// One client sending bursts of 4 and waiting for the replies: every
    /// read finds 4, with or without a pause. The first pause misses, then
    /// the rule lets 16 bursts pass, 32 after the next miss, and so on.
    #[test]
    fn pauses_that_gather_nothing_more_back_off() {
        let mut m = Moderation::new(PAUSE);
        let pauses = run(&mut m, [4; 10_000]);
        // Misses at read 1, then after 16, 32, 64, ..., 1024, 1024, ...
        assert!(
            (8..=20).contains(&pauses),
            "{pauses} pauses in 10,000 bursts"
        );
        // A pause that pays again starts the backoff over.
        let mut m = Moderation::new(PAUSE);
        run(&mut m, [4; 200]);
        let skip_after_misses = m.backoff;
        assert!(skip_after_misses > FIRST_BACKOFF);
        while m.pause().is_none() {
            m.read(4);
        }
        m.paused();
        m.read(30);
        assert_eq!(m.backoff, FIRST_BACKOFF);
        assert_eq!(m.pause(), Some(PAUSE));
    }

    /// A pause after which nothing at all was read is a miss too.
    #[test]
    fn a_pause_followed_by_no_read_is_a_miss() {
        let mut m = Moderation::new(PAUSE);
        m.read(8);
        m.paused();
        m.read(0);
        m.read(8);
        assert_eq!(m.pause(), None, "backing off");
        m.stop();
        assert_eq!(m.pause(), None, "stopped");
    }
}
