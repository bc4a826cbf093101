//! Server counters, readable from any thread while the reactor runs.
//!
//! The reactors are the only writers; they bump relaxed atomics (one add
//! each, uncontended with the default single reactor; with `--reactors N`
//! the N threads share these cache lines). Readers take a [`StatsSnapshot`],
//! a plain copy that logs and compares easily. Counters only grow; the few
//! marked `: gauge` in the list (`active`, `memory_held`, ...) go up and
//! down (`max_turn_us` only up, but it is a high-water mark, not a count).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident $(: $kind:ident)? ),* $(,)?) => {
        /// Live counters, shared between the reactor and [`Stats`] handles.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( $(#[doc = $doc])* pub(crate) $name: AtomicU64, )*
        }

        /// A copy of every counter at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl Counters {
            /// Copies every counter.
            pub(crate) fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $( $name: self.$name.load(Relaxed), )* }
            }
        }

        impl StatsSnapshot {
            /// Every figure with its name, doc comment and kind, in
            /// declaration order: what `metrics/` exports, so a counter
            /// added to the list is exported without further code.
            pub(crate) fn fields(&self) -> Vec<Field> {
                vec![$(
                    Field {
                        name: stringify!($name),
                        help: concat!($($doc),*),
                        kind: kind!($($kind)?),
                        value: self.$name,
                    },
                )*]
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

/// `name` in the list is a counter; `name: gauge` a gauge.
macro_rules! kind {
    () => {
        Kind::Counter
    };
    (gauge) => {
        Kind::Gauge
    };
}

/// Whether a figure only grows or moves both ways: it decides how it is
/// exported (`echoloop_<name>_total` counter or `echoloop_<name>` gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only grows (until the process restarts).
    Counter,
    /// A level that goes up and down.
    Gauge,
}

/// One figure of a [`StatsSnapshot`], described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// The field name, as logged (`accepted`).
    pub(crate) name: &'static str,
    /// Its doc comment, lines joined (each starts with a space).
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) value: u64,
}

counters! {
    /// TCP connections accepted.
    accepted,
    /// TCP connections open now.
    active: gauge,
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
    /// Pauses the reactor took to let a UDP batch fill (`--udp-coalesce`).
    udp_pauses,
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
    /// `framed`: incomplete frames discarded because the input ended first (EOF, shutdown).
    partial_frames,
    /// `chat`: members disconnected because they did not read.
    slow_consumers,
    /// `chat`: connections that left before their join notice reached
    /// every member; the members that had not had it got neither notice.
    notices_skipped,
    /// `files`: files served whole.
    files_served,
    /// Bytes owed to TCP peers, held in connection output buffers.
    pending_bytes: gauge,
    /// TCP connections whose reading is paused, by backpressure or by the
    /// memory budget.
    paused_conns: gauge,
    /// Times a connection stopped being read because the server held more
    /// than `--max-memory` (see `memory.rs`).
    memory_pauses,
    /// Bytes held for clients now: unsent output, partial frames and lines,
    /// unanswered requests (what `--max-memory` bounds).
    memory_held: gauge,
    /// The most bytes held for clients at once since start (the high-water
    /// mark of `memory_held`).
    memory_held_max: gauge,
    /// Times a paused framed client was let read past `--max-memory` to
    /// finish its frame (one at a time per reactor, see `memory.rs`).
    memory_overdrafts,
    /// Overdrafts that ran out after the client read with one: its
    /// unfinished frame was dropped, and its connection closed if it still
    /// held more than before (a reply it did not read).
    overdraft_expiries,
    /// The longest turn of the event loop since start (microseconds in the
    /// stats line, seconds in the metrics): from `poll` returning to the
    /// loop's next `poll`. Nothing else runs
    /// during a turn, so this bounds how long any client waited on others.
    max_turn_us: gauge,
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
/// Moves a gauge by the change of what it counts from `before` to `after`.
#[inline]
pub(crate) fn shift(gauge: &AtomicU64, before: usize, after: usize) {
    if after > before {
        add(gauge, (after - before) as u64);
    } else if before > after {
        sub(gauge, (before - after) as u64);
    }
}

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
        shift(&s.0.memory_held, 0, 10);
        shift(&s.0.memory_held, 10, 4);
        shift(&s.0.memory_held, 4, 4);
        assert_eq!(s.snapshot().memory_held, 4);
        max(&s.0.max_turn_us, 7);
        max(&s.0.max_turn_us, 3);
        assert_eq!(s.snapshot().max_turn_us, 7);
    }

    #[test]
    fn fields_carry_name_doc_kind_and_value_of_every_counter() {
        let s = Stats::default();
        add(&s.0.accepted, 2);
        let snap = s.snapshot();
        let fields = snap.fields();
        let accepted = fields.iter().find(|f| f.name == "accepted").unwrap();
        assert_eq!(accepted.value, 2);
        assert_eq!(accepted.kind, Kind::Counter);
        assert_eq!(accepted.help.trim(), "TCP connections accepted.");
        let active = fields.iter().find(|f| f.name == "active").unwrap();
        assert_eq!(active.kind, Kind::Gauge);
        // Every logged figure is described, in the same order.
        let line = snap.to_string();
        let logged: Vec<&str> = line
            .split(' ')
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        assert_eq!(logged, names);
        assert!(
            fields.iter().all(|f| !f.help.trim().is_empty()),
            "{fields:?}"
        );
    }

    /// The doc comments become the metrics' HELP text, where `_us` figures
    /// are exported in seconds: a HELP saying "in microseconds" would lie.
    #[test]
    fn microsecond_figures_do_not_claim_a_unit_the_metrics_change() {
        for f in Stats::default().snapshot().fields() {
            if f.name.ends_with("_us") {
                assert!(!f.help.contains("in microseconds"), "{f:?}");
            }
        }
    }
}
