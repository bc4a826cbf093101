//! TCP plumbing every mode shares: connecting with a timeout, reading
//! exactly as many bytes as a reply has, and ending a conversation cleanly.
//!
//! What the tutorials get wrong here:
//!
//! - `data = s.recv(1024)` taken as "the reply". TCP delivers a byte stream,
//!   not messages: a 6-byte reply can arrive as 2 + 4 bytes, and two replies
//!   can arrive in one read. [`read_full`] loops until it has exactly what it
//!   was waiting for, and tells a closed connection (EOF, a read of 0 bytes)
//!   apart from a silent one (the read timeout).
//! - `s.close()` right after the last send. A close with replies still in
//!   flight can lose them, and says nothing about whether the server was
//!   done. [`finish`] half-closes instead (`shutdown(Write)`: "no more
//!   requests"), then reads until the server's own EOF, which is its "all
//!   answered". That is exactly the half-close the server handles in
//!   `src/conn.rs`.
//! - `connect()` with no timeout: a host that drops SYNs makes it wait about
//!   two minutes.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::failure::{is_timeout, Failure};

/// Connects to `addr`, trying every address it resolves to: `localhost`
/// may be both ::1 and 127.0.0.1 while the server listens on only one.
/// Reads and writes then time out after `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Failure> {
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| Failure::Resolve {
            addr: addr.to_string(),
            source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to try");
    for candidate in candidates {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => return configure(stream, timeout),
            Err(e) => last = e,
        }
    }
    Err(Failure::Connect {
        addr: addr.to_string(),
        source: last,
    })
}

fn configure(stream: TcpStream, timeout: Duration) -> Result<TcpStream, Failure> {
    let failed = |source| Failure::Io {
        doing: "setting socket options",
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    // Each request goes out in one `write_all`, so Nagle's algorithm could
    // only ever hold back the tail of a long one, waiting for an ACK the
    // server delays: up to 40 ms per round trip for nothing.
    stream.set_nodelay(true).map_err(failed)?;
    Ok(stream)
}

/// One `read` of at most `buf.len()` bytes, as part of reading `want` bytes
/// of `what` of which `got` already arrived. Returns how many bytes came
/// (never 0); EOF, the timeout and errors become the matching [`Failure`].
pub fn read_some(
    mut stream: &TcpStream,
    buf: &mut [u8],
    what: &'static str,
    (got, want): (u64, u64),
    timeout: Duration,
) -> Result<usize, Failure> {
    loop {
        return match stream.read(buf) {
            // EOF: the server closed its side before sending all of it.
            Ok(0) => Err(Failure::Closed { what, got, want }),
            Ok(n) => Ok(n),
            // A signal interrupted the call; nothing happened, so retry.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Err(Failure::NoReply {
                what,
                got,
                want,
                timeout,
            }),
            Err(source) => Err(Failure::Io {
                doing: "reading from the server",
                source,
            }),
        };
    }
}

/// Fills `buf` completely: a reply is `buf.len()` bytes however many reads
/// they take. (`Read::read_exact` does the same, but its error cannot say
/// how far it got, nor tell EOF from a timeout.)
pub fn read_full(
    stream: &TcpStream,
    buf: &mut [u8],
    what: &'static str,
    timeout: Duration,
) -> Result<(), Failure> {
    let want = buf.len() as u64;
    let mut got = 0;
    while got < buf.len() {
        got += read_some(stream, &mut buf[got..], what, (got as u64, want), timeout)?;
    }
    Ok(())
}

/// Ends the conversation: half-close, then wait for the server's EOF. Any
/// byte arriving instead was not asked for, which is a protocol error.
pub fn finish(mut stream: &TcpStream, timeout: Duration) -> Result<(), Failure> {
    stream
        .shutdown(Shutdown::Write)
        .map_err(Failure::io("half-closing the connection"))?;
    let mut extra = [0u8; 512];
    loop {
        return match stream.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(n) => Err(Failure::Protocol(format!(
                "{n} bytes arrived that answer nothing we sent: {:?}",
                String::from_utf8_lossy(&extra[..n])
            ))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Err(Failure::NoClose(timeout)),
            Err(source) => Err(Failure::Io {
                doing: "waiting for the server to close",
                source,
            }),
        };
    }
}
