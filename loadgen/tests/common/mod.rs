//! Tiny echo peers for loadgen's tests, all on 127.0.0.1 port 0: a plain TCP echo, one that
//! flips a byte, one that upper-cases, one that stops answering for a while, a framed echo,
//! one that hangs up owing echoes, one that answers with a message of its own and hangs up,
//! a listener that never accepts, and a UDP echo that can drop datagrams. Each is
//! thread-per-connection and blocking: simple enough to trust. `echoloop` starts the real
//! server in-process; `proxy` is a fault-injecting relay.

#![allow(dead_code)]

pub mod echoloop;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a TCP peer does with the bytes it gets.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Echo every byte.
    Echo,
    /// Echo, but flip the byte at this offset of the first connection's stream.
    FlipByteAt(u64),
    /// Echo with ASCII letters upper-cased (echoloop's `--mode upper`).
    Upper,
    /// Read once, answer with these bytes instead of an echo, and hang up (reading and
    /// discarding until the client leaves), like echoloop's framed mode answering a
    /// non-framed client with an error frame.
    Reply(&'static [u8]),
    /// Echo, but hold every reply during `[first accept + after, + length)`.
    Stall { after: Duration, length: Duration },
    /// Read u32 BE length + payload frames and echo each whole.
    Framed,
    /// Read `read` bytes, echo the first `echo` of them and the FIN in one segment (TCP_CORK,
    /// then `shutdown(Write)`), then read and discard until the client closes. The client
    /// gets the data and the EOF in one readiness event, owing `read - echo` bytes.
    HangUpOwing { read: usize, echo: usize },
}

/// A running peer; stops accepting when dropped.
pub struct Peer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// When and from where each connection was accepted.
    pub accepted: Arc<Mutex<Vec<(Instant, SocketAddr)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    udp: bool,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if !self.udp {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Starts a TCP peer.
pub fn tcp_peer(behaviour: Behaviour) -> Peer {
    init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (stop2, accepted2) = (stop.clone(), accepted.clone());
    let handle = std::thread::spawn(move || {
        let first: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
        let count = AtomicUsize::new(0);
        for stream in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let now = Instant::now();
            let first_at = *first.get_or_init(|| now);
            accepted2
                .lock()
                .unwrap()
                .push((now, stream.peer_addr().unwrap()));
            let index = count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve(stream, behaviour, index, first_at));
        }
    });
    Peer {
        addr,
        accepted,
        stop,
        handle: Some(handle),
        udp: false,
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, index: usize, first: Instant) {
    stream.set_nodelay(true).unwrap();
    match behaviour {
        Behaviour::Framed => return serve_framed(stream),
        Behaviour::HangUpOwing { read, echo } => return serve_hang_up(stream, read, echo),
        Behaviour::Reply(reply) => return serve_reply(stream, reply),
        _ => {}
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match behaviour {
            Behaviour::FlipByteAt(at)
                if index == 0 && (offset..offset + n as u64).contains(&at) =>
            {
                buf[(at - offset) as usize] ^= 0x20;
            }
            Behaviour::Upper => buf[..n].make_ascii_uppercase(),
            Behaviour::Stall { after, length } => {
                let (from, until) = (first + after, first + after + length);
                let now = Instant::now();
                if now >= from && now < until {
                    std::thread::sleep(until - now);
                }
            }
            _ => {}
        }
        offset += n as u64;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn serve_framed(mut stream: TcpStream) {
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        frame.resize(u32::from_be_bytes(len) as usize, 0);
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let mut reply = len.to_vec();
        reply.extend_from_slice(&frame);
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

fn serve_hang_up(mut stream: TcpStream, read: usize, echo: usize) {
    let mut buf = vec![0u8; read];
    if stream.read_exact(&mut buf).is_err() {
        return;
    }
    // Corked, the echo waits in the send queue, and shutdown tacks the FIN onto it: one
    // segment, so the client cannot see the data and the EOF as two edges.
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(&stream).set_tcp_cork(true).unwrap();
    stream.write_all(&buf[..echo]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Keep reading (no RST for unread data, no extra wakeup for the client) until it leaves.
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

fn serve_reply(mut stream: TcpStream, reply: &[u8]) {
    let mut buf = vec![0u8; 64 * 1024];
    if !matches!(stream.read(&mut buf), Ok(n) if n > 0) {
        return;
    }
    // One segment with the FIN, as in serve_hang_up.
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(&stream).set_tcp_cork(true).unwrap();
    stream.write_all(reply).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// Starts a UDP echo that drops every `drop_every`-th datagram (if set).
pub fn udp_peer(drop_every: Option<u64>) -> Peer {
    init_logging();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut seen = 0u64;
        while !stop2.load(Ordering::SeqCst) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            seen += 1;
            if drop_every.is_some_and(|k| seen % k == 0) {
                continue;
            }
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    Peer {
        addr,
        accepted: Arc::new(Mutex::new(Vec::new())),
        stop,
        handle: Some(handle),
        udp: true,
    }
}

/// A short, small run: 4 connections, 100 ms warm-up, 400 ms measured.
pub fn quick(target: SocketAddr) -> loadgen::RunConfig {
    let mut cfg = loadgen::RunConfig::new(target);
    cfg.connections = 4;
    cfg.warmup = Duration::from_millis(100);
    cfg.duration = Duration::from_millis(400);
    cfg.drain_timeout = Duration::from_millis(500);
    cfg
}

/// A listener on 127.0.0.1 port 0 with a backlog of 1 that never accepts: the kernel
/// completes a couple of handshakes into the full backlog, and drops every later SYN.
pub fn never_accepting() -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(1).unwrap();
    s
}

/// The soft open-files limit, raised to the hard one first.
pub fn raise_open_files() -> u64 {
    loadgen::raise_open_files_limit().unwrap_or(u64::MAX)
}

/// Polls `cond` every millisecond until it holds; fails the test after `limit`.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A fresh temp directory for a test's files, removed (with them) when dropped.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new() -> Self {
        Scratch(tempfile::tempdir().expect("a temp dir"))
    }

    /// A path in it.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.path().join(name)
    }
}
