//! Protocol handlers: what a connection does with the bytes it reads.
//!
//! A handler never touches a socket, an interest set or a buffer limit: the
//! connection and the reactor own those. It sees the bytes that arrived and
//! an [`Output`] through which it answers (`output.rs`: written straight to
//! the socket when nothing is queued, queued otherwise).
//!
//! Every mode is a type implementing [`Handler`]. Only `on_data` is
//! required; every other hook has a default that does nothing (or says
//! "no limit", "nothing held"), so echo is three lines. The connection
//! holds its handler as a `Box<dyn Handler>`: a box of a zero-sized handler
//! (echo, upper) allocates nothing, and the state of the modes that keep
//! some (framed, chat, files) lives behind the box, out of the slab entry
//! every connection pays for.
//!
//! **Adding a mode** is one new file here with a type implementing
//! [`Handler`]; here, its `mod` line and one match arm in [`handler`]; and
//! in `config.rs` the `Mode` variant that names it on the command line
//! (its doc line is the `--help` text). A mode whose datagrams are not
//! echoed as they are also gets an arm in [`datagram_reply`]. Nothing in
//! `conn.rs`, `output.rs` or the reactor changes, as long as the mode is
//! built from the `Config` and the peer's address alone (state shared by
//! every connection, like files' canonical root, is the reactor's to hold
//! and pass in). `test_mode.rs` is such a mode, compiled for tests only:
//! it needed its file and its `mod` line (no `Mode` variant, so no match
//! arm: its unit test builds the handler itself and runs it through a real
//! connection).

pub mod chat;
pub mod echo;
pub mod files;
pub mod framed;
pub mod lines;
pub mod outbox;
#[cfg(test)]
mod test_mode;
pub mod upper;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

use crate::config::{Config, Mode};
use crate::output::Output;
pub use outbox::Outbox;

/// What the reactor should do with a connection after a handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Keep serving it.
    Continue,
    /// Stop reading, flush what is queued, then close. Handlers return this
    /// after queueing an error message for a protocol violation.
    Close,
}

/// What a handler still has to produce beyond the queued output
/// ([`Handler::more_output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoreOutput {
    /// Nothing: once the queue drains, the connection has sent all it owes.
    Nothing,
    /// More, and nothing stops it now: the handler stopped at its per-call
    /// cap (files' fairness). No WRITABLE edge will come for an empty
    /// queue, so the connection asks the reactor to requeue it.
    Now,
    /// More, once the socket takes more: a body sent with `sendfile` found
    /// the socket full, with nothing queued. The connection registers
    /// WRITABLE for it instead of requeueing itself.
    WhenWritable,
}

/// One connection's protocol: what its bytes mean and what goes back.
///
/// The connection calls the hooks; a handler answers through the `Output`
/// it is lent and returns a [`Flow`]. Hooks a mode does not need keep
/// their defaults.
pub trait Handler: fmt::Debug {
    /// The connection was just accepted (chat announces the member).
    fn on_open(&mut self, _out: &mut Output<'_>) -> Flow {
        Flow::Continue
    }

    /// `data` arrived (in the reactor's scratch buffer, so a handler may
    /// transform it in place before sending it back).
    fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow;

    /// No more input will reach the handler: the peer half-closed (EOF), or
    /// the input still to come is known to be too short to complete what
    /// it holds (see [`Handler::unfinished`]). The connection flushes what
    /// is queued (and what [`Handler::more_output`] promises), then closes.
    fn on_eof(&mut self, _out: &mut Output<'_>) -> Flow {
        Flow::Continue
    }

    /// The pending buffer drained while [`Handler::more_output`] says there
    /// is more: a handler that streams (files) produces its next piece,
    /// reading it into `scratch`.
    fn on_drained(&mut self, _scratch: &mut [u8], _out: &mut Output<'_>) -> Flow {
        Flow::Continue
    }

    /// False while the handler cannot take more input yet (a file body is
    /// still streaming, a chat message is still on its way to the room):
    /// the connection stops reading, exactly as for backpressure, and reads
    /// again once this turns true.
    fn wants_input(&self) -> bool {
        true
    }

    /// Output the handler still has to produce beyond what is queued (a
    /// file body, a queued request): while there is some, a half-closed
    /// connection stays open for it and calls `on_drained` whenever its
    /// queue is empty. See [`MoreOutput`] for what each answer makes the
    /// connection wait for.
    fn more_output(&self) -> MoreOutput {
        MoreOutput::Nothing
    }

    /// Most bytes the next read may take, when the memory budget lets this
    /// connection add `allowance` bytes (`usize::MAX` while the server is
    /// under its budget); the scratch buffer bounds it too. The default,
    /// `allowance`, suits a handler that holds at most what it read. Chat
    /// reads less (a read's lines become one chunk every member gets) and
    /// turns a read into a chunk several times its size (see `chat.rs`).
    fn read_limit(&self, allowance: usize) -> usize {
        allowance
    }

    /// Input bytes the handler holds between reads (partial frames and
    /// lines, unanswered requests), for the memory budget.
    fn held(&self) -> usize {
        0
    }

    /// The fewest input bytes still needed before what the handler holds can
    /// become a reply: the rest of a partial frame. 0 when it holds nothing
    /// waiting for more, or cannot tell (a line ends at any byte). When the
    /// input is known to end sooner (the peer's FIN is queued behind fewer
    /// bytes, or a shutdown takes fewer), what it holds can never complete:
    /// the connection calls [`Handler::on_eof`] at once instead of keeping
    /// those bytes while the memory budget keeps it from reading them.
    fn unfinished(&self) -> usize {
        0
    }

    /// The room handed this connection's last message to every member
    /// (chat): it may take input again.
    fn on_delivered(&mut self) {}

    /// The connection is going away; returns a message for everyone else
    /// (chat's leave notice).
    fn on_close(&mut self) -> Option<Rc<[u8]>> {
        None
    }
}

/// The handler for a new connection from `peer`: the one place that maps
/// a [`Mode`] to its type. `root` is the canonical `--root`, shared by
/// every `files` connection.
pub fn handler(config: &Config, peer: SocketAddr, root: Option<&Rc<Path>>) -> Box<dyn Handler> {
    match config.mode {
        Mode::Echo => Box::new(echo::Echo),
        Mode::Upper => Box::new(upper::Upper),
        Mode::Framed => Box::new(framed::Framed::new(config.max_frame)),
        Mode::Chat => Box::new(chat::Chat::new(peer, config.max_line)),
        Mode::Files => Box::new(
            files::Files::new(
                root.cloned().unwrap_or_else(|| Rc::from(Path::new("."))),
                config.max_line,
            )
            .with_sendfile(config.sendfile),
        ),
    }
}

/// Turns a received datagram into its reply, in place. Only `upper` changes
/// it; every other mode echoes datagrams as they are.
pub fn datagram_reply(mode: Mode, data: &mut [u8]) {
    if mode == Mode::Upper {
        upper::transform(data);
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Runs a handler against a scripted socket and collects what it sent.
    use crate::buffer::OutBuf;
    use crate::output::Output;
    use crate::protocol::Outbox;
    use crate::stats::Counters;
    use crate::testutil::ScriptedIo;

    /// A socket that takes everything, plus the buffers an `Output` needs.
    pub struct Harness {
        pub io: ScriptedIo,
        pub pending: OutBuf,
        pub room: Outbox,
        pub stats: Counters,
    }

    impl Harness {
        pub fn new() -> Harness {
            Harness {
                io: ScriptedIo::new(vec![Some(usize::MAX); 10_000]),
                pending: OutBuf::new(),
                room: Outbox::default(),
                stats: Counters::default(),
            }
        }

        /// Calls `f` with a fresh `Output` over this harness.
        pub fn with<R>(&mut self, f: impl FnOnce(&mut Output<'_>) -> R) -> R {
            let mut out = Output::new(&mut self.io, &mut self.pending, &mut self.room, &self.stats);
            let r = f(&mut out);
            assert!(out.finish().error.is_none());
            r
        }
    }
}
