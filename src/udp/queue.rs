//! The UDP replies the kernel would not take yet (its send buffer was
//! full), waiting for WRITABLE: bounded in count and bytes, so a client
//! that floods us while the socket is congested costs drops, not memory.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use log::debug;
use mio::net::UdpSocket;

use crate::stats::{self, Counters};

/// Most replies waiting for WRITABLE.
pub(crate) const MAX_QUEUED: usize = 1024;
/// Most bytes waiting for WRITABLE (64 full-size datagrams).
pub(crate) const MAX_QUEUED_BYTES: usize = 64 * 65_536;

/// Replies the socket would not take yet, oldest first, bounded by
/// [`MAX_QUEUED`] replies and [`MAX_QUEUED_BYTES`] bytes. Invariant: while it
/// is non-empty, new replies queue behind it (so a sender's replies stay in
/// order) and WRITABLE is registered.
#[derive(Debug, Default)]
pub(crate) struct ReplyQueue {
    items: VecDeque<(SocketAddr, Vec<u8>)>,
    bytes: usize,
}

impl ReplyQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Replies waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Queues a copy of `data` for `to`; at the bound it is dropped and
    /// counted instead.
    pub(crate) fn push(&mut self, to: SocketAddr, data: &[u8], stats: &Counters) {
        if self.items.len() >= MAX_QUEUED || self.bytes + data.len() > MAX_QUEUED_BYTES {
            stats::add(&stats.datagrams_dropped, 1);
            return;
        }
        self.bytes += data.len();
        self.items.push_back((to, data.to_vec()));
    }

    /// Sends queued replies until the socket would block again. A reply
    /// that fails for another reason is dropped and counted (it concerns
    /// that peer, not the socket).
    pub(crate) fn flush(&mut self, socket: &UdpSocket, stats: &Counters) {
        while let Some((to, data)) = self.items.front() {
            match socket.send_to(data, *to) {
                Ok(_) => stats::add(&stats.datagrams_out, 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("udp send to={to} error={e}");
                    stats::add(&stats.datagrams_dropped, 1);
                }
            }
            if let Some((_, data)) = self.items.pop_front() {
                self.bytes -= data.len();
            }
        }
        // Give the queue's memory back once it drained.
        self.items = VecDeque::new();
    }
}
