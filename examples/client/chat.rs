//! `chat`: the room's lines are printed as they arrive while our stdin lines
//! are sent, each on its own thread.
//!
//! What the tutorials get wrong: their chat client alternates
//! `input()` and `recv()`, so the room's lines only show up after you type
//! something, and a quiet user sees nothing at all. Or it starts a reader
//! thread and then has no way to end: the program hangs at the end of input,
//! or keeps reading stdin after the server is gone.
//!
//! Here two threads each block on one thing, and the main thread waits for
//! whichever finishes first:
//!
//! - **End of our input** (Ctrl-D, or the end of a pipe): we half-close
//!   (`shutdown(Write)`), which the server takes as "leaving"; it sends what
//!   it still owes us and closes, the reader sees EOF, and we exit 0. If the
//!   server does not close within `--timeout`, we say so and exit 1.
//! - **The server closed** (shut down, idle timeout, or we broke a rule):
//!   nothing more can be said, so we exit at once, 0 for a plain close, 1
//!   when its last line was `error: ...` (e.g. a line over its
//!   `--max-line`). The stdin thread may still be blocked in a read nobody
//!   can interrupt; returning from `main` ends it with the process.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::failure::Failure;

/// Longest piece of a room line held at once; a longer line is printed in
/// pieces (the server bounds lines anyway, but the server is untrusted).
const MAX_PIECE: u64 = 64 * 1024;

/// What a worker thread reports when it ends.
enum Event {
    /// Our input ended (or sending failed).
    InputDone(Result<(), Failure>),
    /// The server closed the connection (or reading failed).
    RoomClosed(Result<(), Failure>),
}

/// Runs a chat session until our input ends or the server closes.
pub fn run(stream: TcpStream, timeout: Duration) -> Result<(), Failure> {
    let room = stream
        .try_clone()
        .map_err(Failure::io("cloning the socket"))?;
    // A room can be quiet for hours: the reader waits without a timeout.
    // (Both handles share one socket, so this is the socket's setting.)
    room.set_read_timeout(None)
        .map_err(Failure::io("setting socket options"))?;
    // Our half-close is done here, not by the stdin thread: the server's
    // close that answers it must not be taken for news (the reader could
    // report it before the stdin thread had reported its end).
    let leave = stream
        .try_clone()
        .map_err(Failure::io("cloning the socket"))?;
    let (events, done) = mpsc::channel();
    let reader_events = events.clone();
    thread::spawn(move || {
        let _ = reader_events.send(Event::RoomClosed(print_room(&room)));
    });
    thread::spawn(move || {
        let _ = events.send(Event::InputDone(send_lines(&stream)));
    });

    match done.recv() {
        Ok(Event::RoomClosed(verdict)) => {
            if verdict.is_ok() {
                eprintln!("client: the server closed the connection");
            }
            verdict
        }
        // Our input ended: we say goodbye (half-close); the server now
        // flushes what it owes us, and closes.
        Ok(Event::InputDone(Ok(()))) => {
            leave
                .shutdown(Shutdown::Write)
                .map_err(Failure::io("half-closing the connection"))?;
            match done.recv_timeout(timeout) {
                Ok(Event::RoomClosed(verdict)) => verdict,
                _ => Err(Failure::NoClose(timeout)),
            }
        }
        // Sending failed, usually because the server closed or reset the
        // connection; the reader's verdict says why, if it comes soon.
        Ok(Event::InputDone(Err(send_failure))) => match done.recv_timeout(timeout) {
            Ok(Event::RoomClosed(Err(why))) => Err(why),
            _ => Err(send_failure),
        },
        // Both threads report before they end, so this means one panicked.
        Err(mpsc::RecvError) => Err(Failure::Io {
            doing: "chatting",
            source: io::Error::other("a worker thread ended without reporting"),
        }),
    }
}

/// Sends every stdin line (the caller half-closes once it returns).
fn send_lines(mut stream: &TcpStream) -> Result<(), Failure> {
    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        if !crate::next_line(&mut input, &mut line)? {
            break;
        }
        // A last line without its newline is not a line yet to the server,
        // which drops it at our EOF; finish it so nothing typed is lost.
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        stream
            .write_all(&line)
            .map_err(Failure::io("sending to the room"))?;
    }
    Ok(())
}

/// Prints the room's lines until the server closes; fails if its last line
/// was an error.
fn print_room(stream: &TcpStream) -> Result<(), Failure> {
    let mut room = BufReader::new(stream);
    let mut output = io::stdout();
    let mut piece = Vec::new();
    let mut at_line_start = true;
    let mut last_error = None;
    loop {
        piece.clear();
        let n = (&mut room)
            .take(MAX_PIECE)
            .read_until(b'\n', &mut piece)
            .map_err(Failure::io("reading from the room"))?;
        if n == 0 {
            break; // EOF: the server closed
        }
        if at_line_start {
            last_error = piece
                .strip_prefix(b"error: ")
                .map(|error| String::from_utf8_lossy(error).trim_end().to_string());
        }
        at_line_start = piece.ends_with(b"\n");
        output
            .write_all(&piece)
            .and_then(|()| output.flush())
            .map_err(Failure::io("writing to stdout"))?;
    }
    match last_error {
        Some(error) => Err(Failure::Server(error)),
        None => Ok(()),
    }
}
