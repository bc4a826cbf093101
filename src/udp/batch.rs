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
//! Replies to one sender that follow each other in a batch (a client with
//! several datagrams in flight sends them back to back) go as one UDP GSO
//! message (`UDP_SEGMENT`): the kernel routes and builds one packet, then
//! splits it into the separate datagrams the client sees. Replies to many
//! different senders gain nothing from GSO, so each goes as its own message
//! of the same `sendmmsg`. A run must be of one length (the last may be
//! shorter), at most `GSO_MAX_SEGMENTS` long and `GSO_MAX_BYTES` in all, of
//! replies no longer than `GSO_MAX_SEGMENT`. If the kernel refuses a GSO
//! message (an old kernel, a route without checksum offload or with a small
//! MTU), batches go on without GSO for the rest of the run; nothing is
//! dropped for it.
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
//! GRO, the receive-side twin (`UDP_GRO`: the kernel hands a run of
//! datagrams from one sender over as one buffer plus a segment size), is
//! not used: it coalesces only datagrams of one flow arriving together
//! (through a NIC's GRO, or as one GSO packet from a local sender), the
//! echo must then cut the buffer back into datagrams by the segment size,
//! and `recvmmsg` already takes many senders' datagrams per call. It would
//! pay for a few clients streaming large runs, not for many small ones.
//!
//! Memory: each slot holds the largest datagram (64 KiB), so a batch of 32
//! reserves 2 MiB of address space. It is allocated zeroed and never
//! cleared, so the kernel backs only the pages datagrams were written into:
//! small datagrams cost about one page per slot.
//!
//! The syscalls themselves are in `sys.rs`, the crate's one home for FFI.

use std::io;
use std::ops::Range;

use log::{debug, trace, warn};
use mio::net::UdpSocket;

use super::{ReadLoop, ReplyQueue, MAX_RECVS_PER_EVENT};
use crate::budget::TurnBudget;
use crate::config::Mode;
use crate::protocol::datagram_reply;
use crate::stats::{self, Counters};
use crate::sys::Mmsg;

/// Bytes per slot: the largest UDP payload (65,507 over IPv4, 65,527 over
/// IPv6) fits, so a datagram is never truncated.
const SLOT: usize = 64 * 1024;

/// Longest reply sent as a GSO segment: one that fits an Ethernet path
/// (1500-byte MTU) over IPv6 as well as IPv4, so a GSO message is never
/// refused for the path MTU on ordinary networks. Longer replies go one per
/// message; the per-packet cost GSO saves matters less for them anyway.
const GSO_MAX_SEGMENT: usize = 1452;
/// Most segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message: it is one IP packet until the
/// kernel splits it, so it must stay under the 64 KiB IP length.
const GSO_MAX_BYTES: usize = 65_000;

/// Largest batch. More than the per-event cap would only be cut by it, and
/// each slot reserves `SLOT` bytes of address space.
pub(crate) const MAX_BATCH: usize = MAX_RECVS_PER_EVENT;

/// The buffers and message headers for one batch, reused for every call.
pub(crate) struct Batch {
    /// `size` slots of `SLOT` bytes; datagram `i` of a batch is read into
    /// slot `i`, turned into its reply in place and sent from there.
    bufs: Box<[u8]>,
    /// Datagrams per `recvmmsg`. Invariant: `2..=MAX_BATCH`.
    size: usize,
    /// Headers, and each datagram's length and sender after a receive.
    mmsg: Mmsg,
    /// The messages of the next `sendmmsg`, as ranges of slots (see
    /// `group`). Reused; at most `size` long.
    groups: Vec<Range<usize>>,
    /// Send runs of replies to one sender as one GSO message. Turned off
    /// for good the first time the kernel refuses one.
    gso: bool,
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
            groups: Vec::with_capacity(size),
            gso: true,
        }
    }

    /// READABLE: receive and answer batches until the socket is drained, or
    /// until the per-event cap or the turn's budget stops the loop first
    /// (the reactor calls again: no new edge comes for datagrams already
    /// queued).
    pub(crate) fn on_readable(
        &mut self,
        socket: &UdpSocket,
        mode: Mode,
        queue: &mut ReplyQueue,
        stats: &Counters,
        turn: &mut TurnBudget,
    ) -> ReadLoop {
        let mut done = ReadLoop::default();
        let mut budget = MAX_RECVS_PER_EVENT;
        while budget > 0 {
            // The turn's budget is checked between batches, like the plain
            // loop checks it between datagrams: one batch always goes.
            if budget < MAX_RECVS_PER_EVENT && turn.exhausted() {
                done.capped = true;
                return done;
            }
            let want = self.size.min(budget);
            let got = match self.mmsg.recv(socket, &mut self.bufs, SLOT, want) {
                Ok(n) => n,
                // Drained: the next datagram raises a new edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
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
            done.received += got;
            trace!("udp recvmmsg n={got}");
            budget -= got;
            for (i, slot) in self.bufs.chunks_mut(SLOT).take(got).enumerate() {
                let n = self.mmsg.len(i);
                // Received and sent back: both count against the turn.
                turn.spend_bytes(2 * n);
                datagram_reply(mode, &mut slot[..n]);
            }
            self.reply(socket, got, queue, stats);
            // Short batch: the receive queue ran empty (see the module docs).
            if got < want {
                return done;
            }
        }
        done.capped = true;
        done
    }

    /// Sends the replies in slots `..n` with as few `sendmmsg` calls as the
    /// socket allows, queueing what it will not take now.
    fn reply(&mut self, socket: &UdpSocket, n: usize, queue: &mut ReplyQueue, stats: &Counters) {
        let mut sent = 0;
        // Behind queued replies, new ones must wait their turn.
        while sent < n && queue.is_empty() {
            self.group(sent, n);
            match self.mmsg.send(socket, &self.bufs, SLOT, &self.groups) {
                Ok(0) => break,
                Ok(k) => {
                    // Groups cover `sent..` in order: the first k went out.
                    let end = self.groups[k - 1].end;
                    stats::add(&stats.datagrams_out, (end - sent) as u64);
                    sent = end;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The send buffer is full: the rest waits for WRITABLE.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if self.gso && self.groups[0].len() > 1 => {
                    // The kernel or the route refuses GSO (no checksum
                    // offload, a path MTU below the segment, an old kernel):
                    // send one datagram per message from now on.
                    warn!("udp GSO refused error={e}; replies go one datagram per message");
                    self.gso = false;
                }
                Err(e) => {
                    // The first group failed on its own (the kernel refused
                    // its address, say): drop its replies, send the rest.
                    let first = self.groups[0].clone();
                    debug!("udp sendmmsg to={:?} error={e}", self.mmsg.addr(sent));
                    stats::add(&stats.datagrams_dropped, first.len() as u64);
                    sent = first.end;
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

    /// Splits replies `from..n` into messages for `sendmmsg`: with GSO, a
    /// run of replies to one sender, all of one length (the last may be
    /// shorter), becomes one message; otherwise each reply is its own.
    fn group(&mut self, from: usize, n: usize) {
        self.groups.clear();
        let mut i = from;
        while i < n {
            let seg = self.mmsg.len(i);
            let mut end = i + 1;
            if self.gso && (1..=GSO_MAX_SEGMENT).contains(&seg) {
                let mut bytes = seg;
                while end < n && end - i < GSO_MAX_SEGMENTS && self.mmsg.same_sender(i, end) {
                    let len = self.mmsg.len(end);
                    if len == 0 || len > seg || bytes + len > GSO_MAX_BYTES {
                        break;
                    }
                    bytes += len;
                    end += 1;
                    if len < seg {
                        break; // a shorter segment can only be the last
                    }
                }
            }
            self.groups.push(i..end);
            i = end;
        }
    }
}
