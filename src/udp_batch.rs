//! Batched UDP on Linux: many datagrams per syscall (`--udp-batch N`).
//!
//! The plain loop in `udp.rs` pays two syscalls per datagram, a `recvfrom`
//! and a `sendto`, and under load those two are nearly all of the server's
//! work. `recvmmsg` fills up to N buffers with one call and `sendmmsg`
//! sends up to N replies, each to its own address, with one more; QUIC
//! stacks and busy DNS servers do the same. The rules do not change:
//!
//! - Replies go out in the order their datagrams came in. While the reply
//!   queue (`udp::ReplyQueue`) holds anything, new replies queue behind it.
//! - `sendmmsg` may send only part of a batch. It then returns how many went
//!   out; we retry from the first unsent one, which either goes (the call
//!   was cut short by a signal or a full buffer that just drained), would
//!   block (the rest of the batch is queued for WRITABLE, or dropped and
//!   counted at the queue's bound), or fails on its own, e.g. an address the
//!   kernel will not route (that one reply is dropped and counted, the rest
//!   go on).
//! - The per-event cap counts datagrams, as the plain loop does.
//!
//! One difference, Linux only: a batch that comes back short (fewer
//! datagrams than asked for) ends the read loop without the extra call that
//! would only return `WouldBlock`. `recvmmsg` stops early only when the
//! receive queue ran empty (`EAGAIN`), or on an error it keeps for the next
//! call; our socket is unconnected and does not ask for ICMP errors
//! (`IP_RECVERR`), so no such error is queued for it. Every datagram that
//! arrives later queues a fresh edge-triggered event (the socket's wakeup
//! re-arms the epoll item each time), so nothing is left unnoticed. This is
//! the datagram twin of the short-read rule for TCP in `conn.rs`.
//!
//! Memory: each slot holds the largest datagram (64 KiB), so a batch of 32
//! reserves 2 MiB of address space. It is allocated zeroed and never
//! cleared, so the kernel backs only the pages datagrams were written into:
//! small datagrams cost about one page per slot.
//!
//! The syscalls themselves are in `sys.rs`, the crate's one home for FFI.

use std::io;

use log::{debug, trace};
use mio::net::UdpSocket;

use crate::config::Mode;
use crate::protocol::datagram_reply;
use crate::stats::{self, Counters};
use crate::sys::Mmsg;
use crate::udp::{ReplyQueue, MAX_RECVS_PER_EVENT};

/// Bytes per slot: the largest UDP payload (65,507 over IPv4, 65,527 over
/// IPv6) fits, so a datagram is never truncated.
const SLOT: usize = 64 * 1024;

/// Largest batch. More than the per-event cap would only be cut by it, and
/// each slot reserves `SLOT` bytes of address space.
pub const MAX_BATCH: usize = MAX_RECVS_PER_EVENT;

/// The buffers and message headers for one batch, reused for every call.
pub(crate) struct Batch {
    /// `size` slots of `SLOT` bytes; datagram `i` of a batch is read into
    /// slot `i`, turned into its reply in place and sent from there.
    bufs: Box<[u8]>,
    /// Datagrams per `recvmmsg`. Invariant: `2..=MAX_BATCH`.
    size: usize,
    /// Headers, and each datagram's length and sender after a receive.
    mmsg: Mmsg,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("size", &self.size).finish()
    }
}

impl Batch {
    /// Buffers for `size` datagrams per call (clamped to `2..=MAX_BATCH`;
    /// `Config::validate` already refuses anything outside `1..=MAX_BATCH`).
    pub(crate) fn new(size: usize) -> Batch {
        let size = size.clamp(2, MAX_BATCH);
        Batch {
            bufs: vec![0; size * SLOT].into_boxed_slice(),
            size,
            mmsg: Mmsg::new(size),
        }
    }

    /// READABLE: receive and answer batches until the socket is drained.
    /// Returns true if the per-event cap stopped it first (the reactor calls
    /// again: no new edge comes for datagrams already queued).
    pub(crate) fn on_readable(
        &mut self,
        socket: &UdpSocket,
        mode: Mode,
        queue: &mut ReplyQueue,
        stats: &Counters,
    ) -> bool {
        let mut budget = MAX_RECVS_PER_EVENT;
        while budget > 0 {
            let want = self.size.min(budget);
            let got = match self.mmsg.recv(socket, &mut self.bufs, SLOT, want) {
                Ok(n) => n,
                // Drained: the next datagram raises a new edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // A signal arrived before any datagram: retry.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Concerns one datagram or peer, not this socket (as in
                    // the plain loop); it still counts against the cap, so
                    // a socket that keeps failing cannot hold the loop.
                    debug!("udp recvmmsg error={e}");
                    budget -= 1;
                    continue;
                }
            };
            stats::add(&stats.datagrams_in, got as u64);
            trace!("udp recvmmsg n={got}");
            budget -= got;
            for (i, slot) in self.bufs.chunks_mut(SLOT).take(got).enumerate() {
                datagram_reply(mode, &mut slot[..self.mmsg.len(i)]);
            }
            self.reply(socket, got, queue, stats);
            // Short batch: the receive queue ran empty (see the module docs).
            if got < want {
                return false;
            }
        }
        true
    }

    /// Sends the replies in slots `..n` with as few `sendmmsg` calls as the
    /// socket allows, queueing what it will not take now.
    fn reply(&mut self, socket: &UdpSocket, n: usize, queue: &mut ReplyQueue, stats: &Counters) {
        let mut sent = 0;
        // Behind queued replies, new ones must wait their turn.
        while sent < n && queue.is_empty() {
            match self.mmsg.send(socket, &self.bufs, SLOT, sent..n) {
                Ok(0) => break,
                Ok(k) => {
                    stats::add(&stats.datagrams_out, k as u64);
                    sent += k;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The send buffer is full: the rest waits for WRITABLE.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // The first unsent reply failed on its own (the kernel
                    // refused its address, say): drop it, send the rest.
                    debug!("udp sendmmsg to={:?} error={e}", self.mmsg.addr(sent));
                    stats::add(&stats.datagrams_dropped, 1);
                    sent += 1;
                }
            }
        }
        for i in sent..n {
            match self.mmsg.addr(i) {
                Some(to) => queue.push(to, &self.bufs[i * SLOT..][..self.mmsg.len(i)], stats),
                // No IP sender address: nowhere to answer.
                None => stats::add(&stats.datagrams_dropped, 1),
            }
        }
    }
}
