//! Server counters, readable from any thread while the reactor runs.
//!
//! The reactors are the only writers; they bump relaxed atomics (one add
//! each, uncontended with the default single reactor; with `--reactors N`
//! the N threads share these cache lines). Readers take a [`StatsSnapshot`],
//! a plain copy that logs and compares easily. Counters only grow, except
//! the gauges `active` and `memory_held`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters, shared between the reactor and [`Stats`] handles.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        /// A copy of every counter at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Counters {
            /// Copies every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $( $name: self.$name.load(Relaxed), )* }
            }
        }

        impl fmt::Display for StatsSnapshot {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut sep = "";
                $(
                    write!(f, "{}{}={}", sep, stringify!($name), self.$name)?;
                    sep = " ";
                )*
                let _ = sep;
                Ok(())
            }
        }
    };
}

counters! {
    /// TCP connections accepted.
    accepted,
    /// TCP connections open now.
    active,
    /// TCP connections closed, for any reason.
    closed,
    /// Connections closed by a reset or broken pipe from the peer.
    resets,
    /// TCP bytes read.
    bytes_in,
    /// TCP bytes written.
    bytes_out,
    /// UDP datagrams received.
    datagrams_in,
    /// UDP datagrams sent back.
    datagrams_out,
    /// UDP replies dropped because the send queue was full.
    datagrams_dropped,
    /// Times a connection's reading was paused because its output passed `max_pending`.
    backpressure_pauses,
    /// Connections closed by the idle timeout.
    idle_closes,
    /// Failed `accept` calls (EMFILE, ENFILE, ...).
    accept_errors,
    /// Connections closed with output still unsent when the drain timeout ran out.
    drain_aborts,
    /// Protocol violations that closed a connection (oversize frame or line, bad request).
    protocol_errors,
    /// `framed`: incomplete frames discarded at EOF.
    partial_frames,
    /// `chat`: members disconnected because they did not read.
    slow_consumers,
    /// `files`: files served whole.
    files_served,
    /// Times a connection stopped being read because the server held more
    /// than `--max-memory` (see `memory.rs`).
    memory_pauses,
    /// Bytes held for clients now: unsent output, partial frames and lines,
    /// unanswered requests (what `--max-memory` bounds).
    memory_held,
    /// The longest turn of the event loop since start, in microseconds:
    /// from `poll` returning to the loop's next `poll`. Nothing else runs
    /// during a turn, so this bounds how long any client waited on others.
    max_turn_us,
}

/// A cloneable, `Send` handle on a server's counters.
#[derive(Debug, Clone, Default)]
pub struct Stats(pub(crate) Arc<Counters>);

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.0.snapshot()
    }
}

/// Adds `n` to a counter (relaxed: counters order nothing).
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Subtracts `n` from a gauge.
#[inline]
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Relaxed);
}

/// Raises a high-water counter to `n` if it is below.
#[inline]
pub(crate) fn max(counter: &AtomicU64, n: u64) {
    counter.fetch_max(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_copies_and_displays_every_counter() {
        let s = Stats::default();
        add(&s.0.accepted, 3);
        add(&s.0.active, 2);
        sub(&s.0.active, 1);
        let snap = s.snapshot();
        assert_eq!(snap.accepted, 3);
        assert_eq!(snap.active, 1);
        let text = snap.to_string();
        assert!(text.starts_with("accepted=3 active=1 closed=0"), "{text}");
        assert!(text.contains("files_served=0"));
        max(&s.0.max_turn_us, 7);
        max(&s.0.max_turn_us, 3);
        assert_eq!(s.snapshot().max_turn_us, 7);
    }
}
