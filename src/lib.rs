//! # echoloop: a non-blocking reactor, written to be read
//!
//! echoloop is an echo server (plus the protocols socket tutorials teach) that
//! serves many TCP connections and a UDP socket from **one thread**, with no
//! thread per client and no async runtime. This page explains how; the module
//! map at the end says where each idea lives.
//!
//! ## Readiness, not completion
//!
//! Every socket is non-blocking and registered with one [`mio::Poll`]
//! (epoll on Linux, kqueue on the BSDs). `poll` sleeps until some sockets are
//! *ready*: readable (bytes or a connection are waiting, or the peer closed) or
//! writable (the kernel's send buffer has room). Each registration carries a
//! [`mio::Token`]; the reactor's loop is a single `match` on it: the listener,
//! the UDP socket, signals, the shutdown waker, or a connection, whose token is
//! its key in a [`slab::Slab`] plus 16 (`token.rs`: the fixed tokens sit
//! below 16, so the two ranges never collide).
//!
//! ## Edge-triggered: drain until `WouldBlock`
//!
//! mio's readiness is **edge-triggered**: an event says "something changed",
//! once. If we read only part of what is queued, no further event will come
//! for the rest. So we accept until `WouldBlock`, `recv_from` until
//! `WouldBlock`, and read until `WouldBlock`, with one Linux refinement: a
//! read that returns less than the buffer proves the socket is drained, since
//! epoll raises a fresh edge for every later arrival (see `conn.rs`). We retry
//! `Interrupted`, and treat events as hints: a spurious event, or one for a
//! connection that already closed, must be harmless.
//!
//! ## Write first, buffer only what the kernel refuses
//!
//! Reads land in one reactor-wide 64 KiB scratch buffer and are written
//! straight back from it. Only the bytes the socket would not take are copied
//! into the connection's own buffer, and only then is WRITABLE interest
//! registered; it is dropped once that buffer drains, and the buffer's memory
//! is released. An idle connection therefore owns no heap buffer at all.
//!
//! ## Backpressure
//!
//! A client that sends but never reads would make an echo server buffer
//! without end. When a connection's unsent output reaches `max_pending`
//! (`>=`), the reactor stops reading it (drops READABLE interest): the
//! client's bytes wait in the kernel, its TCP window closes, and it is slowed
//! down instead of us growing. Once the output drains to the low-water mark
//! (`<=`, half of `max_pending`), reading resumes, immediately, because the
//! edge for bytes that arrived meanwhile is gone.
//!
//! ## Bounded turns
//!
//! While one turn of the loop runs, nothing else does: no accepts, no
//! timers, no other client. So no client may make a turn long. Every
//! connection event goes onto a run queue with the readiness it reported;
//! each *visit* to a connection does a capped share of work (a few reads,
//! one flush), and the turn as a whole has a budget of bytes moved and chat
//! messages handed out. When the budget is spent, whatever is still queued
//! keeps its readiness (edge-triggered: no new event would come for it) and
//! the loop polls again without sleeping. Connections that were idle are
//! served before connections that used up a visit, so a light client is not
//! stuck behind bulk senders. The longest turn since start is the counter
//! `max_turn_us`.
//!
//! ## Memory in total
//!
//! Backpressure bounds each connection; `--max-memory` bounds their sum:
//! every buffered byte (output, partial frames and lines) is counted, and
//! past the limit the biggest holders stop being read until the total falls
//! back. Slowing clients down comes before dropping any.
//!
//! ## Closing safely
//!
//! Connections are closed after the event batch, never in the middle of it, so
//! a slab key reused by a new connection cannot receive an event meant for the
//! old one. A peer's EOF (half-close) is answered by flushing everything owed,
//! then our FIN.
//!
//! ## Shutting down gracefully
//!
//! SIGINT/SIGTERM (or a [`ShutdownHandle`]) stop the accepting; connections
//! stop taking new requests, but input the kernel already received (and
//! acknowledged to the client) is still processed, once. Input arriving
//! later is read and dropped (a socket closed with unread input answers with
//! a reset that destroys our unsent output). Each connection flushes what it
//! owes and closes once the peer has *acknowledged* it all, or when
//! `drain_timeout` runs out. A second signal ends the process from inside
//! the signal handler, whatever the loop is doing.
//!
//! ## More than one core
//!
//! One reactor uses one core. `Config::reactors` (`--reactors N`) runs N
//! reactors that share nothing but the counters: each has its own poller,
//! its own listener and UDP socket bound to the same address with
//! SO_REUSEPORT, and its own connections; the kernel spreads new clients
//! across the listeners. Each one is exactly the loop described above.
//!
//! ## Watching the loop
//!
//! `Config::metrics` (`--metrics ADDR`) serves the counters, a few gauges and
//! two histograms of the loop itself (events per `poll`, time per turn) to
//! Prometheus. The HTTP endpoint is one more listener token in the same loop,
//! and its connections follow the same rules as every other socket.
//!
//! ## Module map
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | [`Config`], [`Mode`], defaults and validation (no IO) |
//! | `error.rs` | [`Error`] and [`ConfigError`]: what failed, and what to change |
//! | `server.rs` | [`Server`]: `bind` (per reactor), addresses, `run` on threads |
//! | `bind.rs` | one reactor's sockets (socket2), the hand-over to the reactor |
//! | `token.rs` | which `Token` means which socket (metrics and scrapes too); connection = slab key + 16 |
//! | `reactor/mod.rs` | the event loop: the turn, dispatch, visits |
//! | `reactor/accept.rs` | `Acceptor`: the listener, `max_conns`, EMFILE back-off |
//! | `reactor/drain.rs` | `Drain`: the graceful shutdown's deadline and checks |
//! | `reactor/runq.rs` | the run queue: fresh and old lanes |
//! | `reactor/conns.rs` | bookkeeping after IO: interest, timers, deferred close |
//! | `reactor/deadlines.rs` | the poll timeout, idle timers, periodic stats, the UDP pause |
//! | `reactor/room.rs` | chat fan-out, spread over turns, lines before join/leave notices (bookkeeping in `room/queue.rs`) |
//! | `reactor/account.rs`, `reactor/overdraft.rs` | `Memory`: the memory budget in the loop; the overdraft that lets one paused holder finish its frame |
//! | `reactor/metrics.rs` | the loop's side of `--metrics`: scrape events, turn histograms, gauges |
//! | `reactor/tests.rs` | idle timers, the drain and the UDP pause on virtual time |
//! | `budget.rs` | the work one turn may do |
//! | `memory.rs`, `memory/overdraft.rs` | the server-wide memory budget's policy; who waits for the overdraft, and when its holder runs out |
//! | `ready.rs` | readiness not served yet |
//! | `signals.rs` | SIGINT/SIGTERM, and the second one |
//! | `conn.rs`, `conn/` | one TCP connection: read/write loops, backpressure, half-close, its input's states, shutdown |
//! | `output.rs`, `output/` | the write path: write first, queue the rest, `sendfile` |
//! | `buffer.rs` | the pending-output buffer |
//! | `udp.rs` | the UDP socket: read, answer, register the interest left |
//! | `udp/queue.rs` | the bounded queue of replies waiting for WRITABLE |
//! | `udp/moderation.rs` | when to pause so a batch fills (`--udp-coalesce`), and when to stop |
//! | `udp/batch.rs` | Linux: many datagrams per `recvmmsg`/`sendmmsg` (`--udp-batch`) |
//! | `sys/` | every `unsafe` of the crate: the open-files limit; on Linux `recvmmsg`, `sendmmsg`, `sendfile`, socket queue ioctls, timer slack |
//! | `protocol/` | the `Handler` trait and one file per `--mode`: what the bytes mean |
//! | `timer.rs` | idle deadlines: a lazy min-heap |
//! | `stamp.rs` | 8-byte timestamps for what every connection carries |
//! | `stats.rs` | counters readable while the server runs |
//! | `metrics/` | `--metrics`: Prometheus exposition over a tiny HTTP endpoint in the loop |
//! | `shutdown.rs` | [`ShutdownHandle`]: stopping from another thread |
//!
//! Arrows point one way: `server` uses `bind` and `reactor`, both use
//! `token`; nothing below imports what is above it (`tests/structure.rs`
//! checks that no chain of imports leads back to where it started).
//!
//! ## Example
//!
//! ```no_run
//! let mut config = echoloop::Config::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! config.udp = Some("127.0.0.1:0".parse()?);
//! let server = echoloop::Server::bind(config)?;
//! println!("tcp on {}", server.tcp_addr());
//! let handle = server.shutdown_handle();
//! let thread = std::thread::spawn(move || server.run());
//! // ... talk to it ...
//! handle.shutdown();
//! let stats = thread.join().expect("the reactor thread panicked")?;
//! println!("{stats}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Every `unsafe` block lives in `sys/` (the only module allowed it), and
// each carries a `SAFETY:` comment; CI's `-D warnings` enforces both.
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

// The public API is what the re-exports below name; every module is
// private to the crate, so its items need docs for readers, not for rustdoc.
mod bind;
mod budget;
// Public only for `benches/buffer.rs`; not part of the API.
#[doc(hidden)]
pub mod buffer;
mod config;
mod conn;
mod error;
mod memory;
mod metrics;
mod output;
mod protocol;
mod reactor;
mod ready;
mod server;
mod shutdown;
mod signals;
mod stamp;
mod stats;
#[allow(unsafe_code)]
mod sys;
mod timer;
mod token;
mod udp;

#[cfg(test)]
pub(crate) mod testutil;

/// Bytes of one connection's own state in the reactor's slab, for
/// `benches/idle.rs` (not part of the API; `conn::tests` pins the bound).
#[doc(hidden)]
pub const CONN_ENTRY_BYTES: usize = std::mem::size_of::<conn::Conn<mio::net::TcpStream>>();

pub use config::{Config, Mode};
pub use error::{ConfigError, Error};
pub use server::{raise_fd_limit, Server};
pub use shutdown::ShutdownHandle;
pub use stats::{Stats, StatsSnapshot};
