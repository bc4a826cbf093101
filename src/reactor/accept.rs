//! Accepting connections: the [`Acceptor`] owns the listener, whether it is
//! accepting, and what happens at `--max-conns` and when the process runs
//! out of file descriptors.
//!
//! Policy: accept until `WouldBlock` (the listener is edge-triggered), at
//! most `ACCEPTS_PER_TURN` per turn. At `max_conns`, deregister the listener
//! so new clients wait in the kernel's backlog, and register it again when a
//! slot frees. On EMFILE/ENFILE, pause for `ACCEPT_BACKOFF` and warn once
//! per burst, instead of spinning on an accept that cannot succeed.
//!
//! The acceptor decides; the reactor adds what it accepted to the slab
//! (`Reactor::add_conn`). Time comes in as `now`, so the back-off is tested
//! without sleeping.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};

use super::room::ACCEPT_BELOW_NOTICES;
use super::runq::Lane;
use super::Reactor;
use crate::stats::{self, Counters};
use crate::token::LISTENER;

/// After EMFILE/ENFILE, wait this long before accepting again: closing
/// connections is the only thing that frees descriptors, and retrying at once
/// would spin.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections accepted per turn before the listener is served again next
/// turn: each costs three syscalls (accept, TCP_NODELAY, register), so a
/// full backlog of 1,024 waiting clients is spread over a few turns of
/// about a millisecond instead of one long one.
const ACCEPTS_PER_TURN: usize = 128;

/// Why the listener is or is not accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    /// The listener is registered; accept on every event.
    Accepting,
    /// At `max_conns`: the listener is deregistered until a slot frees.
    Full,
    /// Out of file descriptors: retry at this time.
    Backoff(Instant),
    /// Shutting down: never again.
    Stopped,
}

/// The listening socket and everything about accepting from it.
#[derive(Debug)]
pub(super) struct Acceptor {
    /// Registered under `LISTENER` except while `state` is `Full` or
    /// `Stopped`.
    listener: TcpListener,
    state: AcceptState,
    /// This reactor's share of `--max-conns`.
    max_conns: usize,
    /// Accepted since the current burst began (`begin_burst`); a burst
    /// stops at `ACCEPTS_PER_TURN`.
    burst: usize,
    /// Logged the current run of accept errors already (log once per burst).
    error_logged: bool,
    /// Warned that `max_conns` was reached. Cleared only once connections
    /// drop below 90% of it, so a server held at its limit (each close lets
    /// one more in) warns once, not once per freed slot.
    full_logged: bool,
    /// A burst stopped at its cap (or because the loop is behind) with
    /// clients maybe still waiting: accept again next turn, since no new
    /// edge will announce them.
    requeue: bool,
}

impl Acceptor {
    /// Registers `listener` and starts accepting.
    pub(super) fn new(
        mut listener: TcpListener,
        registry: &Registry,
        max_conns: usize,
    ) -> io::Result<Acceptor> {
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Acceptor {
            listener,
            state: AcceptState::Accepting,
            max_conns,
            burst: 0,
            error_logged: false,
            full_logged: false,
            requeue: false,
        })
    }

    /// Starts a burst of accepts (one `Reactor::accept_all`).
    pub(super) fn begin_burst(&mut self) {
        self.burst = 0;
    }

    /// The next client of this burst, or `None` when the burst is over:
    /// the backlog is empty (`WouldBlock`), `open` reached `max_conns`, the
    /// burst reached its cap or the loop is `behind` (then `requeue` is
    /// set), or accepting is paused or stopped.
    pub(super) fn next_client(
        &mut self,
        registry: &Registry,
        open: usize,
        behind: bool,
        now: Instant,
        stats: &Counters,
    ) -> Option<(TcpStream, SocketAddr)> {
        while self.state == AcceptState::Accepting {
            if self.burst == ACCEPTS_PER_TURN || behind {
                self.requeue = true;
                return None;
            }
            if open >= self.max_conns {
                self.pause_full(registry);
                return None;
            }
            match self.listener.accept() {
                Ok(client) => {
                    self.error_logged = false;
                    self.burst += 1;
                    return Some(client);
                }
                // The backlog is empty: the next client raises a new edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => self.on_error(e, now, stats),
            }
        }
        None
    }

    /// True (once) if the last burst stopped early: accept again this turn.
    pub(super) fn take_requeue(&mut self) -> bool {
        std::mem::take(&mut self.requeue)
    }

    /// True while a stopped-early burst waits to go on: `poll` must not sleep.
    pub(super) fn has_requeue(&self) -> bool {
        self.requeue
    }

    /// When the back-off ends, for the poll timeout.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.state {
            AcceptState::Backoff(at) => Some(at),
            _ => None,
        }
    }

    /// Ends a back-off that is over at `now`. True if accepting resumed: the
    /// caller accepts at once (clients that queued meanwhile raised no edge).
    pub(super) fn backoff_over(&mut self, now: Instant) -> bool {
        match self.state {
            AcceptState::Backoff(at) if at <= now => self.resume(None),
            _ => false,
        }
    }

    /// Connections closed and `open` remain: clear the "full" warning once
    /// well below the limit, and listen again if a slot freed. True if
    /// accepting resumed (the caller accepts at once, as above).
    pub(super) fn on_closed(&mut self, registry: &Registry, open: usize) -> bool {
        if open < self.max_conns - self.max_conns / 10 {
            self.full_logged = false;
        }
        self.state == AcceptState::Full && open < self.max_conns && self.resume(Some(registry))
    }

    /// Shutting down: deregister the listener for good.
    pub(super) fn stop(&mut self, registry: &Registry) {
        if self.state != AcceptState::Full {
            if let Err(e) = registry.deregister(&mut self.listener) {
                debug!("deregister listener error={e}");
            }
        }
        self.state = AcceptState::Stopped;
    }

    /// An accept failed. Out of descriptors (or kernel memory): back off.
    /// Anything else (ECONNABORTED and the like) concerns one connection
    /// that died in the backlog; the next one may be fine.
    pub(super) fn on_error(&mut self, e: io::Error, now: Instant, stats: &Counters) {
        stats::add(&stats.accept_errors, 1);
        let out_of_fds = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !out_of_fds {
            debug!("accept error={e}");
            return;
        }
        if !self.error_logged {
            warn!(
                "accept failed, pausing accepts error={e} backoff_ms={}",
                ACCEPT_BACKOFF.as_millis()
            );
            self.error_logged = true;
        }
        self.state = AcceptState::Backoff(now + ACCEPT_BACKOFF);
    }

    /// At `max_conns`: stop listening for new clients. They wait in the
    /// backlog (or are refused once it is full) until a slot frees.
    fn pause_full(&mut self, registry: &Registry) {
        let max_conns = self.max_conns;
        if self.full_logged {
            debug!("max_conns reached, pausing accepts max_conns={max_conns}");
        } else {
            warn!("max_conns reached, pausing accepts max_conns={max_conns}");
            self.full_logged = true;
        }
        if let Err(e) = registry.deregister(&mut self.listener) {
            debug!("deregister listener error={e}");
        }
        self.state = AcceptState::Full;
    }

    /// Accepts again after a pause; a `Full` listener is registered again
    /// first (`registry`). True if it is accepting now.
    fn resume(&mut self, registry: Option<&Registry>) -> bool {
        if let Some(registry) = registry.filter(|_| self.state == AcceptState::Full) {
            let registered = registry.register(&mut self.listener, LISTENER, Interest::READABLE);
            if let Err(e) = registered {
                warn!("cannot re-register listener error={e}");
                return false;
            }
            debug!("below max_conns again, accepting");
        }
        self.state = AcceptState::Accepting;
        true
    }
}

impl Reactor {
    /// Accepts until `WouldBlock`: the listener's readiness is edge-triggered,
    /// so connections left in the backlog would not be announced again. At
    /// `ACCEPTS_PER_TURN` it stops and asks to be called next turn instead.
    pub(super) fn accept_all(&mut self) {
        self.acceptor.begin_burst();
        loop {
            let behind = self.behind();
            let registry = self.poll.registry();
            let open = self.conns.len();
            let stats = &self.shared.stats;
            let Some((stream, peer)) = self
                .acceptor
                .next_client(registry, open, behind, self.now, stats)
            else {
                return;
            };
            self.add_conn(stream, peer);
        }
    }

    /// True while the loop is behind with the connections it has: a
    /// newcomer would only queue behind them. Either the fresh lane holds a
    /// turn's worth of accepts not yet served (every new connection gets
    /// an event there, and a turn serves far fewer visits than it may
    /// accept, so a client that connects and closes in a loop would grow
    /// the lane without bound, and a light client's request waits at its
    /// back), or the chat room is far behind with notices (see
    /// `ACCEPT_BELOW_NOTICES`). Both mean work is queued, so the loop
    /// polls without sleeping and accepts again once it caught up.
    fn behind(&self) -> bool {
        self.runq.len(Lane::Fresh) >= ACCEPTS_PER_TURN || self.room.notices() > ACCEPT_BELOW_NOTICES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    fn acceptor(max_conns: usize) -> (Acceptor, Poll) {
        let poll = Poll::new().unwrap();
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(std);
        let a = Acceptor::new(listener, poll.registry(), max_conns).unwrap();
        (a, poll)
    }

    /// Out of descriptors: accepting pauses for `ACCEPT_BACKOFF` from the
    /// failure, the poll timeout learns the deadline, and the pause ends at
    /// exactly that time (not a moment before); another error is counted
    /// but pauses nothing.
    #[test]
    fn out_of_fds_backs_off_until_the_deadline() {
        let (mut a, poll) = acceptor(10);
        let stats = Counters::default();
        let t0 = Instant::now();
        a.on_error(io::Error::from_raw_os_error(libc::ECONNABORTED), t0, &stats);
        assert_eq!(a.deadline(), None);
        a.on_error(io::Error::from_raw_os_error(libc::EMFILE), t0, &stats);
        assert_eq!(
            stats
                .accept_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(a.deadline(), Some(t0 + ACCEPT_BACKOFF));
        // Paused: no accept is even tried.
        assert!(a
            .next_client(poll.registry(), 0, false, t0, &stats)
            .is_none());
        assert!(!a.has_requeue());
        assert!(!a.backoff_over(t0 + ACCEPT_BACKOFF - Duration::from_millis(1)));
        assert!(a.backoff_over(t0 + ACCEPT_BACKOFF));
        assert_eq!(a.deadline(), None);
        assert_eq!(a.state, AcceptState::Accepting);
    }

    /// At `max_conns` the listener pauses, resumes as soon as a slot frees,
    /// and warns again only after falling below 90% of the limit.
    #[test]
    fn full_pauses_until_a_slot_frees_and_warns_once_per_burst() {
        let (mut a, poll) = acceptor(10);
        let (registry, stats, now) = (poll.registry(), Counters::default(), Instant::now());
        assert!(a.next_client(registry, 10, false, now, &stats).is_none());
        assert_eq!(a.state, AcceptState::Full);
        assert!(a.full_logged);
        assert!(!a.on_closed(registry, 10), "still full");
        assert!(a.on_closed(registry, 9));
        assert_eq!(a.state, AcceptState::Accepting);
        assert!(a.full_logged, "9 of 10 is not yet below 90%");
        assert!(a.next_client(registry, 10, false, now, &stats).is_none());
        assert!(a.on_closed(registry, 8));
        assert!(!a.full_logged);
    }

    /// A loop that is behind stops the burst and asks to go on next turn;
    /// an empty backlog ends it without.
    #[test]
    fn behind_requeues_and_an_empty_backlog_does_not() {
        let (mut a, poll) = acceptor(10);
        let (registry, stats, now) = (poll.registry(), Counters::default(), Instant::now());
        a.begin_burst();
        assert!(a.next_client(registry, 0, false, now, &stats).is_none());
        assert!(!a.take_requeue());
        assert!(a.next_client(registry, 0, true, now, &stats).is_none());
        assert!(a.has_requeue());
        assert!(a.take_requeue());
        assert!(!a.has_requeue());
    }

    /// Once stopped, nothing resumes it.
    #[test]
    fn stopped_stays_stopped() {
        let (mut a, poll) = acceptor(10);
        let (registry, now) = (poll.registry(), Instant::now());
        a.stop(registry);
        assert!(!a.on_closed(registry, 0));
        assert!(!a.backoff_over(now + Duration::from_secs(3600)));
        let stats = Counters::default();
        assert!(a.next_client(registry, 0, false, now, &stats).is_none());
    }
}
