//! The UDP socket: receive datagrams, send each one's reply to its sender.
//!
//! UDP has no connections, so there is no per-peer state: a datagram is read
//! into the reactor's scratch buffer, turned into its reply in place and sent
//! straight back. If the kernel's send buffer is full (`send_to` would block)
//! the reply is copied into a bounded [`ReplyQueue`] and WRITABLE interest is
//! registered; when the queue is full the reply is dropped and counted, as a
//! congested network would drop it. Datagram sockets give no "short read"
//! hint, so reads always go on until `WouldBlock` (or the fairness cap).
//!
//! On Linux, with `--udp-batch N` above 1, reading and answering go through
//! `udp/batch.rs` instead: up to N datagrams per `recvmmsg` and their replies
//! in one `sendmmsg`. The queue, the cap and the WouldBlock rules are the
//! same; only the number of syscalls changes. This file keeps the plain
//! one-datagram-per-syscall loop, used with `--udp-batch 1` and on every
//! other platform.
//!
//! A batch can only hold what has arrived. A server that keeps up with its
//! clients wakes for every two or three datagrams, so its batches stay small
//! and it still pays an `epoll_wait`, a `recvmmsg` and a `sendmmsg` for
//! each handful. `--udp-coalesce` is the answer network cards give to the
//! same problem (interrupt moderation, `ethtool -C rx-usecs`): once a read
//! finds several datagrams already waiting, which says they arrive faster
//! than the loop turns, the reactor pauses a few microseconds before it
//! polls again, and the next batch is fuller. A lone request-reply client
//! never has more than one datagram waiting, so it never waits; when
//! traffic thins out, the pauses stop by themselves. `udp/moderation.rs`
//! decides ([`Udp::batch_pause`] asks it), the reactor
//! (`reactor/deadlines.rs`) pauses.
//!
//! What it costs. The pause is a plain sleep of the reactor's thread (an
//! `epoll_wait` would return at the first datagram, which is what the pause
//! is for), so everything else waits too: a TCP request or a signal that
//! arrives during a pause waits up to its length. A turn that served a
//! connection is never followed by a pause, so a request waits for at most
//! one. And "several waiting" is not always "more on the way": a client
//! that sends a burst and waits for its replies would have its next burst
//! wait out every pause, which gathers nothing the burst would not have
//! brought anyway; so a pause that brought no more than a read without one
//! makes the rule back off (`moderation.rs`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, trace, warn};
use mio::net::UdpSocket;
use mio::{Interest, Registry};

#[cfg(any(target_os = "linux", target_os = "android"))]
mod batch;
mod moderation;
mod queue;

use crate::budget::TurnBudget;
use crate::config::Mode;
use crate::protocol::datagram_reply;
use crate::ready::Ready;
use crate::stats::{self, Counters};
use crate::token::UDP;
use moderation::Moderation;
use queue::ReplyQueue;

/// Datagrams read per readiness event before yielding to TCP connections.
pub(crate) const MAX_RECVS_PER_EVENT: usize = 256;

/// The server's UDP endpoint.
#[derive(Debug)]
pub(crate) struct Udp {
    socket: UdpSocket,
    /// Readiness not served yet: from an event (`note_ready`), or left by
    /// a read loop that stopped at its cap; `serve` serves it.
    ready: Ready,
    mode: Mode,
    queue: ReplyQueue,
    /// Batched receive and send (`--udp-batch` > 1, Linux only); `None`
    /// runs the plain loop below.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    batch: Option<batch::Batch>,
    /// When to pause so that a batch fills (`--udp-coalesce`).
    moderation: Moderation,
}

/// How a read loop ended.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadLoop {
    /// Datagrams received.
    pub(crate) received: usize,
    /// The per-event cap or the turn's budget stopped the loop before the
    /// socket ran dry.
    pub(crate) capped: bool,
}

impl Udp {
    /// `batch` is `--udp-batch`: datagrams per syscall, 1 for the plain loop
    /// (the only one off Linux). `coalesce` is `--udp-coalesce`, which only
    /// the batched path uses.
    pub(crate) fn new(socket: UdpSocket, mode: Mode, batch: usize, coalesce: Duration) -> Udp {
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = batch;
        Udp {
            socket,
            ready: Ready::default(),
            mode,
            queue: ReplyQueue::default(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            batch: (batch > 1).then(|| batch::Batch::new(batch)),
            moderation: Moderation::new(coalesce),
        }
    }

    /// How long the reactor should let datagrams gather before it polls
    /// again (`--udp-coalesce`), if at all: `moderation.rs` has the rule.
    /// Only with batches: the plain loop pays two syscalls per datagram
    /// however many wait, so pausing would only add latency.
    pub(crate) fn batch_pause(&self) -> Option<Duration> {
        self.may_pause().then(|| self.moderation.pause()).flatten()
    }

    /// The reactor paused before its poll, as `batch_pause` asked.
    pub(crate) fn paused(&mut self) {
        self.moderation.paused();
    }

    /// Whether `batch_pause` can ever ask for a pause: batches, a pause set, and
    /// UDP not stopped.
    pub(crate) fn may_pause(&self) -> bool {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let batched = self.batch.is_some();
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let batched = false;
        batched && self.moderation.enabled()
    }

    /// The interest this socket needs now.
    fn interest(&self) -> Interest {
        if self.queue.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// READABLE: answer datagrams until the socket is drained, or until the
    /// fairness cap or the turn's budget stops the loop first (then the
    /// reactor calls again, since no new edge comes for datagrams already
    /// queued).
    fn on_readable(
        &mut self,
        scratch: &mut [u8],
        stats: &Counters,
        budget: &mut TurnBudget,
    ) -> ReadLoop {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(batch) = self.batch.as_mut() {
            return batch.on_readable(&self.socket, self.mode, &mut self.queue, stats, budget);
        }
        let mut done = ReadLoop::default();
        for i in 0..MAX_RECVS_PER_EVENT {
            if i > 0 && budget.exhausted() {
                done.capped = true;
                return done;
            }
            let (n, from) = match self.socket.recv_from(scratch) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ECONNREFUSED: an ICMP error for an earlier reply.
                    // It concerns that peer, not this socket: carry on.
                    debug!("udp recv error={e}");
                    continue;
                }
            };
            stats::add(&stats.datagrams_in, 1);
            done.received += 1;
            // Received and sent back: both count.
            budget.spend_bytes(2 * n);
            trace!("udp recv from={from} n={n}");
            let reply = &mut scratch[..n];
            datagram_reply(self.mode, reply);
            self.reply(from, reply, stats);
        }
        done.capped = true;
        done
    }

    /// An event's readiness, to serve at the next `serve`.
    pub(crate) fn note_ready(&mut self, ready: Ready) {
        self.ready |= ready;
    }

    /// True while some readiness waits to be served: the loop must not
    /// sleep.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Serves the readiness noted since the last call: queued replies first
    /// (WRITABLE), then datagrams (READABLE) within the turn's budget, and
    /// registers the interest that leaves. A read loop stopped early by its
    /// cap or the budget keeps READ for the next turn: no new edge would
    /// come for datagrams already queued.
    pub(crate) fn serve(
        &mut self,
        registry: &Registry,
        scratch: &mut [u8],
        stats: &Counters,
        budget: &mut TurnBudget,
    ) {
        let ready = std::mem::take(&mut self.ready);
        if !ready.read {
            self.moderation.read(0);
        }
        if ready.is_empty() {
            return;
        }
        let before = self.interest();
        if ready.write {
            self.on_writable(stats);
        }
        if ready.read {
            let done = self.on_readable(scratch, stats, budget);
            self.moderation.read(done.received);
            if done.capped {
                self.ready |= Ready::READ; // stopped early: more next turn
            }
        }
        let after = self.interest();
        if after != before {
            if let Err(e) = registry.reregister(&mut self.socket, UDP, after) {
                warn!("udp reregister error={e}");
            }
        }
    }

    /// Shutting down: no more datagrams are read or answered. The socket
    /// is deregistered and readiness not served yet forgotten; replies
    /// still queued stay until `abandon`.
    pub(crate) fn stop(&mut self, registry: &Registry) {
        self.ready = Ready::default();
        // Nothing more will be read: no reason left to pause for.
        self.moderation.stop();
        if let Err(e) = registry.deregister(&mut self.socket) {
            debug!("udp deregister error={e}");
        }
    }

    /// The reactor is finishing: the replies still queued will never be
    /// sent. Counts them in `datagrams_dropped`, like replies dropped at the
    /// queue's bound, so every datagram received is either answered or
    /// counted.
    pub(crate) fn abandon(&self, stats: &Counters) {
        stats::add(&stats.datagrams_dropped, self.queue.len() as u64);
    }

    /// WRITABLE: send queued replies until the socket would block again.
    fn on_writable(&mut self, stats: &Counters) {
        self.queue.flush(&self.socket, stats);
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
        self.queue.push(to, data, stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// Replies still queued when the reactor finishes are never sent: they
    /// count as dropped, like those refused at the queue's bound.
    #[test]
    fn replies_abandoned_at_shutdown_count_as_dropped() {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = socket.local_addr().unwrap();
        let mut udp = Udp::new(socket, Mode::Echo, 1, Duration::ZERO);
        let stats = Counters::default();
        for _ in 0..3 {
            udp.queue.push(to, b"reply", &stats);
        }
        assert_eq!(udp.interest(), Interest::READABLE | Interest::WRITABLE);
        assert_eq!(stats.datagrams_dropped.load(Relaxed), 0);
        udp.abandon(&stats);
        assert_eq!(stats.datagrams_dropped.load(Relaxed), 3);
    }

    /// The pause (`--udp-coalesce`) is asked for only with batches, never
    /// when set to zero, and never once UDP has stopped; when, is
    /// `moderation.rs`'s rule (tested there).
    #[test]
    fn pauses_only_with_batches_until_stopped() {
        let bind = || UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let pause = Duration::from_micros(20);
        let mut udp = Udp::new(bind(), Mode::Echo, 32, pause);
        assert_eq!(udp.batch_pause(), None, "nothing read yet");
        udp.moderation.read(100);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(udp.batch_pause(), Some(pause));
        udp.stop(mio::Poll::new().unwrap().registry());
        assert_eq!(udp.batch_pause(), None, "stopped");

        for (batch, coalesce) in [(1, pause), (32, Duration::ZERO)] {
            let mut udp = Udp::new(bind(), Mode::Echo, batch, coalesce);
            udp.moderation.read(100);
            assert_eq!(udp.batch_pause(), None, "batch {batch}, pause {coalesce:?}");
        }
    }

    /// `serve` answers a datagram its noted readiness announced and forgets
    /// that readiness once the socket is drained; after `stop`, readiness
    /// noted earlier is not served: UDP stops at once.
    #[test]
    fn serves_noted_readiness_until_stopped() {
        let poll = mio::Poll::new().unwrap();
        let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        poll.registry()
            .register(&mut socket, UDP, Interest::READABLE)
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let mut udp = Udp::new(socket, Mode::Upper, 1, Duration::ZERO);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let (stats, mut budget) = (Counters::default(), TurnBudget::new());
        let mut scratch = vec![0; 65_536];
        let mut serve = |udp: &mut Udp| {
            budget.refill();
            udp.serve(poll.registry(), &mut scratch, &stats, &mut budget);
        };
        client.send_to(b"hi", addr).unwrap();
        udp.note_ready(Ready::READ);
        // Loopback delivery is quick but not instant: serve until answered.
        let start = std::time::Instant::now();
        while stats.datagrams_out.load(Relaxed) == 0 {
            assert!(start.elapsed().as_secs() < 10, "never answered");
            std::thread::yield_now();
            udp.note_ready(Ready::READ);
            serve(&mut udp);
        }
        assert!(!udp.has_ready(), "drained: nothing left to serve");
        let mut buf = [0; 8];
        assert_eq!(client.recv(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"HI");

        client.send_to(b"late", addr).unwrap();
        udp.note_ready(Ready::READ);
        udp.stop(poll.registry());
        assert!(!udp.has_ready());
        serve(&mut udp);
        assert_eq!(stats.datagrams_in.load(Relaxed), 1, "not read after stop");
    }
}
