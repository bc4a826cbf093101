//! UDP echo on the same reactor: every datagram size from empty to the IPv4
//! maximum comes back exactly, to its sender.

mod common;

use std::net::UdpSocket;

use common::{start, test_config, Rng, IO_TIMEOUT};
use echoloop::Config;

/// The largest UDP payload over IPv4: 65535 - 8 (UDP header) - 20 (IP header).
const MAX_DATAGRAM: usize = 65_507;

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Empty, one-byte, mid-size and maximum-size datagrams are echoed exactly,
/// from the server's address, and counted: by the plain loop
/// (`--udp-batch 1`) and by batches (`recvmmsg`/`sendmmsg` on Linux).
#[test]
fn datagrams_of_every_size_echo_exactly() {
    for udp_batch in [1, 2, 32] {
        every_size_echoes(udp_batch);
    }
}

fn every_size_echoes(udp_batch: usize) {
    let server = start(Config {
        udp_batch,
        ..test_config()
    });
    let udp = server.udp.expect("udp enabled");
    let sock = client();
    // Loopback has no MTU problem, but the receive buffer must hold the
    // largest datagram.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let sizes = [0usize, 1, 64, 1472, 9000, 32_768, MAX_DATAGRAM];
    for &size in &sizes {
        let data = Rng::new(size as u64 + 3).bytes(size);
        sock.send_to(&data, udp).unwrap();
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(from, udp, "reply from the server's address");
        assert_eq!(n, size, "size {size}");
        assert!(buf[..n] == data[..], "size {size}: bytes differ");
    }
    let stats = server.stop();
    assert_eq!(stats.datagrams_in, sizes.len() as u64);
    assert_eq!(stats.datagrams_out, sizes.len() as u64);
    assert_eq!(stats.datagrams_dropped, 0);
}

/// Several clients interleaving datagrams each get only their own replies.
#[test]
fn replies_go_to_their_own_sender() {
    let server = start(test_config());
    let udp = server.udp.unwrap();
    let clients: Vec<UdpSocket> = (0..8).map(|_| client()).collect();
    for round in 0..20u8 {
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8, round], udp).unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 8];
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i as u8, round]);
        }
    }
}

/// A burst much larger than the socket buffers never stops the server: it
/// keeps answering afterwards, and whatever it could not take is accounted
/// for (dropped by the kernel before it saw it, or counted as dropped).
#[test]
fn burst_does_not_stop_the_server() {
    let server = start(test_config());
    let udp = server.udp.unwrap();
    let sock = client();
    let payload = [0xabu8; 1400];
    for _ in 0..5_000 {
        sock.send_to(&payload, udp).unwrap();
    }
    // Drain our replies so the probe below is the next one we read.
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    sock.send_to(b"probe", udp).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"probe");
    let s = server.stats();
    assert!(s.datagrams_out + s.datagrams_dropped <= s.datagrams_in);
    assert!(s.datagrams_in >= 1);
}

/// Bursts from several senders at once, larger than one batch and mixed in
/// size, come back complete, each reply to its own sender, in order: the
/// batched path answers a whole `recvmmsg` with one `sendmmsg` and must not
/// mix up addresses or lengths. Bounded: 4 clients x 100 datagrams, each
/// client's burst far below the socket buffers.
#[test]
fn batched_bursts_reply_to_each_sender_in_order() {
    for udp_batch in [1, 8, 256] {
        let server = start(Config {
            udp_batch,
            ..test_config()
        });
        let udp = server.udp.unwrap();
        let clients: Vec<UdpSocket> = (0..4).map(|_| client()).collect();
        let mut rng = Rng::new(udp_batch as u64);
        let mut sent: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients.len()];
        for seq in 0..100u32 {
            for (c, sock) in clients.iter().enumerate() {
                let size = rng.range(4, 600);
                let mut data = rng.bytes(size);
                data[..4].copy_from_slice(&seq.to_be_bytes());
                sock.send_to(&data, udp).unwrap();
                sent[c].push(data);
            }
        }
        let mut buf = vec![0u8; 2048];
        for (c, sock) in clients.iter().enumerate() {
            for (seq, want) in sent[c].iter().enumerate() {
                let (n, from) = sock.recv_from(&mut buf).unwrap();
                assert_eq!(from, udp);
                assert!(
                    buf[..n] == want[..],
                    "batch {udp_batch}: client {c} reply {seq} differs"
                );
            }
        }
        let stats = server.stop();
        assert_eq!(stats.datagrams_in, 400, "batch {udp_batch}");
        assert_eq!(stats.datagrams_out, 400, "batch {udp_batch}");
    }
}

/// A run of datagrams from one sender (what a pipelining client sends) is
/// answered with one GSO message per run on Linux; the sender must still get
/// each reply as its own datagram, with its own length, in order: equal
/// lengths, a shorter one ending a run, an empty one, and one too long for a
/// segment.
#[test]
fn runs_from_one_sender_come_back_datagram_by_datagram() {
    for udp_batch in [1, 64] {
        let server = start(Config {
            udp_batch,
            ..test_config()
        });
        let udp = server.udp.unwrap();
        let sock = client();
        let mut lens = vec![100; 70];
        lens.extend([40, 100, 100, 0, 100, 3000, 3000, 1452, 1452, 7]);
        let mut rng = Rng::new(7);
        let sent: Vec<Vec<u8>> = lens.iter().map(|&n| rng.bytes(n)).collect();
        for d in &sent {
            sock.send_to(d, udp).unwrap();
        }
        let mut buf = vec![0u8; 4096];
        for (i, want) in sent.iter().enumerate() {
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            assert!(buf[..n] == want[..], "batch {udp_batch}: reply {i} differs");
        }
        assert_eq!(server.stop().datagrams_out, lens.len() as u64);
    }
}

/// `--udp-coalesce`: a client that sends 32 datagrams back to back makes
/// the server find several waiting at once, so it pauses to let its
/// batches fill (`udp_pauses`), and every reply still comes back whole and
/// in order. A lone request-reply client never has more than one waiting,
/// so it never makes the server pause; with the setting at 0 nothing
/// pauses at all. Bounded: at most 500 rounds (each reply waits at most
/// `IO_TIMEOUT`).
/// Linux only, like the batches the pause fills.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn busy_udp_pauses_to_fill_batches_and_a_lone_client_never_does() {
    let server = start(test_config());
    let udp = server.udp.unwrap();
    let sock = client();
    ping_pong(&sock, udp, 200);
    assert_eq!(
        server.stats().udp_pauses,
        0,
        "one datagram at a time: no pause"
    );

    let mut rounds = 0;
    while server.stats().udp_pauses == 0 {
        assert!(rounds < 500, "32 in flight for 500 rounds and no pause");
        pipelined_round(&sock, udp, rounds, 32);
        rounds += 1;
    }
    let stats = server.stop();
    assert_eq!(stats.datagrams_out, stats.datagrams_in);
    assert_eq!(stats.datagrams_dropped, 0);

    let server = start(Config {
        udp_coalesce: std::time::Duration::ZERO,
        ..test_config()
    });
    let udp = server.udp.unwrap();
    for round in 0..50 {
        pipelined_round(&sock, udp, round, 32);
    }
    assert_eq!(server.stop().udp_pauses, 0, "--udp-coalesce 0: never");
}

/// A client that sends a burst and waits for its replies gains nothing from
/// pauses (its next burst only comes after the replies), so after the
/// first pauses that bring no more than a read without one the server
/// backs off: 300 bursts of 8 make it pause in far fewer than a quarter of
/// them, where without the back-off nearly every burst is followed by one.
/// Bounded: 300 rounds, each reply within `IO_TIMEOUT`.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn pauses_back_off_for_a_client_that_waits_for_its_bursts() {
    let server = start(test_config());
    let udp = server.udp.unwrap();
    let sock = client();
    let rounds = 300;
    for round in 0..rounds {
        pipelined_round(&sock, udp, round, 8);
    }
    let stats = server.stop();
    assert_eq!(stats.datagrams_out, u64::from(rounds) * 8);
    assert!(
        stats.udp_pauses < u64::from(rounds) / 4,
        "{} pauses in {rounds} bursts",
        stats.udp_pauses
    );
}

/// `rounds` datagrams, each sent when the previous reply came back.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn ping_pong(sock: &UdpSocket, to: std::net::SocketAddr, rounds: u32) {
    let mut buf = [0u8; 16];
    for seq in 0..rounds {
        sock.send_to(&seq.to_be_bytes(), to).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(buf[..n], seq.to_be_bytes(), "reply {seq}");
    }
}

/// `k` datagrams sent back to back, then their `k` replies, checked in
/// order.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn pipelined_round(sock: &UdpSocket, to: std::net::SocketAddr, round: u32, k: u32) {
    let mut buf = [0u8; 16];
    for i in 0..k {
        sock.send_to(&[round.to_be_bytes(), i.to_be_bytes()].concat(), to)
            .unwrap();
    }
    for i in 0..k {
        let n = sock.recv(&mut buf).unwrap();
        let want = [round.to_be_bytes(), i.to_be_bytes()].concat();
        assert_eq!(buf[..n], want[..], "round {round}: reply {i}");
    }
}

/// `udp: None` (`--no-udp`) runs TCP only.
#[test]
fn udp_can_be_turned_off() {
    let mut config = test_config();
    config.udp = None;
    let server = start(config);
    assert!(server.udp.is_none());
    let mut s = server.connect();
    assert_eq!(common::send_all_then_fin(&mut s, b"tcp only"), b"tcp only");
}

/// `Server::run` borrows the caller's thread for the first reactor; the
/// precise timer slack that `--udp-coalesce` needs there (1 µs instead of
/// the usual 50) is the reactor's, and is given back when `run` returns,
/// so an embedder's thread does not go on waking that precisely (and that
/// often) after the server is gone.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn run_gives_the_callers_thread_its_timer_slack_back() {
    common::init_logging();
    let slack = || {
        // SAFETY: PR_GET_TIMERSLACK reads no memory and returns the
        // calling thread's slack (or -1 on error).
        let rc = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        assert!(rc >= 0, "PR_GET_TIMERSLACK failed");
        rc
    };
    let before = slack();
    let server = echoloop::Server::bind(test_config()).unwrap();
    let handle = server.shutdown_handle();
    let udp = server.udp_addr().unwrap();
    let stopper = std::thread::spawn(move || {
        // Once the reactor answers, it is running (and set its slack).
        let sock = client();
        sock.send_to(b"up?", udp).unwrap();
        sock.recv(&mut [0u8; 8]).unwrap();
        handle.shutdown();
    });
    server.run().unwrap();
    stopper.join().unwrap();
    assert_eq!(slack(), before, "the thread's timer slack, in ns");
}
