//! What a connection needs from its socket beyond `Read + Write`, and the
//! real implementation for mio's `TcpStream` (two Linux ioctls that count
//! bytes in the kernel's queues). Unit tests implement it for a scripted fake.

use std::io;
use std::net::Shutdown;

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
}

impl StreamSocket for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
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
