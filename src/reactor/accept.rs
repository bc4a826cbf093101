//! Accepting connections: the listener's states, and what happens at
//! `--max-conns` and when the process runs out of file descriptors.
//!
//! Policy: accept until `WouldBlock` (the listener is edge-triggered). At
//! `max_conns`, deregister the listener so new clients wait in the kernel's
//! backlog, and register it again when a slot frees. On EMFILE/ENFILE, pause
//! for `ACCEPT_BACKOFF` and warn once per burst, instead of spinning on an
//! accept that cannot succeed.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::TcpStream;
use mio::Interest;

use super::room::ACCEPT_BELOW_DELIVERIES;
use super::runq::Lane;
use super::{Reactor, Slot, FIRST_CONN, LISTENER};
use crate::conn::Conn;
use crate::protocol;
use crate::ready::Ready;
use crate::stats;

/// After EMFILE/ENFILE, wait this long before accepting again: closing
/// connections is the only thing that frees descriptors, and retrying at once
/// would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections accepted per turn before the listener is served again next
/// turn: each costs three syscalls (accept, TCP_NODELAY, register), so a
/// full backlog of 1,024 waiting clients is spread over a few turns of
/// about a millisecond instead of one long one.
const ACCEPTS_PER_TURN: usize = 128;

/// Why the listener is not accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptState {
    /// The listener is registered; accept on every event.
    Accepting,
    /// At `max_conns`: the listener is deregistered until a slot frees.
    Full,
    /// Out of file descriptors: retry at this time.
    Backoff(Instant),
    /// Shutting down: never again.
    Stopped,
}

impl Reactor {
    /// Accepts until `WouldBlock`: the listener's readiness is edge-triggered,
    /// so connections left in the backlog would not be announced again. At
    /// `ACCEPTS_PER_TURN` it stops and asks to be called next turn instead.
    pub(super) fn accept_all(&mut self) {
        let mut accepted = 0;
        while self.accept == AcceptState::Accepting {
            if accepted == ACCEPTS_PER_TURN || self.behind() {
                self.accept_requeue = true;
                return;
            }
            if self.conns.len() >= self.config.max_conns {
                self.pause_accepting_full();
                return;
            }
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_error_logged = false;
                    accepted += 1;
                    self.add_conn(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => self.on_accept_error(e),
            }
        }
    }

    /// True while the loop is behind with the connections it has: a
    /// newcomer would only queue behind them. Either the fresh lane holds a
    /// turn's worth of accepts not yet served (every new connection gets
    /// an event there, and a turn serves far fewer visits than it may
    /// accept, so a client that connects and closes in a loop would grow
    /// the lane without bound, and a light client's request waits at its
    /// back), or the chat room is far behind (see
    /// `ACCEPT_BELOW_DELIVERIES`). Both mean work is queued, so the loop
    /// polls without sleeping and accepts again once it caught up.
    fn behind(&self) -> bool {
        self.runq.len(Lane::Fresh) >= ACCEPTS_PER_TURN || self.room.len() > ACCEPT_BELOW_DELIVERIES
    }

    fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Echo traffic is request/response: do not let Nagle hold back a
        // small reply waiting for an ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("set_nodelay peer={peer} error={e}");
        }
        stats::add(&self.shared.stats.accepted, 1);
        stats::add(&self.shared.stats.active, 1);
        self.next_id += 1;
        let id = self.next_id;
        let handler = protocol::handler(&self.config, peer, self.root.as_ref());
        let ctx = &mut self.shared.ctx(self.now, 0, false);
        let conn = Conn::new(stream, id, handler, ctx);
        let key = self.conns.insert(Slot {
            conn,
            registered: None,
            reported: Default::default(),
            ready: Ready::default(),
            held: 0,
            heavy_until: None,
        });
        debug!("open token={} peer={peer} id={id}", key + FIRST_CONN);
        self.after_conn_io(key);
    }

    fn on_accept_error(&mut self, e: io::Error) {
        stats::add(&self.shared.stats.accept_errors, 1);
        let out_of_fds = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !out_of_fds {
            // ECONNABORTED and the like concern one connection that died in
            // the backlog; the next one may be fine.
            debug!("accept error={e}");
            return;
        }
        if !self.accept_error_logged {
            warn!(
                "accept failed, pausing accepts error={e} backoff_ms={}",
                ACCEPT_BACKOFF.as_millis()
            );
            self.accept_error_logged = true;
        }
        self.accept = AcceptState::Backoff(self.now + ACCEPT_BACKOFF);
    }

    /// At `max_conns`: stop listening for new clients. They wait in the
    /// backlog (or are refused once it is full) until a slot frees.
    fn pause_accepting_full(&mut self) {
        let max_conns = self.config.max_conns;
        if self.full_logged {
            debug!("max_conns reached, pausing accepts max_conns={max_conns}");
        } else {
            warn!("max_conns reached, pausing accepts max_conns={max_conns}");
            self.full_logged = true;
        }
        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
            debug!("deregister listener error={e}");
        }
        self.accept = AcceptState::Full;
    }

    /// Accepts again after a pause. Clients that queued meanwhile raised no
    /// new edge, so accept right away rather than wait for one.
    pub(super) fn resume_accepting(&mut self) {
        if self.accept == AcceptState::Full {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut self.listener, LISTENER, Interest::READABLE)
            {
                warn!("cannot re-register listener error={e}");
                return;
            }
            debug!("below max_conns again, accepting");
        }
        self.accept = AcceptState::Accepting;
        self.accept_all();
    }
}
