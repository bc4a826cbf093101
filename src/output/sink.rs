//! Where a handler's output goes: a `Write` that may also send a file's
//! bytes without copying them through user space.
//!
//! `files` streams bodies. The portable way reads each piece into the
//! scratch buffer and writes it to the socket: two copies and two syscalls
//! per piece. On Linux, `sendfile` moves the bytes from the page cache to
//! the socket inside the kernel, in one call. A socket type that can do
//! that says so here; everything else (other platforms, the scripted
//! sockets of unit tests) keeps the default, and the handler copies.

use std::fs::File;
use std::io::{self, Write};

/// A connection's socket as the protocol handlers see it.
pub trait Sink: Write {
    /// Sends up to `count` bytes of `file` from `*offset`, advancing
    /// `*offset` by what was sent, without moving the file's own position.
    /// `None` when this socket has no zero-copy path (copy instead);
    /// otherwise the syscall's result: `Ok(0)` means the file ended before
    /// `*offset`, `WouldBlock` that the socket is full.
    fn send_file(
        &mut self,
        _file: &File,
        _offset: &mut u64,
        _count: usize,
    ) -> Option<io::Result<usize>> {
        None
    }
}

impl Sink for mio::net::TcpStream {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Option<io::Result<usize>> {
        Some(crate::sys::sendfile(self, file, offset, count))
    }
}
