//! Batched UDP for the client, Linux only: the datagrams a socket may send in one turn go
//! out with one `sendmmsg`, and its answers come in up to `--udp-batch` per `recvmmsg`.
//!
//! Why: with one `send` per datagram the single loadgen thread pays two syscalls per
//! datagram, as the plain server does, so it is the bottleneck and the server, idle part
//! of the time, wakes for every few datagrams and never sees a full batch (README, "UDP:
//! batches, GSO and GRO"). Batching changes only how many syscalls carry the datagrams:
//! each is still encoded, counted as sent ([`SendState::push`], which keeps the open-loop
//! schedule and late-send accounting) and verified on arrival exactly as on the plain path
//! in `udp.rs`. `--udp-batch 1`, and every other platform, keeps the plain path, so the
//! two can be compared in one run.
//!
//! The buffers are the thread's, not the socket's: a batch to send ([`UdpBatch::out`]) and
//! the thread's scratch buffer cut into receive slots. Both are bounded by the scratch
//! buffer's size, so a run's memory does not grow with `--udp-batch`.
//!
//! [`SendState::push`]: crate::send::SendState::push

use crate::config::{Protocol, RunConfig};
use crate::payload::{self, SCRATCH_LEN};

/// One thread's batch state; exists only when batching is on.
pub(crate) struct UdpBatch {
    /// Header storage for one call.
    #[cfg(target_os = "linux")]
    pub(crate) mmsg: crate::sys::Mmsg,
    /// Datagrams per call. Invariant: `2..=--udp-batch`, and `max * slot <= SCRATCH_LEN`.
    pub(crate) max: usize,
    /// Bytes of scratch per received datagram: more than one message, so a longer
    /// datagram is seen as too long (its full length comes back from `recvmmsg`).
    pub(crate) slot: usize,
    /// The datagrams of one `sendmmsg`, back to back; capacity `max` messages, reused.
    pub(crate) out: Vec<u8>,
    /// Full length of each datagram of the last `recvmmsg`.
    pub(crate) lens: Vec<usize>,
}

impl UdpBatch {
    /// The batch state a thread of this run needs: `None` for TCP, for `--udp-batch 1`,
    /// off Linux, and when a message is so large that two do not fit the scratch buffer.
    pub(crate) fn for_run(cfg: &RunConfig) -> Option<UdpBatch> {
        let max = Self::batch_len(cfg);
        if max < 2 {
            return None;
        }
        let wire = payload::wire_len(cfg.size, cfg.framed);
        Some(UdpBatch {
            #[cfg(target_os = "linux")]
            mmsg: crate::sys::Mmsg::new(max),
            max,
            slot: SCRATCH_LEN / max,
            out: Vec::with_capacity(max * wire),
            lens: vec![0; max],
        })
    }

    /// Datagrams per call for `cfg` (1: the plain path).
    fn batch_len(cfg: &RunConfig) -> usize {
        if !cfg!(target_os = "linux") || cfg.protocol != Protocol::Udp {
            return 1;
        }
        let wire = payload::wire_len(cfg.size, cfg.framed);
        cfg.udp_batch.min(SCRATCH_LEN / (wire + 1)).max(1)
    }

    /// Bytes a thread's batch state allocates for `cfg` (0 without one): the send
    /// buffer, the lengths and about 100 bytes of headers per datagram.
    pub(crate) fn bytes_for(cfg: &RunConfig) -> u64 {
        match Self::batch_len(cfg) {
            0 | 1 => 0,
            max => {
                let wire = payload::wire_len(cfg.size, cfg.framed);
                (max * (wire + 8 + 100)) as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Client, Flow};
    use crate::ctx::test_ctx;
    use crate::payload::Decoded;
    use crate::udp::UdpClient;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    fn cfg(change: impl FnOnce(&mut RunConfig)) -> RunConfig {
        let mut cfg = RunConfig::new("127.0.0.1:9".parse().expect("an address"));
        cfg.protocol = Protocol::Udp;
        change(&mut cfg);
        cfg
    }

    /// Batching is for UDP with `--udp-batch` above 1 on Linux; a batch never holds more
    /// slots than the scratch buffer, and every slot holds more than one message.
    #[test]
    fn batch_sizes_follow_flags_and_the_scratch_buffer() {
        assert!(UdpBatch::for_run(&cfg(|c| c.protocol = Protocol::Tcp)).is_none());
        assert!(UdpBatch::for_run(&cfg(|c| c.udp_batch = 1)).is_none());
        assert_eq!(UdpBatch::bytes_for(&cfg(|c| c.udp_batch = 1)), 0);
        if !cfg!(target_os = "linux") {
            assert!(UdpBatch::for_run(&cfg(|_| {})).is_none());
            return;
        }
        let b = UdpBatch::for_run(&cfg(|c| c.udp_batch = 8)).expect("batching");
        assert_eq!((b.max, b.slot), (8, SCRATCH_LEN / 8));
        let big = cfg(|c| (c.udp_batch, c.size) = (1024, 60_000));
        let b = UdpBatch::for_run(&big).expect("two fit");
        assert_eq!(b.max, 2);
        assert!(b.slot > 60_000);
        let b = UdpBatch::for_run(&cfg(|c| c.udp_batch = 1024)).expect("batching");
        assert_eq!(b.max, 1024);
        assert!(b.slot > 64 && b.max * b.slot <= SCRATCH_LEN);
    }

    /// Both paths, plain (`--udp-batch 1`) and batched in calls of 5: one turn sends the whole
    /// pipeline, in sequence order, counted as sent; the echoes verify and are recorded; a
    /// datagram longer than a receive slot is a data error named with its full length.
    #[test]
    fn a_turn_goes_out_in_order_and_echoes_verify() {
        for batch in [1, 5] {
            let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
            peer.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let mut ctx = test_ctx(|c| {
                c.target = peer.local_addr().expect("peer address");
                (c.protocol, c.pipeline, c.udp_batch) = (Protocol::Udp, 16, batch);
            });
            ctx.udp_batch = UdpBatch::for_run(&ctx.cfg);
            assert_eq!(
                ctx.udp_batch.is_some(),
                batch > 1 && cfg!(target_os = "linux")
            );
            ctx.scratch = vec![0; SCRATCH_LEN];
            let mut client = UdpClient::open(3, None, 0, &mut ctx).expect("open");
            assert!(matches!(client.pump(&mut ctx), Flow::Continue));
            assert_eq!(ctx.stats.sent, 16, "batch {batch}");
            let mut buf = vec![0u8; 65_536];
            let mut from = None;
            for seq in 0..16 {
                let (n, f) = peer.recv_from(&mut buf).expect("a datagram");
                let want = Decoded::Intact { conn: 3, seq };
                assert_eq!(ctx.codec.decode(&buf[..n]), want, "batch {batch}");
                peer.send_to(&buf[..n], f).expect("echo");
                from = Some(f);
            }
            let oversized = vec![b'x'; 30_000];
            peer.send_to(&oversized, from.expect("a sender"))
                .expect("send oversized");
            let deadline = Instant::now() + Duration::from_secs(2);
            while ctx.stats.errors.corrupt == 0 && Instant::now() < deadline {
                assert!(matches!(client.recv_all(&mut ctx), Flow::Continue));
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(ctx.hist.len(), 16, "batch {batch}");
            assert_eq!(ctx.stats.errors.corrupt, 1, "batch {batch}");
            assert_eq!(ctx.stats.errors.total(), 1, "batch {batch}");
            let (_, what) = ctx.stats.first_error.as_ref().expect("described");
            assert!(
                what.contains("a datagram of 30000 bytes, expected 64"),
                "{what}"
            );
        }
    }
}
