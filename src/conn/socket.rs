//! What a connection needs from its socket beyond `Read + Write`, and the
//! real implementation for mio's `TcpStream` (two Linux ioctls that count
//! bytes in the kernel's queues). Unit tests implement it for a scripted fake.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

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
    /// At shutdown exactly these are still processed; once the peer's FIN is
    /// queued behind them, they are all the input there will ever be.
    /// `None` where the platform cannot tell.
    fn queued_input(&self) -> Option<usize> {
        None
    }

    /// Makes the coming close send a reset (SO_LINGER 0) instead of a FIN,
    /// so the kernel drops what it still holds for the peer at once rather
    /// than keep it (up to the send buffer, megabytes) while it retries a
    /// peer that does not read. A failure is returned for the log; the
    /// close then is an ordinary one.
    fn reset_on_close(&self) -> io::Result<()> {
        Ok(())
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

    /// How long ago the kernel last sent the peer bytes of ours: it goes
    /// on sending what we handed it as the peer's window opens, long after
    /// our write (see `Conn::note_kernel_sent`). `None` while it only
    /// resends what the peer did not take, or where the platform cannot
    /// tell.
    fn since_data_sent(&self) -> Option<Duration> {
        None
    }
}

/// Displays a socket's peer address when a log line is formatted (and only
/// then, so a disabled log level costs no syscall); `?` if unknown.
///
/// The kernel forgets the peer once the connection is over: after a reset,
/// and after both FINs (on loopback that is usually before our own `close`
/// line is written), `getpeername` fails with `ENOTCONN`. So the lines
/// most worth reading, a reset's and a close's, would show `?`: every line
/// about a connection therefore also carries its `id=`, and the reactor's
/// `open` line pairs that id with the address. Per-read trace lines carry
/// only the id: a `getpeername` per read would double the syscalls traced.
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

    fn reset_on_close(&self) -> io::Result<()> {
        socket2::SockRef::from(self).set_linger(Some(Duration::ZERO))
    }

    // The ioctls are in `sys`, the crate's one home for `unsafe`; a failed
    // one counts as on platforms that cannot tell.
    #[cfg(target_os = "linux")]
    fn unacked(&self) -> usize {
        // SIOCOUTQ (= TIOCOUTQ): bytes in the send queue, not yet acked.
        crate::sys::unacked_bytes(self).unwrap_or(0)
    }

    #[cfg(target_os = "linux")]
    fn since_data_sent(&self) -> Option<Duration> {
        crate::sys::since_data_sent(self).ok().flatten()
    }

    #[cfg(target_os = "linux")]
    fn queued_input(&self) -> Option<usize> {
        // SIOCINQ (= FIONREAD): bytes in the receive queue (a queued FIN
        // not counted).
        crate::sys::queued_input_bytes(self).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// A live connection shows its peer's address; once the peer reset it,
    /// the kernel no longer knows it, and `Peer` shows `?` instead of
    /// failing or printing garbage.
    #[test]
    fn peer_shows_the_address_then_a_question_mark_after_a_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let server = mio::net::TcpStream::from_std(accepted);
        let shown = Peer(&server).to_string();
        assert_eq!(shown, client.local_addr().unwrap().to_string());

        // SO_LINGER 0: closing sends a reset instead of a FIN.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        // Wait (bounded) until the reset arrived: a read reports it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut server = server;
        loop {
            match server.read(&mut [0; 8]) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Ok(0) => break,
                _ => {}
            }
            assert!(Instant::now() < deadline, "no reset within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(Peer(&server).to_string(), "?");
    }
}
