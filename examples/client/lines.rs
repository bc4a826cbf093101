//! `echo` and `upper` over TCP: each stdin line goes out, and its reply is
//! read until every byte of it came back.
//!
//! Both modes answer byte for byte (`upper` changes letters, never the
//! length), so after sending N bytes we know the reply is exactly N bytes,
//! and [`read_full`] waits for exactly that. The tutorial's
//! `send(line); print(recv(1024))` works on loopback with short lines and
//! fails on a real network, where the reply to a line can arrive in two
//! reads, and with any line over 1024 bytes.
//!
//! A long line (or input without newlines) goes out in pieces of at most
//! [`PIECE`] bytes, each read back before the next is sent. Writing all of a
//! 100 MiB line before reading any reply would deadlock against any server
//! with backpressure: echoloop stops reading a client whose replies pile up
//! unread (`--max-pending`), so our write would block forever while the
//! replies we are not reading fill every buffer in between. In lock step,
//! at most one piece is in flight and memory stays at one piece.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::failure::Failure;
use crate::tcp::{finish, read_full};

/// Most bytes in flight at once: far below any socket buffer, so neither
/// side's writes can block while the other is not reading.
const PIECE: usize = 64 * 1024;

/// Sends stdin line by line and prints each reply.
pub fn run(stream: &TcpStream, timeout: Duration) -> Result<(), Failure> {
    let input = BufReader::with_capacity(PIECE, io::stdin().lock());
    converse(stream, input, io::stdout().lock(), timeout)?;
    finish(stream, timeout)
}

fn converse(
    mut stream: &TcpStream,
    mut input: impl BufRead,
    mut output: impl Write,
    timeout: Duration,
) -> Result<(), Failure> {
    let mut reply = vec![0u8; PIECE];
    loop {
        let available = input.fill_buf().map_err(Failure::io("reading stdin"))?;
        if available.is_empty() {
            return Ok(()); // end of input
        }
        // Up to the end of the first line, and at most one piece.
        let n = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => newline + 1,
            None => available.len(),
        }
        .min(PIECE);
        stream
            .write_all(&available[..n])
            .map_err(Failure::io("sending to the server"))?;
        input.consume(n);
        read_full(stream, &mut reply[..n], "the echoed line", timeout)?;
        output
            .write_all(&reply[..n])
            .and_then(|()| output.flush())
            .map_err(Failure::io("writing to stdout"))?;
    }
}
