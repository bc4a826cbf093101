//! The UDP path under many datagrams: an in-process echoloop answers bursts
//! from several client sockets, with `--udp-batch 1` (the plain
//! `recvfrom`/`sendto` loop) and with batches (`recvmmsg`/`sendmmsg`, and
//! GSO for runs to one sender, on Linux), with and without the pauses that
//! let batches fill (`--udp-coalesce`), measured side by side in one run.
//!
//! Each iteration: 8 client sockets each send a burst of 16 datagrams of
//! 64 B (128 in flight, as `loadgen --udp --pipeline 16` keeps them), then
//! read all 128 replies. The servers start and the sockets bind before
//! anything is timed. Every socket is on 127.0.0.1, port 0, with a read
//! timeout, so a lost reply fails the bench instead of hanging it.
//!
//! ```text
//! cargo bench --bench udp_batch
//! ```
//!
//! This shows the client-visible cost per datagram in one process; the
//! server's own syscalls and CPU per datagram under load come from
//! `scripts/compare-peer.sh` (README, "Performance").

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use echoloop::{Config, Server, ShutdownHandle};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENTS: usize = 8;
const BURST: usize = 16;
const SIZE: usize = 64;

struct Running {
    udp: SocketAddr,
    handle: ShutdownHandle,
    thread: JoinHandle<()>,
}

fn start(udp_batch: usize, udp_coalesce: Duration) -> Running {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let config = Config {
        listen: any,
        udp: Some(any),
        udp_batch,
        udp_coalesce,
        ..Config::default()
    };
    let server = Server::bind(config).expect("bind on loopback");
    let udp = server.udp_addr().expect("udp is on");
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        server.run().expect("server runs");
    });
    Running {
        udp,
        handle,
        thread,
    }
}

fn clients() -> Vec<UdpSocket> {
    (0..CLIENTS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s
        })
        .collect()
}

/// One round: every client sends its burst, then reads its replies.
fn round(clients: &[UdpSocket], to: SocketAddr, buf: &mut [u8]) {
    let payload = [0x5a_u8; SIZE];
    for c in clients {
        for _ in 0..BURST {
            c.send_to(&payload, to).expect("send");
        }
    }
    for c in clients {
        for _ in 0..BURST {
            let n = c.recv(buf).expect("reply within IO_TIMEOUT");
            assert_eq!(n, SIZE);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_128_in_flight");
    group.throughput(Throughput::Elements((CLIENTS * BURST) as u64));
    let pause = Config::default().udp_coalesce;
    for (name, udp_batch, coalesce) in [
        ("udp_batch_1", 1, Duration::ZERO),
        ("udp_batch_32_no_pause", 32, Duration::ZERO),
        ("udp_batch_32", 32, pause),
    ] {
        let server = start(udp_batch, coalesce);
        let socks = clients();
        let mut buf = vec![0u8; 2048];
        group.bench_function(name, |b| b.iter(|| round(&socks, server.udp, &mut buf)));
        server.handle.shutdown();
        server.thread.join().expect("server thread");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
