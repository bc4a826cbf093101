//! The metrics listener and its scrape connections: a tiny HTTP server that
//! lives inside the reactor's loop, under the same rules as every other
//! socket (non-blocking, edge-triggered, bounded work per event).
//!
//! A scrape connection goes Reading -> Writing -> Finishing -> closed:
//! read the request head (at most `MAX_REQUEST` bytes), write the whole
//! response, send FIN, then read and drop until the peer's EOF. That last
//! step matters for the same reason as in `conn.rs`: closing a socket with
//! unread input makes the kernel send a reset, which can destroy the
//! response before the scraper read it. Every connection is closed
//! `SCRAPE_TIMEOUT` after it was accepted, whatever its state, and at most
//! `MAX_SCRAPES` are open at once (more wait in the listener's backlog), so
//! a client that connects and says nothing costs a slot for a few seconds
//! and nothing else.
//!
//! Each connection is registered once for READABLE and WRITABLE and never
//! re-registered: with edge-triggered readiness an unneeded WRITABLE edge is
//! one spurious event, cheaper than the `epoll_ctl` calls to toggle it.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::http::{self, Parsed, MAX_REQUEST};
use super::LoopMetrics;
use crate::stats::Counters;
use crate::token::{scrape_key, scrape_token, MAX_SCRAPES, METRICS};

/// A scrape connection is closed this long after it was accepted. Prometheus
/// gives a scrape 10 s by default; ours answers in microseconds once asked.
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Input after the request that we read and drop before closing anyway.
const MAX_DISCARD: usize = 64 * 1024;

/// The metrics listener, its open scrape connections, and what they report.
#[derive(Debug)]
pub(crate) struct Endpoint {
    listener: TcpListener,
    /// Open scrape connections; at most `MAX_SCRAPES`. A connection's token
    /// is `scrape_token(key)` (`token.rs`).
    scrapes: Slab<Scrape>,
    /// We stopped accepting at `MAX_SCRAPES` (or on an accept error) with
    /// clients perhaps left in the backlog. Their edge has passed, so we
    /// accept again as soon as a slot frees instead of waiting for one.
    backlog_waiting: bool,
    /// The server's counters and gauges.
    counters: Arc<Counters>,
    /// The loop's histograms (shared by every reactor).
    loop_metrics: Arc<LoopMetrics>,
}

#[derive(Debug)]
struct Scrape {
    socket: TcpStream,
    /// Accepted at + `SCRAPE_TIMEOUT`: closed then, whatever its state.
    deadline: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Reading the request head: the bytes so far, at most `MAX_REQUEST`.
    Reading(Vec<u8>),
    /// Writing the response: all of it, and how much the socket took.
    Writing { response: Vec<u8>, written: usize },
    /// Response and FIN sent: dropping input until the peer's EOF, at most
    /// `MAX_DISCARD` bytes.
    Finishing { discarded: usize },
}

/// What a step of a scrape connection left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Wait for its next readiness event.
    Wait,
    /// Close it.
    Close,
}

impl Endpoint {
    /// Registers `listener` under `METRICS`.
    pub(crate) fn new(
        mut listener: TcpListener,
        registry: &Registry,
        counters: Arc<Counters>,
        loop_metrics: Arc<LoopMetrics>,
    ) -> io::Result<Endpoint> {
        registry.register(&mut listener, METRICS, Interest::READABLE)?;
        Ok(Endpoint {
            listener,
            scrapes: Slab::with_capacity(MAX_SCRAPES),
            backlog_waiting: false,
            counters,
            loop_metrics,
        })
    }

    /// One readiness event for `token` (one that `token::is_metrics` owns).
    pub(crate) fn on_event(&mut self, token: Token, registry: &Registry, now: Instant) {
        if token == METRICS {
            self.accept_all(registry, now);
            return;
        }
        let Some((key, scrape)) =
            scrape_key(token).and_then(|k| Some((k, self.scrapes.get_mut(k)?)))
        else {
            trace!("event for vacant metrics token={}", token.0);
            return;
        };
        let step = scrape.advance(|| {
            let fields = self.counters.snapshot().fields();
            super::exposition::render(&fields, &self.loop_metrics.exported())
        });
        if step == Step::Close {
            self.close(key, registry, now);
        }
    }

    /// The earliest scrape deadline, for the poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.scrapes.iter().map(|(_, s)| s.deadline).min()
    }

    /// Closes scrape connections whose time is up.
    pub(crate) fn expire(&mut self, registry: &Registry, now: Instant) {
        let expired: Vec<usize> = (self.scrapes.iter())
            .filter(|(_, s)| s.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            // Closing one may accept a waiting client into a freed key:
            // check the key still holds a connection out of time.
            if self.scrapes.get(key).is_some_and(|s| s.deadline <= now) {
                debug!("metrics connection timed out token={}", scrape_token(key).0);
                self.close(key, registry, now);
            }
        }
    }

    /// Accepts until `WouldBlock` (edge-triggered) or until every slot is
    /// taken.
    fn accept_all(&mut self, registry: &Registry, now: Instant) {
        loop {
            if self.scrapes.len() >= MAX_SCRAPES {
                self.backlog_waiting = true;
                return;
            }
            match self.listener.accept() {
                Ok((mut socket, peer)) => {
                    let entry = self.scrapes.vacant_entry();
                    let token = scrape_token(entry.key());
                    // A request already queued shows up as an event right
                    // after registration: epoll reports current readiness.
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = registry.register(&mut socket, token, interest) {
                        debug!("metrics register peer={peer} error={e}");
                        continue;
                    }
                    trace!("metrics open token={} peer={peer}", token.0);
                    entry.insert(Scrape {
                        socket,
                        deadline: now + SCRAPE_TIMEOUT,
                        state: State::Reading(Vec::new()),
                    });
                }
                // The backlog is empty: the next client raises a new edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.backlog_waiting = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A client that gave up while in the backlog: try the next.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // Out of descriptors or memory: retrying now would spin; try
                // again when a scrape connection closes and frees one.
                Err(e) => {
                    debug!("metrics accept error={e}");
                    self.backlog_waiting = true;
                    return;
                }
            }
        }
    }

    fn close(&mut self, key: usize, registry: &Registry, now: Instant) {
        let mut scrape = self.scrapes.remove(key);
        if let Err(e) = registry.deregister(&mut scrape.socket) {
            trace!("metrics deregister error={e}");
        }
        trace!("metrics close token={}", scrape_token(key).0);
        // Dropping the socket closes it. A later event in this batch for the
        // same token would reach a connection accepted below: a spurious
        // event, which every state handles (it just sees `WouldBlock`).
        drop(scrape);
        if self.backlog_waiting {
            self.accept_all(registry, now);
        }
    }
}

impl Scrape {
    /// Moves the connection as far as its socket allows. `exposition`
    /// renders the metrics when the request asks for them.
    fn advance(&mut self, exposition: impl FnOnce() -> String) -> Step {
        if let State::Reading(request) = &mut self.state {
            match read_request(&mut self.socket, request) {
                Ok(Some(reply)) => {
                    debug!("metrics request answered reply={reply:?}");
                    let response = http::response(reply, exposition);
                    self.state = State::Writing {
                        response,
                        written: 0,
                    };
                }
                Ok(None) => return Step::Wait,
                Err(e) => return closing_on(e),
            }
        }
        if let State::Writing { response, written } = &mut self.state {
            match write_all(&mut self.socket, response, written) {
                // Everything went out: our FIN says there is no more.
                Ok(true) => match self.socket.shutdown(Shutdown::Write) {
                    Ok(()) => self.state = State::Finishing { discarded: 0 },
                    Err(e) => return closing_on(e),
                },
                Ok(false) => return Step::Wait,
                Err(e) => return closing_on(e),
            }
        }
        if let State::Finishing { discarded } = &mut self.state {
            return match discard_until_eof(&mut self.socket, discarded) {
                Ok(true) => Step::Close,
                Ok(false) if *discarded > MAX_DISCARD => Step::Close,
                Ok(false) => Step::Wait,
                Err(e) => closing_on(e),
            };
        }
        Step::Wait
    }
}

fn closing_on(e: io::Error) -> Step {
    debug!("metrics connection error={e}");
    Step::Close
}

/// Reads until the head is complete, the socket is drained, or the peer
/// closed. `Some(reply)` once there is something to answer.
fn read_request(socket: &mut impl Read, request: &mut Vec<u8>) -> io::Result<Option<http::Reply>> {
    let mut chunk = [0u8; 1024];
    loop {
        let room = (MAX_REQUEST - request.len()).min(chunk.len());
        match socket.read(&mut chunk[..room]) {
            // The peer closed before finishing its head: answer it anyway
            // (it may only have half-closed), or close quietly if it sent
            // nothing at all.
            Ok(0) if request.is_empty() => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no request"))
            }
            Ok(0) => {
                return Ok(Some(http::Reply::BadRequest("incomplete request head")));
            }
            Ok(n) => {
                request.extend_from_slice(&chunk[..n]);
                if let Parsed::Reply(reply) = http::parse(request) {
                    return Ok(Some(reply));
                }
            }
            // Drained: the rest of the head raises a new edge when it comes.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes until done (`true`) or the socket is full (`false`; a WRITABLE
/// edge comes when it has room).
fn write_all(socket: &mut impl Write, response: &[u8], written: &mut usize) -> io::Result<bool> {
    while *written < response.len() {
        match socket.write(&response[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads and drops input until EOF (`true`), the socket is drained, or
/// `MAX_DISCARD` is passed (`false` for both).
fn discard_until_eof(socket: &mut impl Read, discarded: &mut usize) -> io::Result<bool> {
    let mut chunk = [0u8; 1024];
    while *discarded <= MAX_DISCARD {
        match socket.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => *discarded += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ReadStep, ScriptedIo};

    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn a_head_split_across_reads_is_answered_once_complete() {
        let mut io = ScriptedIo::default().with_reads(vec![
            ReadStep::Data(SCRAPE[..10].to_vec()),
            ReadStep::WouldBlock,
            ReadStep::Interrupted,
            ReadStep::Data(SCRAPE[10..].to_vec()),
        ]);
        let mut request = Vec::new();
        assert_eq!(read_request(&mut io, &mut request).unwrap(), None);
        let reply = read_request(&mut io, &mut request).unwrap();
        assert_eq!(reply, Some(http::Reply::Metrics { head_only: false }));
    }

    #[test]
    fn a_head_without_end_is_cut_at_the_limit() {
        let endless = vec![b'a'; 4 * MAX_REQUEST];
        let mut io = ScriptedIo::default().with_reads(vec![ReadStep::Data(endless)]);
        let mut request = Vec::new();
        let reply = read_request(&mut io, &mut request).unwrap();
        assert!(matches!(reply, Some(http::Reply::BadRequest(_))));
        assert_eq!(request.len(), MAX_REQUEST, "read no more than the limit");
    }

    #[test]
    fn eof_before_the_end_of_the_head() {
        let mut silent = ScriptedIo::default().with_reads(vec![ReadStep::Eof]);
        assert!(read_request(&mut silent, &mut Vec::new()).is_err());
        let mut partial = ScriptedIo::default()
            .with_reads(vec![ReadStep::Data(b"GET /".to_vec()), ReadStep::Eof]);
        let reply = read_request(&mut partial, &mut Vec::new()).unwrap();
        assert_eq!(
            reply,
            Some(http::Reply::BadRequest("incomplete request head"))
        );
    }

    #[test]
    fn a_response_is_written_across_short_writes_and_would_block() {
        let mut io = ScriptedIo::new(vec![Some(3), None, Some(100)]);
        let mut written = 0;
        assert!(!write_all(&mut io, b"0123456789", &mut written).unwrap());
        assert_eq!(written, 3);
        assert!(write_all(&mut io, b"0123456789", &mut written).unwrap());
        assert_eq!(io.written, b"0123456789");
    }

    #[test]
    fn input_after_the_response_is_dropped_until_eof_or_the_cap() {
        let mut io = ScriptedIo::default().with_reads(vec![
            ReadStep::Data(vec![0; 100]),
            ReadStep::WouldBlock,
            ReadStep::Eof,
        ]);
        let mut discarded = 0;
        assert!(!discard_until_eof(&mut io, &mut discarded).unwrap());
        assert_eq!(discarded, 100);
        assert!(discard_until_eof(&mut io, &mut discarded).unwrap());
        let flood = vec![0; 2 * MAX_DISCARD];
        let mut io = ScriptedIo::default().with_reads(vec![ReadStep::Data(flood)]);
        let mut discarded = 0;
        assert!(!discard_until_eof(&mut io, &mut discarded).unwrap());
        assert!(discarded > MAX_DISCARD && discarded <= MAX_DISCARD + 1024);
    }
}
