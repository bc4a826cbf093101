//! Every mode over UDP (`--udp`): one datagram per stdin line (without its
//! newline: the datagram is the message), each reply awaited for
//! `--timeout`. The server answers every mode's datagrams as an echo, or
//! upper-cased in `upper` mode.
//!
//! What the tutorials get wrong:
//!
//! - `recvfrom()` with no timeout. UDP does not retransmit: when a datagram
//!   or its reply is dropped (a full socket buffer, a congested router), the
//!   reply never comes and that client waits forever. Here each line waits
//!   at most `--timeout`; then the loss is reported, counted, and we carry
//!   on with the next line. Losses make the exit status 1.
//! - Taking the next datagram as the reply. After a timeout, the late reply
//!   to line 1 can arrive while we wait for line 2's, and every answer after
//!   it would be off by one. A reply here must be exactly the echo (or the
//!   upper-cased echo) of the line just sent; anything else is reported and
//!   ignored.
//! - `recvfrom(1024)`: a datagram longer than the buffer is silently cut.
//!   The buffer here holds the largest possible datagram.
//! - An unconnected socket. It accepts datagrams from anyone, and never
//!   learns that nothing listens at the server's address. `connect()` on a
//!   UDP socket sends nothing: it fixes the peer, so the kernel drops
//!   datagrams from anyone else and turns the ICMP "port unreachable"
//!   answer into `ConnectionRefused` on our next call.
//!
//! An empty line is sent as an empty datagram, which is a real message
//! (unlike a 0-byte TCP read, which means EOF), and comes back empty.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use crate::failure::{is_timeout, secs, Failure};
use crate::{strip_newline, Mode};

/// Largest payload of one IPv4 datagram (65535 - 20 bytes of IP header - 8
/// of UDP header); echoloop answers up to this size over IPv6 too.
const MAX_PAYLOAD: usize = 65_507;

/// Sends each stdin line as a datagram and prints each reply.
pub fn run(addr: &str, mode: Mode, timeout: Duration) -> Result<(), Failure> {
    let mut peer = Peer::connect(addr)?;
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut line = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let (mut lines, mut sent, mut lost) = (0u64, 0u64, 0u64);
    loop {
        if !crate::next_line(&mut input, &mut line)? {
            break;
        }
        lines += 1;
        let payload = strip_newline(&line);
        if payload.len() > MAX_PAYLOAD {
            eprintln!(
                "client: line {lines}: {} bytes do not fit in one datagram \
                 (at most {MAX_PAYLOAD}); not sent",
                payload.len()
            );
            continue;
        }
        let expected = match mode {
            Mode::Upper => payload.to_ascii_uppercase(),
            _ => payload.to_vec(),
        };
        sent += 1;
        match peer.exchange(payload, &expected, &mut buf, timeout, lines)? {
            Some(reply) => output
                .write_all(&buf[..reply])
                .and_then(|()| output.write_all(b"\n"))
                .and_then(|()| output.flush())
                .map_err(Failure::io("writing to stdout"))?,
            None => {
                lost += 1;
                eprintln!(
                    "client: line {lines}: no reply within {}: the datagram or its reply \
                     was lost (UDP does not retransmit); carrying on",
                    secs(timeout)
                );
            }
        }
    }
    if lost > 0 || sent < lines {
        return Err(Failure::Datagrams {
            lost,
            sent,
            unsent: lines - sent,
            timeout,
        });
    }
    Ok(())
}

/// A UDP socket connected to the server, and the other addresses its name
/// resolved to.
struct Peer {
    addr: String,
    socket: UdpSocket,
    /// Addresses not tried yet: `localhost` is often both ::1 and
    /// 127.0.0.1, and the server may listen on only one.
    untried: Vec<SocketAddr>,
}

impl Peer {
    fn connect(addr: &str) -> Result<Peer, Failure> {
        let mut untried: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| Failure::Resolve {
                addr: addr.to_string(),
                source,
            })?
            .collect();
        untried.reverse(); // so `pop` takes them in resolver order
        let none = io::Error::new(io::ErrorKind::NotFound, "resolved to no address");
        let socket = next_socket(addr, &mut untried, none)?;
        Ok(Peer {
            addr: addr.to_string(),
            socket,
            untried,
        })
    }

    /// Sends `payload` and waits up to `timeout` for `expected`; `None` when
    /// it did not come. An ICMP "port unreachable" moves on to the next
    /// address, if there is one.
    fn exchange(
        &mut self,
        payload: &[u8],
        expected: &[u8],
        buf: &mut [u8],
        timeout: Duration,
        line: u64,
    ) -> Result<Option<usize>, Failure> {
        loop {
            match exchange(&self.socket, payload, expected, buf, timeout, line) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if self.untried.is_empty() {
                        return Err(Failure::UdpRefused {
                            addr: self.addr.clone(),
                            source: e,
                        });
                    }
                    self.socket = next_socket(&self.addr, &mut self.untried, e)?;
                }
                Err(source) => {
                    return Err(Failure::Io {
                        doing: "exchanging datagrams",
                        source,
                    })
                }
                Ok(reply) => return Ok(reply),
            }
        }
    }
}

/// A socket connected to the next untried address that takes one (an IPv6
/// address fails here on a machine without IPv6); `last` is the error to
/// report when none does.
fn next_socket(
    addr: &str,
    untried: &mut Vec<SocketAddr>,
    mut last: io::Error,
) -> Result<UdpSocket, Failure> {
    while let Some(candidate) = untried.pop() {
        match connected_socket(candidate) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(Failure::Connect {
        addr: addr.to_string(),
        source: last,
    })
}

/// A socket on an ephemeral port of the server's address family, connected
/// to it.
fn connected_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let local = if server.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    Ok(socket)
}

/// One request and its reply, with datagrams that are not the reply (late
/// answers to earlier lines) reported and skipped until the deadline.
fn exchange(
    socket: &UdpSocket,
    payload: &[u8],
    expected: &[u8],
    buf: &mut [u8],
    timeout: Duration,
    line: u64,
) -> io::Result<Option<usize>> {
    socket.send(payload)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(buf) {
            Ok(n) if buf[..n] == *expected => return Ok(Some(n)),
            Ok(n) => eprintln!(
                "client: line {line}: ignored a {n}-byte datagram that does not answer it \
                 (a late reply to an earlier line?)"
            ),
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
