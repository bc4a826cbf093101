//! The UDP socket: receive datagrams, send each one's reply to its sender.
//!
//! UDP has no connections, so there is no per-peer state: a datagram is read
//! into the reactor's scratch buffer, turned into its reply in place and sent
//! straight back. If the kernel's send buffer is full (`send_to` would block)
//! the reply is copied into a bounded queue and WRITABLE interest is
//! registered; when the queue is full the reply is dropped and counted, as a
//! congested network would drop it. Datagram sockets give no "short read"
//! hint, so reads always go on until `WouldBlock` (or the fairness cap).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use log::{debug, trace};
use mio::net::UdpSocket;
use mio::Interest;

use crate::budget::TurnBudget;
use crate::config::Mode;
use crate::protocol::datagram_reply;
use crate::stats::{self, Counters};

/// Datagrams read per readiness event before yielding to TCP connections.
const MAX_RECVS_PER_EVENT: usize = 256;
/// Most replies waiting for WRITABLE.
pub const MAX_QUEUED: usize = 1024;
/// Most bytes waiting for WRITABLE (64 full-size datagrams).
pub const MAX_QUEUED_BYTES: usize = 64 * 65_536;

/// The server's UDP endpoint.
#[derive(Debug)]
pub struct Udp {
    pub socket: UdpSocket,
    mode: Mode,
    /// Replies the socket would not take yet, oldest first. Invariant: while
    /// non-empty, new replies queue behind it (so a sender's replies stay in
    /// order) and WRITABLE is registered.
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    queued_bytes: usize,
}

impl Udp {
    pub fn new(socket: UdpSocket, mode: Mode) -> Udp {
        Udp {
            socket,
            mode,
            queue: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// The interest this socket needs now.
    pub fn interest(&self) -> Interest {
        if self.queue.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// READABLE: answer datagrams until the socket is drained. Returns true if
    /// the fairness cap or the turn's budget stopped it first (the reactor
    /// calls again, since no new edge comes for datagrams already queued).
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        stats: &Counters,
        budget: &mut TurnBudget,
    ) -> bool {
        for i in 0..MAX_RECVS_PER_EVENT {
            if i > 0 && budget.exhausted() {
                return true;
            }
            let (n, from) = match self.socket.recv_from(scratch) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ECONNREFUSED: an ICMP error for an earlier reply.
                    // It concerns that peer, not this socket: carry on.
                    debug!("udp recv error={e}");
                    continue;
                }
            };
            stats::add(&stats.datagrams_in, 1);
            // Received and sent back: both count.
            budget.spend_bytes(2 * n);
            trace!("udp recv from={from} n={n}");
            let reply = &mut scratch[..n];
            datagram_reply(self.mode, reply);
            self.reply(from, reply, stats);
        }
        true
    }

    /// WRITABLE: send queued replies until the socket would block again.
    pub fn on_writable(&mut self, stats: &Counters) {
        while let Some((to, data)) = self.queue.front() {
            match self.socket.send_to(data, *to) {
                Ok(_) => stats::add(&stats.datagrams_out, 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("udp send to={to} error={e}");
                    stats::add(&stats.datagrams_dropped, 1);
                }
            }
            if let Some((_, data)) = self.queue.pop_front() {
                self.queued_bytes -= data.len();
            }
        }
        // Give the queue's memory back once it drained.
        self.queue = VecDeque::new();
    }

    /// Sends one reply now, or queues it behind earlier ones.
    fn reply(&mut self, to: SocketAddr, data: &[u8], stats: &Counters) {
        if self.queue.is_empty() {
            loop {
                match self.socket.send_to(data, to) {
                    Ok(_) => {
                        stats::add(&stats.datagrams_out, 1);
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        debug!("udp send to={to} error={e}");
                        stats::add(&stats.datagrams_dropped, 1);
                        return;
                    }
                }
            }
        }
        if self.queue.len() >= MAX_QUEUED || self.queued_bytes + data.len() > MAX_QUEUED_BYTES {
            stats::add(&stats.datagrams_dropped, 1);
            return;
        }
        self.queued_bytes += data.len();
        self.queue.push_back((to, data.to_vec()));
    }
}
