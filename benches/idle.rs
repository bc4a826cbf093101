//! The idle-connection footprint (issue 9): what one more idle echo
//! connection costs the server, measured in-process.
//!
//! A counting global allocator tracks the heap bytes live in this process.
//! An echoloop server runs on its own thread, and clients connect and do
//! one 1-byte round trip each (so every connection was accepted, registered
//! and served). The heap growth of a server full with `IDLE + 1` of them,
//! minus that of the same server with one, divided by `IDLE`, is printed
//! as `heap bytes per idle connection`, beside the size of a connection's
//! own part of its slab entry. The clients' sockets own no
//! heap memory (a `TcpStream` is a file descriptor), so the growth is the
//! server's: its slab entries, timer entries and run queue. The kernel's socket
//! memory is not counted, as it is not in the server's RSS either; for RSS
//! from a separate process see `scripts/idle-conns.py`.
//!
//! The timed part is the cost of one more connection while `IDLE` are held:
//! connect, a 1-byte round trip, close.
//!
//! ```text
//! cargo bench --bench idle
//! ```
//!
//! Every socket is on 127.0.0.1, port 0, with timeouts; `IDLE` stays well
//! below the usual 1024 open files (two per connection in one process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use echoloop::{Config, Server, ShutdownHandle, Stats, StatsSnapshot};

/// Idle connections measured (and held while timing one more).
const IDLE: usize = 255;
/// Longest any client call, or the wait for the server's counters, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The system allocator, counting the bytes live in the whole process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counter only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through to `System`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above; `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Running {
    tcp: SocketAddr,
    stats: Stats,
    handle: ShutdownHandle,
    thread: JoinHandle<StatsSnapshot>,
}

fn start(max_conns: usize) -> Running {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        udp: None,
        max_conns,
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let server = Server::bind(config).expect("bind echoloop on 127.0.0.1:0");
    let tcp = server.tcp_addr();
    let stats = server.stats();
    let handle = server.shutdown_handle();
    let thread = thread::Builder::new()
        .name("echoloop-idle-bench".into())
        .spawn(move || server.run().expect("reactor failed"))
        .expect("spawn reactor thread");
    Running {
        tcp,
        stats,
        handle,
        thread,
    }
}

/// A connection that has done one 1-byte round trip.
fn served_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    s.write_all(b"x").expect("write");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("echo (timed out or closed?)");
    assert_eq!(&b, b"x");
    s
}

/// Polls the server's counters until `active` is `n`.
fn wait_active(stats: &Stats, n: u64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while stats.snapshot().active != n {
        assert!(
            Instant::now() < deadline,
            "server never reached {n} connections"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Heap bytes live in the process after a server allowing `max_conns`
/// connections started and `held` connections were served, minus before
/// it started. Everything is dropped again before returning.
fn heap_growth(max_conns: usize, held: usize) -> isize {
    let before = LIVE.load(Ordering::Relaxed);
    let server = start(max_conns);
    let clients: Vec<TcpStream> = (0..held).map(|_| served_client(server.tcp)).collect();
    wait_active(&server.stats, held as u64);
    let grown = LIVE.load(Ordering::Relaxed) - before;
    drop(clients);
    server.handle.shutdown();
    server.thread.join().expect("reactor thread panicked");
    grown
}

fn idle_footprint(c: &mut Criterion) {
    // The same server twice, once full with `IDLE + 1` connections and
    // once with one: what differs is what `IDLE` more connections cost,
    // including the slab and timer room the reactor reserves per allowed
    // connection (`max_conns` is set to exactly what is held).
    let one = heap_growth(1, 1);
    let full = heap_growth(IDLE + 1, IDLE + 1);
    println!(
        "idle footprint: heap bytes per idle connection {:.0} (over {IDLE}); \
         connection part of the slab entry {} bytes",
        (full - one) as f64 / IDLE as f64,
        echoloop::CONN_ENTRY_BYTES,
    );

    let server = start(IDLE + 2);
    let held: Vec<TcpStream> = (0..IDLE).map(|_| served_client(server.tcp)).collect();
    wait_active(&server.stats, IDLE as u64);
    c.bench_function("idle/one_more_connection", |b| {
        b.iter(|| drop(served_client(server.tcp)))
    });
    drop(held);
    server.handle.shutdown();
    server.thread.join().expect("reactor thread panicked");
}

criterion_group!(benches, idle_footprint);
criterion_main!(benches);
