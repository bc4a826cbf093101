//! Protocol handlers: what a connection does with the bytes it reads.
//!
//! A handler never touches a socket, an interest set or a buffer limit: the
//! reactor owns those. It sees the bytes that arrived and an [`Output`] through
//! which it answers. `Output::send` writes straight to the socket when nothing
//! is queued ("write first") and queues only what the kernel would not take,
//! so a handler's reply costs one `write` in the common case and no copy.
//!
//! One file per mode; adding a mode means one new file and one variant of
//! [`Protocol`]. Dispatch is a `match`, not a trait object: the set of modes is
//! closed, and the echo path stays a direct call.

pub mod chat;
pub mod echo;
pub mod files;
pub mod framed;
pub mod lines;
pub mod outbox;
pub mod sink;
pub mod upper;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::buffer::OutBuf;
use crate::config::{Config, Mode};
use crate::stats::{self, Counters};
pub use outbox::Outbox;
use sink::Sink;

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

/// A handler's way to answer: to its own peer, or to everyone else.
pub struct Output<'a> {
    /// The connection's socket (a scripted fake in unit tests).
    sock: &'a mut dyn Sink,
    /// Bytes owed to this peer that the socket would not take yet. Invariant:
    /// while it is non-empty, new output goes behind it, never straight to the
    /// socket, or bytes would be reordered.
    pending: &'a mut OutBuf,
    /// Messages for every *other* connection (chat). The reactor delivers them
    /// after this handler returns, since it cannot lend out the other
    /// connections while this one is borrowed.
    pub room: &'a mut Outbox,
    /// Counters a handler may bump (protocol errors, partial frames, ...).
    pub stats: &'a Counters,
    /// The first write error; after one, output is discarded (the connection
    /// is closing) and the reactor reads it back with [`Output::finish`].
    error: Option<io::Error>,
    /// Bytes the socket took during this call, for the turn's budget.
    written: usize,
}

/// What an [`Output`] did, read back by the connection after the call.
#[derive(Debug)]
pub struct Written {
    /// The first write error, if any.
    pub error: Option<io::Error>,
    /// Bytes the socket took.
    pub bytes: usize,
}

impl<'a> Output<'a> {
    pub(crate) fn new(
        sock: &'a mut dyn Sink,
        pending: &'a mut OutBuf,
        room: &'a mut Outbox,
        stats: &'a Counters,
    ) -> Output<'a> {
        Output {
            sock,
            pending,
            room,
            stats,
            error: None,
            written: 0,
        }
    }

    /// Sends `bytes` to this peer; the part the socket will not take now is
    /// copied into the connection's pending buffer.
    pub fn send(&mut self, bytes: &[u8]) {
        let sent = self.write_now(bytes);
        self.pending.push_copy(&bytes[sent..]);
    }

    /// Sends up to `count` bytes of `file` from `*offset` straight from the
    /// page cache (`sendfile`; see `sink.rs`), advancing `*offset`. Nothing
    /// is ever queued: a full socket is reported as [`FileSend::Full`], and
    /// the handler waits for WRITABLE (see [`Protocol::awaits_writable`]).
    pub fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> FileSend {
        // Order first: only straight to the socket when nothing is queued.
        if self.error.is_some() || !self.pending.is_empty() {
            return FileSend::Full;
        }
        loop {
            return match self.sock.send_file(file, offset, count) {
                None => FileSend::Unsupported,
                Some(Ok(0)) => FileSend::Ended,
                Some(Ok(n)) => {
                    stats::add(&self.stats.bytes_out, n as u64);
                    self.written += n;
                    FileSend::Sent(n)
                }
                Some(Err(e)) => match e.kind() {
                    io::ErrorKind::WouldBlock => FileSend::Full,
                    io::ErrorKind::Interrupted => continue,
                    // The file cannot be spliced (some file systems):
                    // the handler copies instead.
                    _ if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                        FileSend::Unsupported
                    }
                    _ => {
                        self.error = Some(e);
                        FileSend::Failed
                    }
                },
            };
        }
    }

    /// Queues a shared message for this peer without copying it or writing
    /// yet: a batch of them (chat lines for one member) then goes out with
    /// one `flush`, a `writev` per 32 messages instead of a write
    /// each.
    pub fn queue_shared(&mut self, data: Rc<[u8]>) {
        if self.error.is_none() {
            self.pending.push_shared(data, 0);
        }
    }

    /// Bytes queued for this peer and not yet accepted by its socket.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// True once a write failed: the connection is closing and further
    /// output is discarded, so a streaming handler should stop producing it.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Sends queued bytes, at most `limit` of them: used on WRITABLE
    /// readiness, and after queueing. Returns true if it stopped at `limit`
    /// with bytes left and the socket perhaps still writable: no new edge
    /// will say so, and the caller must come back.
    pub(crate) fn flush(&mut self, limit: usize) -> bool {
        if self.error.is_some() {
            return false;
        }
        match self.pending.write_to(self.sock, limit) {
            Ok(n) => {
                stats::add(&self.stats.bytes_out, n as u64);
                self.written += n;
                n >= limit && !self.pending.is_empty()
            }
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    /// The first write error, if any, and the bytes written.
    pub(crate) fn finish(self) -> Written {
        Written {
            error: self.error,
            bytes: self.written,
        }
    }

    /// Writes as much of `bytes` as the socket takes now, unless earlier output
    /// is still queued (order first). Returns how many bytes went out; after an
    /// error, claims all of them, since a failed connection's output is moot.
    fn write_now(&mut self, bytes: &[u8]) -> usize {
        if self.error.is_some() {
            return bytes.len();
        }
        if !self.pending.is_empty() {
            return 0;
        }
        let mut sent = 0;
        while sent < bytes.len() {
            match self.sock.write(&bytes[sent..]) {
                Ok(0) => {
                    self.error = Some(io::ErrorKind::WriteZero.into());
                    return bytes.len();
                }
                Ok(n) => sent += n,
                // The socket's send buffer is full: the rest waits in
                // `pending` and the reactor registers WRITABLE.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A signal interrupted the syscall before it did anything.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e);
                    return bytes.len();
                }
            }
        }
        stats::add(&self.stats.bytes_out, sent as u64);
        self.written += sent;
        sent
    }
}

/// What [`Output::send_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSend {
    /// This many bytes (at least one) went to the socket.
    Sent(usize),
    /// The socket would block (or output is queued): wait for WRITABLE.
    Full,
    /// The file ended before the offset (it shrank while being served).
    Ended,
    /// No zero-copy path here: read and `send` instead.
    Unsupported,
    /// A socket error; the connection is closing.
    Failed,
}

/// Per-connection protocol state. Echo and upper keep none, so an idle echo
/// connection owns no heap memory here.
#[derive(Debug)]
pub enum Protocol {
    Echo,
    Upper,
    Framed(framed::Framed),
    Chat(chat::Chat),
    Files(files::Files),
}

impl Protocol {
    /// State for a new connection from `peer`. `root` is the canonical
    /// `--root`, shared by every `files` connection.
    pub fn new(config: &Config, peer: SocketAddr, root: Option<&Rc<std::path::Path>>) -> Protocol {
        match config.mode {
            Mode::Echo => Protocol::Echo,
            Mode::Upper => Protocol::Upper,
            Mode::Framed => Protocol::Framed(framed::Framed::new(config.max_frame)),
            Mode::Chat => Protocol::Chat(chat::Chat::new(peer, config.max_line)),
            Mode::Files => Protocol::Files(
                files::Files::new(
                    root.cloned()
                        .unwrap_or_else(|| Rc::from(std::path::Path::new("."))),
                    config.max_line,
                )
                .with_sendfile(config.sendfile),
            ),
        }
    }

    /// The connection was just accepted.
    pub fn on_open(&mut self, out: &mut Output<'_>) -> Flow {
        match self {
            Protocol::Chat(c) => c.on_open(out),
            _ => Flow::Continue,
        }
    }

    /// `data` arrived (in the reactor's scratch buffer, so a handler may
    /// transform it in place before sending it back).
    pub fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        match self {
            Protocol::Echo => echo::on_data(data, out),
            Protocol::Upper => upper::on_data(data, out),
            Protocol::Framed(f) => f.on_data(data, out),
            Protocol::Chat(c) => c.on_data(data, out),
            Protocol::Files(f) => f.on_data(data, out),
        }
    }

    /// The peer half-closed (EOF). The reactor flushes what is queued (and,
    /// for files, what [`Protocol::has_more_output`] promises), then closes.
    pub fn on_eof(&mut self, out: &mut Output<'_>) -> Flow {
        match self {
            Protocol::Framed(f) => f.on_eof(out),
            _ => Flow::Continue,
        }
    }

    /// The pending buffer drained: a handler that streams (files) queues its
    /// next piece, reading it into `scratch`.
    pub fn on_drained(&mut self, scratch: &mut [u8], out: &mut Output<'_>) -> Flow {
        match self {
            Protocol::Files(f) => f.on_drained(scratch, out),
            _ => Flow::Continue,
        }
    }

    /// False while the handler cannot take more input yet (a file body is
    /// still streaming, a chat message is still on its way to the room):
    /// the reactor stops reading, exactly as for backpressure, and reads
    /// again once this turns true.
    pub fn wants_input(&self) -> bool {
        match self {
            Protocol::Files(f) => f.wants_input(),
            Protocol::Chat(c) => c.wants_input(),
            _ => true,
        }
    }

    /// True while the handler waits for the socket to take more before it
    /// can produce output, with nothing queued (a file body sent with
    /// `sendfile` found the socket full): the connection registers
    /// WRITABLE for it instead of requeueing itself.
    pub fn awaits_writable(&self) -> bool {
        match self {
            Protocol::Files(f) => f.awaits_writable(),
            _ => false,
        }
    }

    /// True while the handler still has output to produce beyond what is
    /// queued (a file body): a half-closed connection stays open for it.
    pub fn has_more_output(&self) -> bool {
        match self {
            Protocol::Files(f) => f.has_more_output(),
            _ => false,
        }
    }

    /// Most bytes one read should take for this handler. Chat reads less
    /// than the scratch buffer: a read's lines travel as one chunk that every
    /// member receives before anything sent after it (see `chat.rs`).
    pub fn read_limit(&self) -> usize {
        match self {
            Protocol::Chat(_) => chat::READ_LIMIT,
            _ => usize::MAX,
        }
    }

    /// Most input bytes a read may take when the memory budget lets this
    /// connection add `allowance` bytes (`usize::MAX`: no limit). Every
    /// handler but chat holds at most what it read; chat turns a read into
    /// a chunk several times its size (see `Chat::input_for`).
    pub fn input_allowance(&self, allowance: usize) -> usize {
        match self {
            Protocol::Chat(c) if allowance != usize::MAX => c.input_for(allowance),
            _ => allowance,
        }
    }

    /// Input bytes the handler holds between reads (partial frames and
    /// lines, unanswered requests), for the memory budget.
    pub fn held(&self) -> usize {
        match self {
            Protocol::Framed(f) => f.held(),
            Protocol::Chat(c) => c.held(),
            Protocol::Files(f) => f.held(),
            Protocol::Echo | Protocol::Upper => 0,
        }
    }

    /// The room handed this connection's last message to every member
    /// (chat): it may take input again.
    pub fn on_delivered(&mut self) {
        if let Protocol::Chat(c) = self {
            c.on_delivered();
        }
    }

    /// The connection is going away; returns a message for everyone else
    /// (chat's leave notice).
    pub fn on_close(&mut self) -> Option<Rc<[u8]>> {
        match self {
            Protocol::Chat(c) => c.on_close(),
            _ => None,
        }
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
    use super::*;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ScriptedIo;

    #[test]
    fn send_writes_first_and_queues_only_the_rest() {
        let mut io = ScriptedIo::new(vec![Some(4), None]);
        let (mut pending, mut room, stats) =
            (OutBuf::new(), Outbox::default(), Counters::default());
        let mut out = Output::new(&mut io, &mut pending, &mut room, &stats);
        out.send(b"abcdefgh");
        assert_eq!(out.pending(), 4);
        // Once something is queued, later output must queue behind it.
        out.send(b"ij");
        assert_eq!(out.pending(), 6);
        let done = out.finish();
        assert!(done.error.is_none());
        assert_eq!(done.bytes, 4);
        assert_eq!(io.written, b"abcd");
        assert_eq!(
            io.write_calls, 2,
            "no write may be tried while output is queued"
        );
        assert_eq!(stats.snapshot().bytes_out, 4);
    }

    #[test]
    fn write_errors_are_kept_and_later_output_discarded() {
        let mut io = ScriptedIo::new(vec![]).failing(io::ErrorKind::ConnectionReset);
        let (mut pending, mut room, stats) =
            (OutBuf::new(), Outbox::default(), Counters::default());
        let mut out = Output::new(&mut io, &mut pending, &mut room, &stats);
        out.send(b"abc");
        out.queue_shared(Rc::from(&b"def"[..]));
        assert_eq!(out.pending(), 0);
        let err = out.finish().error.unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(io.write_calls, 1);
    }
}
