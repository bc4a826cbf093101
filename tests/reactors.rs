//! `--reactors N`: several independent reactors share the port
//! (SO_REUSEPORT); together they behave as one server.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::thread;

use common::{
    connect, read_pattern_to_eof, spawn_binary, stalled_writers, start, test_config, Rng,
    IO_TIMEOUT,
};

/// Two reactors: many connections and UDP clients all echo exactly, the
/// shared counters add up, and a `ShutdownHandle` stops both.
#[test]
fn two_reactors_serve_as_one() {
    const CONNS: usize = 64;
    let mut config = test_config();
    config.reactors = 2;
    let server = start(config);
    let streams: Vec<TcpStream> = (0..CONNS).map(|_| server.connect()).collect();
    server.wait_stats("all accepted", |s| s.active == CONNS as u64);
    let workers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                let data = Rng::new(i as u64 + 1).bytes(20_000 + i * 100);
                let mut w = s.try_clone().unwrap();
                let sent = data.clone();
                let writer = thread::spawn(move || {
                    w.write_all(&sent).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                s.read_to_end(&mut back).unwrap();
                writer.join().unwrap();
                assert!(back == data, "connection {i}: echo differs");
                data.len() as u64
            })
        })
        .collect();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();

    let udp = server.udp.unwrap();
    for i in 0..16u8 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        sock.send_to(&[i; 32], udp).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[i; 32][..], udp));
    }

    let stats = server.stop();
    assert_eq!(stats.accepted, CONNS as u64);
    assert_eq!(stats.bytes_in, total);
    assert_eq!(stats.bytes_out, total);
    assert_eq!(stats.datagrams_out, 16);
    assert_eq!(stats.active, 0);
}

/// The built binary with `--reactors 2`: SIGTERM drains every reactor
/// (owed output arrives whole) and exits 0 with one final counters line.
#[test]
fn sigterm_drains_every_reactor() {
    let mut server = spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "2"]);
    assert!(server.log()[0].contains("reactors=2"), "{:?}", server.log());
    // Enough connections that both reactors almost surely hold some.
    let mut clients: Vec<TcpStream> = (0..8).map(|_| connect(server.tcp)).collect();
    let writers = stalled_writers(&clients, 16 << 20);
    server.signal(libc::SIGTERM);
    let received: u64 = clients.iter_mut().map(read_pattern_to_eof).sum();
    assert!(server.wait_exit().success());
    for w in writers {
        w.join().unwrap();
    }
    let stopped = server.wait_log("final counters", "stopped:");
    assert!(
        stopped.contains(&format!("bytes_out={received} ")),
        "{stopped}"
    );
    let finals = server
        .log()
        .iter()
        .filter(|l| l.contains("stopped:"))
        .count();
    assert_eq!(finals, 1, "one final counters line");
}

/// A second signal stops every reactor at once, not only the one that
/// handles signals.
#[test]
fn second_signal_stops_every_reactor() {
    let mut server = spawn_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--reactors",
        "2",
        "--drain-timeout",
        "600",
    ]);
    let clients: Vec<TcpStream> = (0..8).map(|_| connect(server.tcp)).collect();
    let _writers = stalled_writers(&clients, 16 << 20);
    server.second_signal_exits_promptly();
    drop(clients);
}
