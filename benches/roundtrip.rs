//! Loopback round trips through an in-process echoloop server, beside a tiny
//! thread-per-connection blocking echo peer started in the same run.
//!
//! Both servers start, and every client connects, before anything is timed;
//! each iteration is only the client's syscalls and the server's reply. All
//! sockets are on 127.0.0.1 with port 0, and every client socket has read and
//! write timeouts, so a broken server fails the bench instead of hanging it.
//!
//! Groups (in each TCP group, `echoloop` and `thread_per_conn` are measured
//! side by side over one connection each, so they can be quoted as a ratio):
//!
//! - `tcp_64B`: write 64 B, read the 64 B echo (TCP_NODELAY on the client).
//! - `tcp_16KiB`: the same with 16 KiB messages.
//! - `tcp_pipeline_16x64B`: 16 writes of 64 B back to back, then read all
//!   1 KiB of echoes: several messages in flight on one connection.
//! - `udp_64B`: one 64 B datagram to echoloop's UDP socket and its reply.
//!
//! These isolate per-message latency on one connection; throughput under
//! many connections is loadgen's job (see STYLE.md, "Benches").
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench roundtrip
//! cargo bench --bench roundtrip -- tcp_64B   # one group only
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use echoloop::{Config, Server, ShutdownHandle, StatsSnapshot};

/// Longest any blocking client call may wait before the bench panics.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages per batch in the pipelined group.
const PIPELINE: usize = 16;

// ---------------------------------------------------------------------------
// The two servers
// ---------------------------------------------------------------------------

/// echoloop (default `echo` mode) running on its own thread.
struct Echoloop {
    tcp: SocketAddr,
    udp: SocketAddr,
    handle: ShutdownHandle,
    thread: JoinHandle<StatsSnapshot>,
}

impl Echoloop {
    fn start() -> Echoloop {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let config = Config {
            listen: any,
            udp: Some(any),
            drain_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        let server = Server::bind(config).expect("bind echoloop on 127.0.0.1:0");
        let tcp = server.tcp_addr();
        let udp = server.udp_addr().expect("UDP was configured");
        let handle = server.shutdown_handle();
        let thread = thread::Builder::new()
            .name("echoloop-bench-reactor".into())
            .spawn(move || server.run().expect("reactor failed"))
            .expect("spawn reactor thread");
        Echoloop {
            tcp,
            udp,
            handle,
            thread,
        }
    }

    fn stop(self) {
        self.handle.shutdown();
        self.thread.join().expect("reactor thread panicked");
    }
}

/// The classic blocking design: one thread accepts, and each connection gets
/// a thread that reads into a 64 KiB buffer (echoloop's scratch size) and
/// writes it back. TCP_NODELAY is set on accepted sockets, as echoloop does.
struct ThreadPerConn {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl ThreadPerConn {
    fn start() -> ThreadPerConn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind peer on 127.0.0.1:0");
        let addr = listener.local_addr().expect("peer address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let accept = thread::Builder::new()
            .name("thread-per-conn-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    // A failed accept (e.g. the client gave up) costs only
                    // that connection.
                    if let Ok(stream) = stream {
                        thread::spawn(move || echo_blocking(stream));
                    }
                }
            })
            .expect("spawn accept thread");
        ThreadPerConn { addr, stop, accept }
    }

    /// Sets the flag, then connects once so the blocked `accept` returns and
    /// sees it. Connection threads end when their clients hang up.
    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        self.accept.join().expect("accept thread panicked");
    }
}

/// Echoes until EOF or an error; either ends only this connection.
fn echo_blocking(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

fn tcp_client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream
}

/// Sends `count` copies of `msg` as separate writes, then reads all echoes.
fn tcp_round_trip(stream: &mut TcpStream, msg: &[u8], count: usize, reply: &mut [u8]) {
    for _ in 0..count {
        stream.write_all(msg).expect("write to server");
    }
    stream
        .read_exact(&mut reply[..msg.len() * count])
        .expect("read echo (timed out or closed?)");
}

fn udp_round_trip(socket: &UdpSocket, msg: &[u8], reply: &mut [u8]) {
    socket.send(msg).expect("send datagram");
    let n = socket
        .recv(reply)
        .expect("receive echo (lost or timed out?)");
    assert_eq!(n, msg.len(), "echoed datagram has the wrong size");
}

/// A message whose bytes vary, so a check catches reordering or mix-ups.
fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// Benches
// ---------------------------------------------------------------------------

/// One TCP group: the same workload against each peer, over one connection
/// each. Checks one reply per peer before timing.
fn tcp_group(
    c: &mut Criterion,
    name: &str,
    peers: &mut [(&str, TcpStream)],
    len: usize,
    count: usize,
) {
    let msg = message(len);
    let mut reply = vec![0u8; len * count];
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes((len * count) as u64));
    for (peer, stream) in peers.iter_mut() {
        tcp_round_trip(stream, &msg, count, &mut reply);
        assert!(
            reply.chunks(len).all(|echo| echo == msg),
            "{peer} echoed wrong bytes"
        );
        group.bench_function(*peer, |b| {
            b.iter(|| tcp_round_trip(stream, &msg, count, &mut reply))
        });
    }
    group.finish();
}

fn roundtrip(c: &mut Criterion) {
    let server = Echoloop::start();
    let peer = ThreadPerConn::start();
    let mut clients = [
        ("echoloop", tcp_client(server.tcp)),
        ("thread_per_conn", tcp_client(peer.addr)),
    ];

    tcp_group(c, "tcp_64B", &mut clients, 64, 1);
    tcp_group(c, "tcp_16KiB", &mut clients, 16 * 1024, 1);
    tcp_group(c, "tcp_pipeline_16x64B", &mut clients, 64, PIPELINE);

    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP client");
    udp.connect(server.udp).expect("connect UDP client");
    udp.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    let msg = message(64);
    let mut reply = [0u8; 2048];
    udp_round_trip(&udp, &msg, &mut reply);
    assert_eq!(&reply[..64], &msg[..], "echoloop echoed a wrong datagram");
    let mut group = c.benchmark_group("udp_64B");
    group.throughput(Throughput::Bytes(64));
    group.bench_function("echoloop", |b| {
        b.iter(|| udp_round_trip(&udp, &msg, &mut reply))
    });
    group.finish();

    // Hang up first, so neither server has a connection left to drain.
    drop(clients);
    server.stop();
    peer.stop();
}

criterion_group! {
    name = benches;
    // Each iteration is tens of microseconds: 3 s of samples is plenty, and
    // the whole file finishes in well under a minute. Flags still override.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = roundtrip
}
criterion_main!(benches);
