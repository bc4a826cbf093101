//! loadgen: drives TCP or UDP load at an echo server, verifies every echoed byte, and
//! reports throughput and latency that a stalling server cannot hide.
//!
//! # Closed loop and open loop
//!
//! In a **closed loop** (the default) each connection keeps `--pipeline` messages in flight:
//! when an echo returns, the next message goes out. The offered load adapts to the server,
//! which is what you want to find its throughput. Latency is the time from the send to the
//! complete echo.
//!
//! In an **open loop** (`--rate R`) messages are sent on a fixed schedule, R per second in
//! total, spread evenly over the connections (`schedule.rs`), whatever the server does. That
//! is how real users behave, and it is the only way to see what a stall costs them.
//!
//! # Coordinated omission
//!
//! A closed-loop tester that measures from the actual send time coordinates with the
//! server: while the server stalls for a second, the tester sends nothing, so the thousands
//! of requests users would have sent in that second are never measured, and p99 looks fine.
//! In open loop loadgen measures each message from its *scheduled* send time (wrk2 and
//! HdrHistogram call this correcting for coordinated omission). After a 1 s stall the
//! messages due during it are sent late and their latency includes the wait, so the stall
//! shows in p99 and max. If loadgen itself cannot keep the schedule, it counts the late
//! sends and says so in the report. The reactor wakes for scheduled sends with a `timerfd`
//! (`timer.rs`), not the millisecond poll timeout, so its own timer slop stays in microseconds.
//!
//! # Verification
//!
//! Each message carries its connection id, a sequence number, a check word and a pattern
//! derived from both ([`payload`]); every byte of every echo is compared. A per-connection
//! window (`verify.rs`) tells corrupt, missing, duplicated and reordered data apart, and for
//! UDP lost (no answer within `--udp-timeout`) and late datagrams. Any data error or failed
//! connection fails the run; UDP loss fails it only beyond `--max-loss`.
//!
//! # Reactor
//!
//! Each of `--threads` threads runs one mio `Poll` (`driver.rs`) over every `threads`-th
//! connection. Readiness is edge-triggered: a readable connection is read until
//! `WouldBlock` (or, for TCP on Linux, a short read, unless the same event reported the
//! peer's FIN or an error: no later edge would), its echoes verified, and then all the
//! messages it may send go out in **one** `write`. Buffers are allocated when a connection
//! opens and reused; nothing is allocated per message. A turn of the loop costs what its
//! events cost: deadlines sit in a heap (`deadlines.rs`) and the counts the loop decides by
//! are kept as connections change (`table.rs`), so 19,000 idle connections cost nothing.
//!
//! # Connect phase
//!
//! Connections open in batches between polls (`ramp.rs`), from several loopback source
//! addresses when there are many (`source.rs`), each stamped when its own `connect()` is
//! called; a connect times out only after the socket itself was asked. Warm-up starts when
//! every connection has opened or failed (`phase.rs`), so the measured window always has
//! them all. Every handshake's duration goes into its own histogram; `--reconnect-after N`
//! closes each connection after N echoes and opens a new one, measuring churn.
//!
//! # Many processes, one run
//!
//! `--shard I/N` makes this process one of N running one load together (`shard.rs`): it
//! owns the global connection ids `I, I+N, ...` and sends their messages on the run's own
//! schedule, so the shards' sends interleave into exactly `--rate`. `--start-at` fixes the
//! measured window in wall-clock time (`start.rs`), so shards on different machines measure
//! the same seconds. Each `.hlog` ends with an end line (`endline.rs`) holding the shard's
//! verdict and window, from which `loadgen merge` ([`merge`], `merged.rs`) gives one verdict:
//! PASS only if every shard is there, whole, and passed.
//!
//! # Layout
//!
//! The layers point one way: settings, then codec and time, then a thread's context and
//! clients, then the loop, then what is reported.
//!
//! | file | owns |
//! |---|---|
//! | `config.rs`, `validate.rs` | [`RunConfig`], its defaults and limits; which settings go together |
//! | `cli.rs` | the command line (`cli` feature): flags, duration parsing, `--check` |
//! | `payload.rs` | the message codec |
//! | `verify.rs` | in-flight window, error kinds |
//! | `stream.rs` | a TCP echo stream cut into messages; resynchronising after junk |
//! | `clock.rs`, `timeline.rs` | ns since the epoch; the timeline and the clock's decisions |
//! | `schedule.rs` | open-loop schedule and per-thread cursor |
//! | `timer.rs` | precise wake-ups (timerfd, through rustix) |
//! | `ctx.rs` | a reactor thread's context: clock, codec, window, histograms, counters |
//! | `send.rs`, `budget.rs` | the send policy; what a run's buffers cost |
//! | `conn.rs` | the `Client` trait and what a handler tells the loop |
//! | `source.rs`, `sys.rs` | source addresses and ports; the syscalls std lacks (the only `unsafe`) |
//! | `tcp.rs`, `udp.rs` | the two clients |
//! | `udp_batch.rs` | UDP on Linux: a thread's `sendmmsg`/`recvmmsg` batch buffers (`--udp-batch`) |
//! | `phase.rs` | the connect phase shared by the threads |
//! | `ramp.rs` | which connection opens next |
//! | `table.rs`, `deadlines.rs` | a thread's connections, their counts and deadlines |
//! | `driver.rs`, `msg.rs` | the per-thread event loop; what it tells the collector |
//! | `stats.rs`, `latency.rs`, `collect.rs`, `progress.rs` | counters; histograms; adding intervals; the progress lines |
//! | `hlog.rs`, `endline.rs` | the `.hlog` format, written and read; its end line |
//! | `report.rs`, `connections.rs`, `settings.rs` | text and JSON reports, pass/fail; JSON `settings` |
//! | `export.rs` | `.hgrm` and SVG plot |
//! | `error.rs`, `io_text.rs` | why a run or merge produced no report; exit statuses; IO error text |
//! | `shard.rs`, `start.rs` | `--shard` id arithmetic; `--start-at` parsing and checks |
//! | `merge.rs`, `merged.rs` | `loadgen merge` over `.hlog` files; its verdict over the shards |
//!
//! # Example
//!
//! ```no_run
//! let mut cfg = loadgen::RunConfig::new("127.0.0.1:7878".parse().unwrap());
//! cfg.duration = std::time::Duration::from_secs(2);
//! cfg.rate = Some(10_000.0);
//! let report = loadgen::run(&cfg).unwrap();
//! println!("{}", report.to_text());
//! assert!(report.passed());
//! ```

#![deny(missing_docs)]
// Unsafe code is fenced into `sys.rs` (the syscalls std, mio, socket2 and rustix do not
// wrap); every block there says why it is sound, which clippy checks.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod budget;
#[cfg(feature = "cli")]
pub mod cli;
mod clock;
mod collect;
pub mod config;
mod conn;
mod connections;
mod ctx;
mod deadlines;
mod driver;
mod endline;
mod error;
pub mod export;
pub mod hlog;
mod io_text;
mod latency;
pub mod merge;
mod merged;
mod msg;
pub mod payload;
mod phase;
mod progress;
mod ramp;
pub mod report;
mod runner;
mod schedule;
mod send;
mod settings;
mod shard;
mod source;
mod start;
mod stats;
mod stream;
#[allow(unsafe_code)]
mod sys;
mod table;
mod tcp;
mod timeline;
mod timer;
mod udp;
mod udp_batch;
mod validate;
mod verify;

use std::fs::File;
use std::io::Write;

pub use config::{ConfigError, Protocol, RunConfig};
pub use connections::ConnectionReport;
pub use error::{ConnectFailure, Error};
pub use merged::Merged;
pub use phase::GIVE_UP_AFTER;
pub use report::Report;
pub use runner::run;
pub use settings::Outputs;
pub use shard::{Shard, ShardError};
pub use start::StartAtError;
pub use verify::ErrorCounts;

/// Checks that a freshly opened output file takes writes, with a write of zero bytes:
/// a path can open and still refuse every write (`/proc/version` says EIO, `/dev/full`
/// ENOSPC), and that must fail before any traffic, not after the run. Writes nothing.
pub fn probe_write(mut file: &File) -> std::io::Result<()> {
    file.write(&[]).map(|_| ())
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on a socket about to be bound to a source address: the
/// port is then chosen at `connect()`, unique per (source, destination) pair rather than
/// per source address (README, "Source addresses and ports"). Linux only; elsewhere a
/// no-op. loadgen does this for every `--bind` connection; `examples/source_ports.rs`
/// measures why.
pub fn bind_address_no_port(socket: &socket2::Socket) -> std::io::Result<()> {
    sys::bind_address_no_port(socket)
}

/// Raises the soft open-files limit to the hard one, as the `loadgen` binary does before a
/// run (a library user decides whether to; tests of many connections do). Returns the new
/// soft limit, if it could be read.
pub fn raise_open_files_limit() -> Option<u64> {
    sys::raise_open_files_limit()
}
