//! A minimal mio echo server, the way mio's own `tcp_server` example is
//! written: on every readable event, read until `WouldBlock`, write the bytes
//! back. A peer for the performance lab (`scripts/compare-peer.sh`): the
//! plain readiness loop, without echoloop's short-read shortcut, scratch
//! buffer, backpressure, timers or limits. Unlike mio's example it keeps
//! what a short write left over (and waits for WRITABLE), and its UDP
//! socket drops a reply the kernel will not take instead of dying.
//!
//! ```text
//! cargo run --release --example mio_echo -- 127.0.0.1:0
//! ```
//!
//! Prints `tcp=ADDR udp=ADDR` on stdout; TCP and UDP share the port number.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const UDP: Token = Token(1);

/// A connection, the bytes its socket has not taken yet, and whether
/// WRITABLE is registered (so `reregister` runs only when that changes).
struct Conn {
    stream: TcpStream,
    unsent: Vec<u8>,
    writable: bool,
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    let tcp = listener.local_addr()?;
    let mut udp = UdpSocket::bind(tcp)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry()
        .register(&mut udp, UDP, Interest::READABLE)?;
    println!("tcp={tcp} udp={}", udp.local_addr()?);

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 2;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    // Accept until WouldBlock: one event may stand for many.
                    let (mut stream, _) = match listener.accept() {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    let _ = stream.set_nodelay(true);
                    let token = Token(next);
                    next += 1;
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE)?;
                    let (unsent, writable) = (Vec::new(), false);
                    conns.insert(
                        token,
                        Conn {
                            stream,
                            unsent,
                            writable,
                        },
                    );
                },
                UDP => loop {
                    // Receive until WouldBlock; a reply that would block is dropped.
                    match udp.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            let _ = udp.send_to(&buf[..n], from);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    }
                },
                token => {
                    let done = match conns.get_mut(&token) {
                        Some(conn) => serve(conn, &mut buf).unwrap_or(true),
                        None => false, // spurious: already closed
                    };
                    if done {
                        conns.remove(&token);
                    } else if let Some(conn) = conns.get_mut(&token) {
                        let writable = !conn.unsent.is_empty();
                        if writable != conn.writable {
                            let interest = if writable {
                                Interest::READABLE | Interest::WRITABLE
                            } else {
                                Interest::READABLE
                            };
                            poll.registry()
                                .reregister(&mut conn.stream, token, interest)?;
                            conn.writable = writable;
                        }
                    }
                }
            }
        }
    }
}

/// Flushes what is owed, then reads until `WouldBlock`, echoing each read.
/// Returns true once the connection is finished (EOF or error).
fn serve(conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    if !flush(conn)? {
        return Ok(false); // still owed: read more only once it drained
    }
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Write straight from the buffer; keep only what the socket refused.
        let sent = write_some(&mut conn.stream, &buf[..n])?;
        if sent < n {
            conn.unsent.extend_from_slice(&buf[sent..n]);
            return Ok(false);
        }
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Writes owed bytes; true once none are left.
fn flush(conn: &mut Conn) -> io::Result<bool> {
    let sent = write_some(&mut conn.stream, &conn.unsent)?;
    conn.unsent.drain(..sent);
    Ok(conn.unsent.is_empty())
}
