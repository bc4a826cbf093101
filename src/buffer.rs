//! The pending-output buffer: the bytes a connection still owes its peer.
//!
//! The reactor writes replies straight to the socket ("write first") and only the
//! part the kernel would not take lands here. So for most connections, most of the
//! time, this buffer is empty and owns **no heap memory**: it is one null
//! pointer, and [`OutBuf::consume`] gives the allocation back as soon as the
//! buffer drains.
//!
//! Bytes are kept as a queue of chunks. A chunk is either owned (`Vec<u8>`,
//! copied from the reactor's scratch buffer) or shared (`Rc<[u8]>`, one chat line
//! queued for many recipients without a copy per recipient). Writing takes up
//! to 32 front chunks with one vectored write, so a backlog of small chunks
//! costs one syscall per 32 chunks, not one per chunk.
//!
//! The module is pure (it sees only `io::Write`) so it is unit-tested without
//! sockets.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// An owned chunk grows by appending until it holds this many bytes; after
/// that a new chunk starts. Keeps one huge allocation from being carried around
/// after most of it was written.
const OWNED_CHUNK_TARGET: usize = 64 * 1024;

/// At most this many chunks go into one `writev`. Linux allows 1024; a few
/// dozen is plenty to amortise the syscall.
const MAX_IOVECS: usize = 32;

/// One run of unsent bytes. `pos` is how far the front of the chunk was already
/// written; invariant: `pos < data.len()` for every chunk in the queue.
#[derive(Debug)]
enum Chunk {
    Owned { data: Vec<u8>, pos: usize },
    Shared { data: Rc<[u8]>, pos: usize },
}

impl Chunk {
    fn remaining(&self) -> &[u8] {
        match self {
            Chunk::Owned { data, pos } => &data[*pos..],
            Chunk::Shared { data, pos } => &data[*pos..],
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Owned { pos, .. } | Chunk::Shared { pos, .. } => *pos += n,
        }
    }
}

/// Unsent output of one connection: one pointer, null while nothing is
/// owed. Every connection has one, most of them empty most of the time, so
/// the queue and its byte count live behind a box that exists only while
/// bytes wait (8 bytes in the connection instead of 40).
#[derive(Debug, Default)]
pub struct OutBuf {
    /// `None` exactly while the buffer is empty. Invariant: a `Some` queue
    /// holds at least one chunk.
    queue: Option<Box<Queue>>,
}

/// The chunks of a non-empty [`OutBuf`].
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Total unsent bytes over all chunks; kept so `len()` is O(1), since the
    /// reactor compares it to the backpressure marks after every read.
    len: usize,
}

impl OutBuf {
    /// An empty buffer; allocates nothing.
    pub fn new() -> OutBuf {
        OutBuf::default()
    }

    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len)
    }

    /// True when nothing is owed: the connection may drop WRITABLE interest.
    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// True when the buffer holds heap memory (used by tests and stats to show
    /// that idle connections own none).
    pub fn has_allocation(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a copy of `bytes` behind what is already queued.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let q = self.queue.get_or_insert_with(Box::default);
        q.len += bytes.len();
        if let Some(Chunk::Owned { data, .. }) = q.chunks.back_mut() {
            if data.len() + bytes.len() <= OWNED_CHUNK_TARGET.max(data.capacity()) {
                data.extend_from_slice(bytes);
                return;
            }
        }
        q.chunks.push_back(Chunk::Owned {
            data: bytes.to_vec(),
            pos: 0,
        });
    }

    /// Queues `bytes[pos..]` of a shared chunk without copying it.
    pub fn push_shared(&mut self, data: Rc<[u8]>, pos: usize) {
        if pos >= data.len() {
            return;
        }
        let q = self.queue.get_or_insert_with(Box::default);
        q.len += data.len() - pos;
        q.chunks.push_back(Chunk::Shared { data, pos });
    }

    /// Marks `n` bytes from the front as sent. Releases the queue's memory
    /// once everything is sent, so an idle connection owns no buffer.
    pub fn consume(&mut self, mut n: usize) {
        let Some(q) = self.queue.as_mut() else {
            debug_assert_eq!(n, 0);
            return;
        };
        debug_assert!(n <= q.len);
        q.len -= n;
        while n > 0 {
            let Some(front) = q.chunks.front_mut() else {
                break;
            };
            let left = front.remaining().len();
            if n < left {
                front.advance(n);
                return;
            }
            n -= left;
            q.chunks.pop_front();
        }
        if q.len == 0 {
            self.queue = None;
        }
    }

    /// Writes queued bytes to `w` until the buffer is empty, `w` says
    /// `WouldBlock`, or at least `limit` bytes went out (the caller's share of
    /// the turn; one write may overshoot it by less than one write's worth).
    /// Returns the number of bytes written; `WouldBlock` is not an error here
    /// (the caller keeps WRITABLE interest while `!is_empty()`), and
    /// `Interrupted` is retried. Any other error is returned as is.
    pub fn write_to<W: Write + ?Sized>(&mut self, w: &mut W, limit: usize) -> io::Result<usize> {
        let mut total = 0;
        while total < limit {
            let Some(q) = self.queue.as_ref() else {
                break;
            };
            let result = if q.chunks.len() == 1 {
                w.write(q.chunks[0].remaining())
            } else {
                // A fixed array, not a Vec: no allocation per write.
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = q.chunks.len().min(MAX_IOVECS);
                for (slot, chunk) in slices.iter_mut().zip(&q.chunks) {
                    *slot = IoSlice::new(chunk.remaining());
                }
                w.write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ScriptedIo;

    #[test]
    fn empty_buffer_owns_no_memory() {
        let b = OutBuf::new();
        assert!(b.is_empty());
        assert!(!b.has_allocation());
        assert_eq!(
            std::mem::size_of::<OutBuf>(),
            8,
            "one pointer per connection"
        );
    }

    #[test]
    fn drains_in_order_across_short_writes_and_would_block() {
        let mut b = OutBuf::new();
        b.push_copy(b"hello ");
        b.push_shared(Rc::from(&b"big world"[..]), 4);
        b.push_copy(b"!");
        assert_eq!(b.len(), 6 + 5 + 1);
        // 3 bytes, then WouldBlock, then everything.
        let mut io = ScriptedIo::new(vec![Some(3), None, Some(100)]);
        assert_eq!(b.write_to(&mut io, usize::MAX).unwrap(), 3);
        assert_eq!(b.len(), 9);
        assert!(b.has_allocation());
        assert_eq!(b.write_to(&mut io, usize::MAX).unwrap(), 9);
        assert_eq!(io.written, b"hello world!");
        assert!(b.is_empty());
        assert!(
            !b.has_allocation(),
            "drained buffer must release its memory"
        );
    }

    #[test]
    fn consecutive_copies_coalesce_into_one_chunk() {
        let mut b = OutBuf::new();
        for _ in 0..100 {
            b.push_copy(b"abc");
        }
        assert_eq!(b.queue.as_ref().unwrap().chunks.len(), 1);
        assert_eq!(b.len(), 300);
    }

    #[test]
    fn write_errors_other_than_would_block_are_returned() {
        let mut b = OutBuf::new();
        b.push_copy(b"x");
        let mut io = ScriptedIo::new(vec![]).failing(io::ErrorKind::BrokenPipe);
        let err = b.write_to(&mut io, usize::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(b.len(), 1, "nothing was sent, nothing may be dropped");
    }

    /// A write limit stops the loop once reached, with the rest kept in order.
    #[test]
    fn write_limit_stops_early_and_keeps_the_rest() {
        let mut b = OutBuf::new();
        for chunk in [&b"aaaa"[..], b"bbbb", b"cccc"] {
            b.push_shared(Rc::from(chunk), 0);
        }
        let mut io = ScriptedIo::new(vec![Some(3), Some(3), Some(100)]);
        assert_eq!(
            b.write_to(&mut io, 5).unwrap(),
            6,
            "stops after the write that reached 5"
        );
        assert_eq!(b.len(), 6);
        assert_eq!(b.write_to(&mut io, usize::MAX).unwrap(), 6);
        assert_eq!(io.written, b"aaaabbbbcccc");
    }

    #[test]
    fn empty_pushes_are_ignored() {
        let mut b = OutBuf::new();
        b.push_copy(b"");
        b.push_shared(Rc::from(&b"ab"[..]), 2);
        assert!(b.is_empty());
        assert!(!b.has_allocation());
    }
}
