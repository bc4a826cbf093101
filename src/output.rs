//! The write path: how a connection's bytes reach its socket.
//!
//! An [`Output`] is what a protocol handler answers through. `Output::send`
//! writes straight to the socket when nothing is queued ("write first") and
//! copies into the connection's pending buffer (`buffer.rs`) only what the
//! kernel would not take, so a reply costs one `write` in the common case
//! and no copy. Bytes already queued go out with `flush` (on WRITABLE, or
//! after a chat delivery), and a file body may go with `send_file`
//! (`sendfile`, see `output/sink.rs`). Whatever the call, the bytes the
//! socket took and the first error are read back as [`Written`] by the
//! connection, which turns them into activity (the idle rule), the turn's
//! budget and a close.
//!
//! Ordering is the invariant: while anything is queued, new output goes
//! behind it and never straight to the socket.

pub mod sink;

use std::fs::File;
use std::io;
use std::rc::Rc;

use crate::buffer::OutBuf;
use crate::protocol::outbox::Outbox;
use crate::stats::{self, Counters};
use sink::Sink;

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
    /// the handler then says it awaits WRITABLE (`MoreOutput::WhenWritable`).
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

    /// A socket with a zero-copy path that takes at most 1000 bytes a call.
    struct Splice;

    impl io::Write for Splice {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink for Splice {
        fn send_file(
            &mut self,
            _: &File,
            offset: &mut u64,
            count: usize,
        ) -> Option<io::Result<usize>> {
            let n = count.min(1000);
            *offset += n as u64;
            Some(Ok(n))
        }
    }

    /// A body sent with `sendfile` counts like any write: in the bytes the
    /// connection reads back (the idle rule, the turn's budget) and in
    /// `bytes_out`. Once output is queued, it waits behind it.
    #[test]
    fn send_file_counts_what_the_socket_took() {
        // Any open file: the fake never reads it.
        let file = File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        let (mut io, mut pending, mut room, stats) = (
            Splice,
            OutBuf::new(),
            Outbox::default(),
            Counters::default(),
        );
        let mut out = Output::new(&mut io, &mut pending, &mut room, &stats);
        let mut offset = 0;
        assert_eq!(
            out.send_file(&file, &mut offset, 4096),
            FileSend::Sent(1000)
        );
        assert_eq!(offset, 1000);
        out.send(b"queued"); // the socket refuses it: it is queued
        assert_eq!(out.send_file(&file, &mut offset, 4096), FileSend::Full);
        assert_eq!(offset, 1000, "never ahead of queued bytes");
        assert_eq!(out.finish().bytes, 1000);
        assert_eq!(stats.snapshot().bytes_out, 1000);
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
