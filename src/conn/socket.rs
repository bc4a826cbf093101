//! What a connection needs from its socket beyond `Read + Write`, and the
//! real implementation for mio's `TcpStream` (two Linux ioctls that count
//! bytes in the kernel's queues). Unit tests implement it for a scripted fake.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};

/// What a connection needs from its socket beyond `Read + Write`.
pub trait StreamSocket {
    /// Sends FIN while staying open for reading.
    fn shutdown_write(&self) -> io::Result<()>;

    /// Bytes the kernel holds that the peer has not acknowledged yet. Closing
    /// while the peer still sends us data makes the kernel answer with a
    /// reset, which throws these bytes away; so a graceful shutdown waits for
    /// zero. `0` where the platform cannot tell.
    fn unacked(&self) -> usize {
        0
    }

    /// Bytes received (and acknowledged to the peer) but not read by us yet.
    /// At shutdown exactly these are still processed. `0` where the platform
    /// cannot tell.
    fn queued_input(&self) -> usize {
        0
    }

    /// The error the socket recorded (SO_ERROR), such as a reset from the
    /// peer; reading it clears it. For a connection that is not reading or
    /// writing, this is the only way to learn that it died.
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }

    /// The peer's address (getpeername), for log lines. Asked on demand
    /// rather than kept in every connection: 32 bytes per connection for
    /// something only a debug log reads. `None` once the socket is
    /// disconnected, or where the socket cannot tell.
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// Displays a socket's peer address when a log line is formatted (and only
/// then, so a disabled log level costs no syscall); `?` if unknown.
pub struct Peer<'a, S>(pub &'a S);

impl<S: StreamSocket> fmt::Display for Peer<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.peer_addr() {
            Some(addr) => addr.fmt(f),
            None => f.write_str("?"),
        }
    }
}

impl StreamSocket for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        mio::net::TcpStream::peer_addr(self).ok()
    }

    // The ioctls are in `sys`, the crate's one home for `unsafe`; a failed
    // one counts as 0, as on platforms that cannot tell.
    #[cfg(target_os = "linux")]
    fn unacked(&self) -> usize {
        // SIOCOUTQ (= TIOCOUTQ): bytes in the send queue, not yet acked.
        crate::sys::unacked_bytes(self).unwrap_or(0)
    }

    #[cfg(target_os = "linux")]
    fn queued_input(&self) -> usize {
        // SIOCINQ (= FIONREAD): bytes in the receive queue.
        crate::sys::queued_input_bytes(self).unwrap_or(0)
    }
}
