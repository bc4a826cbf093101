//! [`Stamp`]: a point in time in 8 bytes, for the timestamps every
//! connection carries.
//!
//! An `Instant` takes 16 bytes (seconds and nanoseconds). A connection's
//! slab entry and timer entry hold several timestamps, and 10,000 idle
//! connections pay for each of them 10,000 times; idle deadlines of seconds
//! need no nanoseconds. A `Stamp` counts whole milliseconds since an epoch
//! taken once per process, in a `NonZeroU64`, so `Option<Stamp>` is 8 bytes
//! too. It never wraps (2^64 ms is 584 million years).
//!
//! Converting an `Instant` rounds **up** to the next millisecond, so a
//! deadline kept as a `Stamp` is never earlier than the `Instant` it came
//! from: a timer entry that comes due is really due (an entry that fired
//! early would find its connection not yet idle and be pushed back at the
//! same rounded time, again and again), and no connection is closed as idle
//! before its time. The cost is firing up to a millisecond late.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the process's epoch, plus one (so zero is free for
/// `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(NonZeroU64);

/// The process's time origin: a second before the first stamp was taken,
/// so that instants read shortly before it (a turn's `now`) convert
/// exactly. Instants older than that convert to the epoch itself.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
    })
}

impl Stamp {
    /// `at`, rounded up to the next whole millisecond.
    pub fn new(at: Instant) -> Stamp {
        let since = at.saturating_duration_since(epoch());
        let whole = since.as_secs().saturating_mul(1000) + u64::from(since.subsec_millis());
        let ms = if since.subsec_nanos() % 1_000_000 == 0 {
            whole
        } else {
            whole.saturating_add(1)
        };
        Stamp(NonZeroU64::MIN.saturating_add(ms))
    }

    /// The `Instant` this stamp stands for (at or after the one it was made
    /// from, by less than a millisecond).
    pub fn instant(self) -> Instant {
        epoch() + Duration::from_millis(self.0.get() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_eight_bytes_and_so_is_an_optional_one() {
        assert_eq!(std::mem::size_of::<Stamp>(), 8);
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    /// Rounding is up, by less than a millisecond, and whole milliseconds
    /// convert exactly; order is kept.
    #[test]
    fn converting_rounds_up_to_the_millisecond() {
        let base = Stamp::new(Instant::now()).instant();
        assert_eq!(Stamp::new(base).instant(), base, "whole ms are exact");
        let inside = base + Duration::from_micros(300);
        assert_eq!(
            Stamp::new(inside).instant(),
            base + Duration::from_millis(1)
        );
        let later = base + Duration::from_secs(300);
        assert!(Stamp::new(base) < Stamp::new(inside));
        assert!(Stamp::new(inside) < Stamp::new(later));
        assert_eq!(Stamp::new(later).instant(), later);
    }

    /// An instant from before the epoch becomes the epoch, not a panic.
    #[test]
    fn instants_before_the_epoch_saturate() {
        let first = Stamp::new(Instant::now());
        let old = epoch().checked_sub(Duration::from_secs(5));
        if let Some(old) = old {
            assert_eq!(Stamp::new(old).instant(), epoch());
        }
        assert!(first.instant() >= epoch());
    }
}
