//! `files`: file download from `--root`, streamed as the socket drains.
//!
//! Request: a file name and `\n` (`\r\n` works too), at most `--max-line`
//! bytes. Reply: `u32` big-endian header length, a JSON header, then the
//! body:
//!
//! - `{"name":"<as requested>","size":N}` and exactly N bytes of the file;
//! - `{"error":"not found"}`, `{"error":"not allowed"}` (empty name, NUL, an
//!   absolute path, a `..` component, a symlink leading out of the root, no
//!   permission), `{"error":"not a file"}` or `{"error":"busy"}` (another
//!   process holds a lease on it: see `open`), with no body; the connection
//!   stays open for the next request;
//! - `{"error":"request line exceeds N bytes"}` for an overlong request line,
//!   after which the server closes the connection (`protocol_errors`).
//!
//! Which names are served, and how they are opened, is `files/open.rs`.
//!
//! Several requests on one connection are answered in order. A partial
//! request line (no newline) at EOF is ignored.
//!
//! Memory: the body is read from disk only when the connection's output
//! buffer is empty (`on_drained`), one scratch-sized piece at a time, and only
//! as long as the socket takes it without queueing. So a 1 GiB file to a slow
//! reader holds at most one piece in memory, like a small one. While a body
//! streams, or an unanswered request is queued, the handler takes no input
//! (`wants_input` is false): a pipelining client's later requests wait in the
//! kernel, and we hold at most one read of them plus one partial line.
//!
//! A file that turns out shorter than the size we announced (truncated while
//! being served) or fails to read ends the connection: the header's promise
//! cannot be kept, and closing is the only honest signal left. Counted in
//! `protocol_errors`.
//!
//! Fairness: a reader as fast as we are would keep the socket from ever
//! filling, and one `on_drained` call could then send a whole 1 GiB file
//! while every other connection waits. So a call takes at most
//! `STEPS_PER_CALL` steps (pieces or answers, 128 KiB of body) and then
//! returns with output still owed but nothing queued; the connection then
//! asks the reactor to requeue it, like a read loop stopped by its cap, and
//! the others are served in between.
//!
//! Zero copy: on Linux a body goes out with `sendfile` (see `output/sink.rs`),
//! straight from the page cache to the socket, under the same per-call cap
//! (1 MiB of body), which one `sendfile` may cover when the socket has room. Nothing is queued on that path:
//! when the socket is full, the handler says it awaits WRITABLE
//! (`MoreOutput::WhenWritable`) and the connection registers it, so the body is still
//! paced by the reader. `--no-sendfile`, and every other platform, read
//! each piece into the scratch buffer and write it, as described above; a
//! file the kernel cannot splice falls back to that too.
//!
//! Disk reads are ordinary blocking reads of regular files on the reactor
//! thread: fast from the page cache, but a slow disk stalls every
//! connection. Fine for a teaching server; a production one would use a
//! thread pool or io_uring.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use log::{debug, warn};

use super::lines::first_line;
use super::{Flow, Handler, MoreOutput};
use crate::output::{FileSend, Output};
use crate::stats;

mod open;

use open::open;
#[cfg(test)]
use open::{resolve, Refusal};

/// Body pieces or answers per `on_drained` call before yielding to other
/// connections: with a 64 KiB scratch buffer, 128 KiB of body (the same cap
/// `conn.rs` puts on reads per visit).
const STEPS_PER_CALL: usize = 2;

/// Frames a JSON header: `u32` big-endian length, then the JSON.
pub fn header(json: &serde_json::Value) -> Vec<u8> {
    // Display for a Value cannot fail (every key is a string).
    let text = json.to_string();
    let mut out = Vec::with_capacity(4 + text.len());
    // Headers are a name of at most max_line bytes plus a few dozen: far
    // below u32::MAX.
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn error_header(msg: &str) -> Vec<u8> {
    header(&serde_json::json!({ "error": msg }))
}

/// A file body being sent.
#[derive(Debug)]
struct Body {
    file: File,
    /// Bytes still owed, as announced in the header. Invariant: > 0.
    left: u64,
    /// Where the next piece starts in the file. Both paths read at an
    /// explicit offset, so they can take turns within one body.
    offset: u64,
}

/// What one step of [`Files::on_drained`] achieved.
enum Step {
    /// Sent something; try the next piece.
    More,
    /// Nothing left to do until more input arrives.
    Idle,
    /// The connection must close.
    Close,
}

/// Per-connection state of the `files` mode.
#[derive(Debug)]
pub struct Files {
    /// Canonical `--root`, shared by all connections.
    root: Rc<Path>,
    /// Longest request line, terminator excluded.
    max_line: usize,
    /// Request bytes read and not yet answered start at `input[start..]`.
    /// Bounded: we read only while no complete request waits, so it holds one
    /// read plus a partial line. Released once everything is answered.
    input: Vec<u8>,
    /// How much of `input` was answered. Invariant: `start <= input.len()`.
    start: usize,
    /// The body in flight, if any; `None` between replies.
    body: Option<Body>,
    /// Send bodies with `sendfile` (`Config::sendfile`); turned off for
    /// this connection if the kernel cannot splice a file.
    sendfile: bool,
    /// `sendfile` found the socket full: nothing is queued, and the next
    /// piece waits for WRITABLE. Cleared by the next `on_drained`.
    blocked: bool,
}

impl Files {
    pub fn new(root: Rc<Path>, max_line: usize) -> Files {
        Files {
            root,
            max_line,
            input: Vec::new(),
            start: 0,
            body: None,
            sendfile: false,
            blocked: false,
        }
    }

    /// Sends bodies with `sendfile` where the socket supports it.
    pub fn with_sendfile(mut self, on: bool) -> Files {
        self.sendfile = on;
        self
    }

    fn request_queued(&self) -> bool {
        self.input[self.start..].contains(&b'\n')
    }

    /// Sends the next piece of the body, taking what it sent from
    /// `budget`: with `sendfile` as much of the budget as the socket takes in
    /// one call, or one scratch buffer read and written.
    fn send_piece(&mut self, scratch: &mut [u8], budget: &mut usize, out: &mut Output<'_>) -> Step {
        let Some(body) = self.body.as_mut() else {
            return Step::Idle;
        };
        let left = usize::try_from(body.left).unwrap_or(usize::MAX);
        if *budget == 0 {
            return Step::Idle; // this call's share is spent: yield
        }
        if self.sendfile {
            match out.send_file(&body.file, &mut body.offset, left.min(*budget)) {
                FileSend::Sent(n) => {
                    *budget = budget.saturating_sub(n);
                    return self.sent(n as u64, out);
                }
                FileSend::Full => {
                    self.blocked = true;
                    return Step::Idle;
                }
                FileSend::Ended => return self.shrank(out),
                // The loop sees `out.failed()` and stops; the connection closes.
                FileSend::Failed => return Step::More,
                FileSend::Unsupported => self.sendfile = false,
            }
        }
        let want = left.min(scratch.len()).min(*budget);
        match body.file.read_at(&mut scratch[..want], body.offset) {
            Ok(0) => self.shrank(out),
            Ok(n) => {
                body.offset += n as u64;
                *budget = budget.saturating_sub(n);
                out.send(&scratch[..n]);
                self.sent(n as u64, out)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::More,
            Err(e) => {
                warn!("files: read error={e}");
                self.fail(out)
            }
        }
    }

    /// `n` more body bytes went out (or were queued).
    fn sent(&mut self, n: u64, out: &mut Output<'_>) -> Step {
        if let Some(body) = self.body.as_mut() {
            body.left -= n;
            if body.left == 0 {
                stats::add(&out.stats.files_served, 1);
                self.body = None;
            }
        }
        Step::More
    }

    /// The file ended before the size we announced.
    fn shrank(&mut self, out: &mut Output<'_>) -> Step {
        let missing = self.body.as_ref().map_or(0, |b| b.left);
        warn!("files: file shrank while served missing_bytes={missing}");
        self.fail(out)
    }

    /// Answers the next complete request line, if one is queued.
    fn answer_next(&mut self, out: &mut Output<'_>) -> Step {
        let (reply, used) = match first_line(&self.input[self.start..], self.max_line) {
            Err(_) => return self.refuse_long_line(out),
            Ok(None) => {
                if self.start == self.input.len() {
                    self.input = Vec::new(); // all answered: release it
                    self.start = 0;
                }
                return Step::Idle;
            }
            Ok(Some((name, used))) => (self.reply_to(name), used),
        };
        self.start += used;
        match reply {
            Ok((head, body)) => {
                out.send(&head);
                match body {
                    Some(b) => self.body = Some(b),
                    None => stats::add(&out.stats.files_served, 1),
                }
            }
            Err(head) => out.send(&head),
        }
        Step::More
    }

    /// The header for `name`, and the body to stream (none for an empty
    /// file); or an error header.
    fn reply_to(&self, name: &[u8]) -> Result<(Vec<u8>, Option<Body>), Vec<u8>> {
        let shown = String::from_utf8_lossy(name);
        match open(&self.root, name) {
            Ok((file, size)) => {
                debug!("files: serving name={shown:?} size={size}");
                let head = header(&serde_json::json!({ "name": shown, "size": size }));
                let body = (size > 0).then_some(Body {
                    file,
                    left: size,
                    offset: 0,
                });
                Ok((head, body))
            }
            Err(r) => {
                debug!("files: refused name={shown:?} reason={}", r.as_str());
                Err(error_header(r.as_str()))
            }
        }
    }

    /// Answers an overlong request line with an error header, then closes.
    fn refuse_long_line(&mut self, out: &mut Output<'_>) -> Step {
        debug!("files: request line over max_line={}", self.max_line);
        let msg = format!("request line exceeds {} bytes", self.max_line);
        out.send(&error_header(&msg));
        self.fail(out)
    }

    /// A protocol error: forget every request and body, so nothing more is
    /// owed and the connection can close.
    fn fail(&mut self, out: &mut Output<'_>) -> Step {
        stats::add(&out.stats.protocol_errors, 1);
        self.body = None;
        self.input = Vec::new();
        self.start = 0;
        Step::Close
    }
}

impl Handler for Files {
    /// Queues the request bytes; answering happens in `on_drained`, which
    /// the connection calls next because `more_output` turns to `Now`.
    fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        // Only a partial line can be left here (we do not read while a
        // complete one waits), so this moves at most max_line + 1 bytes.
        self.input.drain(..self.start);
        self.start = 0;
        self.input.extend_from_slice(data);
        if first_line(&self.input, self.max_line).is_err() {
            let _ = self.refuse_long_line(out);
            return Flow::Close;
        }
        Flow::Continue
    }

    /// Streams the body and answers queued requests, in order, while the
    /// socket takes bytes without queueing them.
    fn on_drained(&mut self, scratch: &mut [u8], out: &mut Output<'_>) -> Flow {
        self.blocked = false;
        // Body bytes this call may send: the same 1 MiB whichever path.
        let mut budget = STEPS_PER_CALL * scratch.len();
        for _ in 0..STEPS_PER_CALL {
            if out.pending() > 0 || out.failed() {
                return Flow::Continue;
            }
            let step = if self.body.is_some() {
                self.send_piece(scratch, &mut budget, out)
            } else {
                self.answer_next(out)
            };
            match step {
                Step::More => {}
                Step::Idle => break,
                Step::Close => return Flow::Close,
            }
        }
        if self.body.is_none() && self.start == self.input.len() {
            // Everything answered: give the input's memory back now, not at
            // the next request (the memory budget counts it).
            self.input = Vec::new();
            self.start = 0;
        }
        // Out of steps with output still owed: the connection sees
        // `MoreOutput::Now` with nothing queued and requeues itself.
        Flow::Continue
    }

    /// No input while a body streams or a request waits its turn.
    fn wants_input(&self) -> bool {
        self.body.is_none() && !self.request_queued()
    }

    /// A body to stream (once the socket has room, if `sendfile` found it
    /// full: see `blocked`), or a request to answer.
    fn more_output(&self) -> MoreOutput {
        match (&self.body, self.blocked) {
            (Some(_), true) => MoreOutput::WhenWritable,
            (Some(_), false) => MoreOutput::Now,
            (None, _) if self.request_queued() => MoreOutput::Now,
            (None, _) => MoreOutput::Nothing,
        }
    }

    /// Bytes of unanswered request input held, for the memory budget.
    fn held(&self) -> usize {
        self.input.capacity()
    }
}

#[cfg(test)]
mod tests;
