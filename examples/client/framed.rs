//! `framed`: each stdin line (without its newline) goes out as one frame, a
//! `u32` big-endian length and then the payload; each reply frame is read by
//! its length prefix.
//!
//! What the tutorials get wrong:
//!
//! - Reading the 4-byte header with one `recv(4)`. It can return 1, 2 or 3
//!   bytes; `read_full` waits for all four, then for exactly the payload.
//! - Trusting the length: `recv(length)` or `vec![0; length]` with a length
//!   the peer chose lets any peer make us allocate 4 GiB. The server refuses
//!   frames over `--max-frame` before allocating anything (`src/protocol/
//!   framed.rs`); this client, knowing a reply should echo the frame it just
//!   sent, accepts that length or an error message, and nothing else.
//! - Two writes, header then payload: with Nagle's algorithm the payload can
//!   wait for the ACK of the header. One buffer, one `write_all`.
//!
//! A frame the server refuses (over its `--max-frame`) is answered with a
//! frame whose payload is `error: ...`, and the server then closes: reported
//! as the server's error.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::failure::Failure;
use crate::strip_newline;
use crate::tcp::{finish, read_full};

/// Bytes in a frame header.
const HEADER: usize = 4;

/// Longest reply frame accepted when it is not the echo of ours: room for
/// the server's `error: frame length N exceeds max-frame M`.
const MAX_ERROR_FRAME: usize = 1024;

/// Sends each stdin line as a frame and prints each echoed payload.
pub fn run(mut stream: &TcpStream, timeout: Duration) -> Result<(), Failure> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut line = Vec::new();
    loop {
        if !crate::next_line(&mut input, &mut line)? {
            return finish(stream, timeout);
        }
        let payload = strip_newline(&line);
        stream
            .write_all(&frame(payload)?)
            .map_err(Failure::io("sending to the server"))?;
        let reply = read_frame(stream, payload.len(), timeout)?;
        if reply != payload {
            return Err(if let Some(error) = reply.strip_prefix(b"error: ") {
                Failure::Server(String::from_utf8_lossy(error).into_owned())
            } else {
                Failure::Protocol(format!(
                    "the reply frame ({} bytes) is not the frame we sent ({} bytes)",
                    reply.len(),
                    payload.len()
                ))
            });
        }
        output
            .write_all(&reply)
            .and_then(|()| output.write_all(b"\n"))
            .and_then(|()| output.flush())
            .map_err(Failure::io("writing to stdout"))?;
    }
}

/// Header and payload in one buffer, to go out in one write.
fn frame(payload: &[u8]) -> Result<Vec<u8>, Failure> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Failure::Usage("a line of 4 GiB or more does not fit in one frame"))?;
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// Reads one frame, expected to echo `sent` payload bytes.
fn read_frame(stream: &TcpStream, sent: usize, timeout: Duration) -> Result<Vec<u8>, Failure> {
    let mut header = [0u8; HEADER];
    read_full(stream, &mut header, "a frame header", timeout)?;
    let len = u32::from_be_bytes(header) as usize;
    // The length is the server's claim: check it before allocating.
    if len != sent && len > MAX_ERROR_FRAME {
        return Err(Failure::Protocol(format!(
            "a reply frame announced {len} bytes for a frame of {sent}"
        )));
    }
    let mut payload = vec![0u8; len];
    read_full(stream, &mut payload, "a frame payload", timeout)?;
    Ok(payload)
}
