//! UDP echo on the same reactor: every datagram size from empty to the IPv4
//! maximum comes back exactly, to its sender.

mod common;

use std::net::UdpSocket;

use common::{start, test_config, Rng, IO_TIMEOUT};

/// The largest UDP payload over IPv4: 65535 - 8 (UDP header) - 20 (IP header).
const MAX_DATAGRAM: usize = 65_507;

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Empty, one-byte, mid-size and maximum-size datagrams are echoed exactly,
/// from the server's address, and counted.
#[test]
fn datagrams_of_every_size_echo_exactly() {
    let server = start(test_config());
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
