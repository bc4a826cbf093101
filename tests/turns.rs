//! Bounded turns: no client can stretch one turn of the loop. A chat flood
//! does not hold up another member's line, bulk senders do not starve a
//! light client, and the drain timeout holds while the loop is busy.
//!
//! These tests measure time on a shared machine, so each one runs alone
//! (`SERIAL`) and its bounds leave room for a debug build on two loaded
//! cores; the release figures are in README.md ("Reliability").

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{start, test_config, wait_until};
use echoloop::{Config, Mode};
use mio::{Events, Interest, Poll, Token};

/// One timing test at a time: they would only measure each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The chat members as one helper thread sees them: sockets registered with
/// a mio poll, bytes counted, and the moment a byte `mark` first arrived.
struct Readers {
    poll: Poll,
    socks: Vec<mio::net::TcpStream>,
    got: Vec<usize>,
    marked: Vec<Option<Instant>>,
}

impl Readers {
    fn new(streams: &[TcpStream]) -> Readers {
        let poll = Poll::new().unwrap();
        let socks = streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let r = s.try_clone().unwrap();
                r.set_nonblocking(true).unwrap();
                let mut r = mio::net::TcpStream::from_std(r);
                poll.registry()
                    .register(&mut r, Token(i), Interest::READABLE)
                    .unwrap();
                r
            })
            .collect();
        let n = streams.len();
        Readers {
            poll,
            socks,
            got: vec![0; n],
            marked: vec![None; n],
        }
    }

    /// Reads until every member has `want[i]` bytes; fails after `limit`.
    fn read_until(&mut self, want: &[usize], mark: Option<u8>, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        while self.got.iter().zip(want).any(|(g, w)| g < w) {
            assert!(Instant::now() < deadline, "members still short of bytes");
            self.poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            for ev in events.iter() {
                let i = ev.token().0;
                loop {
                    match self.socks[i].read(&mut buf) {
                        Ok(0) => panic!("member {i} was disconnected"),
                        Ok(n) => {
                            self.got[i] += n;
                            let seen = mark.is_some_and(|m| buf[..n].contains(&m));
                            if seen && self.marked[i].is_none() {
                                self.marked[i] = Some(Instant::now());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => panic!("member {i}: {e}"),
                    }
                }
            }
        }
        assert_eq!(self.got, want, "a member got more than was sent to it");
    }
}

/// A chat flood cannot hold up the room: one member sends 64 KiB of one-byte
/// lines in one write (32,768 lines), another member sends a line right
/// after, and that line reaches every other member quickly, while the flood
/// too arrives whole, in order of bytes, at every member, and nobody who
/// reads is dropped. (Before bounded turns, the flood was handed to every
/// member line by line in one turn: with 300 members the probe line took
/// 1.6 s in a debug build.)
#[test]
fn a_chat_flood_does_not_hold_up_another_members_line() {
    const MEMBERS: usize = 300;
    const LINES: usize = 32 * 1024;
    let _serial = serial();
    let server = start(Config {
        mode: Mode::Chat,
        udp: None,
        ..test_config()
    });
    let streams: Vec<TcpStream> = (0..MEMBERS).map(|_| server.connect()).collect();
    let addr = |i: usize| streams[i].local_addr().unwrap();
    // Member i hears the join notice of every member after it.
    let joins: Vec<usize> = (0..MEMBERS)
        .map(|i| {
            (i + 1..MEMBERS)
                .map(|j| format!("* {} joined\n", addr(j)).len())
                .sum()
        })
        .collect();
    let prefix = |i: usize| format!("{}: ", addr(i)).len();
    // Then member 0's flood (not to itself) and member 1's probe line.
    let want: Vec<usize> = (0..MEMBERS)
        .map(|i| {
            let flood = if i == 0 { 0 } else { LINES * (prefix(0) + 2) };
            let probe = if i == 1 {
                0
            } else {
                prefix(1) + "probe\n".len()
            };
            joins[i] + flood + probe
        })
        .collect();
    let mut readers = Readers::new(&streams);
    let (joined_tx, joined_rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        readers.read_until(&joins, None, Duration::from_secs(60));
        joined_tx.send(()).unwrap();
        // No address or notice contains a 'p': it marks the probe line.
        readers.read_until(&want, Some(b'p'), Duration::from_secs(120));
        readers
    });
    joined_rx.recv_timeout(Duration::from_secs(60)).unwrap();

    write_all_polling(&streams[0], "x\n".repeat(LINES).as_bytes());
    let sent = Instant::now();
    write_all_polling(&streams[1], b"probe\n");
    let readers = reader.join().expect("reader thread");

    let mut delays: Vec<Duration> = (0..MEMBERS)
        .filter(|&i| i != 1)
        .map(|i| readers.marked[i].expect("probe seen") - sent)
        .collect();
    delays.sort();
    let stats = server.stats();
    eprintln!(
        "probe p50={:?} max={:?} max_turn_us={} slow_consumers={}",
        delays[delays.len() / 2],
        delays.last().unwrap(),
        stats.max_turn_us,
        stats.slow_consumers
    );
    assert_eq!(stats.slow_consumers, 0, "a reading member was dropped");
    // Release builds: ~10 ms with 500 members (README); a debug build
    // here takes ~10 ms with 300, and took 1.6 s before bounded turns. The
    // bound leaves room for a loaded CI machine.
    assert!(
        *delays.last().unwrap() < Duration::from_millis(300),
        "the probe line took {:?} to reach everyone",
        delays.last().unwrap()
    );
}

/// `write_all` for a socket the reader thread made non-blocking (the flag
/// is shared by every clone): retries `WouldBlock` for up to 10 s.
fn write_all_polling(mut s: &TcpStream, mut data: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.is_empty() {
        match s.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "write stalled");
                thread::sleep(Duration::from_micros(200));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// A client that pushes 64 KiB chunks as fast as it can and reads what
/// comes back, until `stop`.
fn bulk_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> [thread::JoinHandle<()>; 2] {
    let s = TcpStream::connect(addr).unwrap();
    let mut r = s.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut w = s;
    w.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop_w = stop.clone();
    let writer = thread::spawn(move || {
        let chunk = vec![b'b'; 64 * 1024];
        while !stop_w.load(Ordering::Relaxed) {
            match w.write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match r.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    [writer, reader]
}

/// Round-trip times of a 32-byte echo, `n` of them, 1 ms apart.
fn probe(s: &mut TcpStream, n: usize) -> Vec<Duration> {
    let msg = [b'p'; 32];
    let mut back = [0u8; 32];
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        rtts.push(t.elapsed());
        thread::sleep(Duration::from_millis(1));
    }
    rtts.sort();
    rtts
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() * 99 / 100]
}

/// Bulk senders do not starve a light client: with 20 clients pushing bulk
/// echo, a light client's p99 round trip stays within a few times that of
/// the same client against an idle server measured in the same run, and no
/// turn of the loop is long. (Before bounded turns each bulk connection
/// could move 1 MiB per event, all of them in one turn.)
#[test]
fn bulk_senders_do_not_starve_a_light_client() {
    const BULK: usize = 20;
    let _serial = serial();
    let busy = start(test_config());
    let idle = start(test_config());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..BULK)
        .flat_map(|_| bulk_client(busy.tcp, stop.clone()))
        .collect();
    wait_until("bulk traffic", || busy.stats().bytes_out > 64 << 20);
    let (mut on_busy, mut on_idle) = (busy.connect(), idle.connect());
    // Interleave the two probes so both see the same machine load.
    let (mut b, mut i) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        b.extend(probe(&mut on_busy, 25));
        i.extend(probe(&mut on_idle, 25));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    b.sort();
    i.sort();
    let stats = busy.stats();
    eprintln!(
        "light client p99: busy {:?} idle {:?}; busy max {:?}; max_turn_us={} bytes_out={}",
        p99(&b),
        p99(&i),
        b.last().unwrap(),
        stats.max_turn_us,
        stats.bytes_out
    );
    // The target is 5x (met in release builds, see README); a
    // debug build on a shared 2-core machine gets a wider margin, and a
    // floor for a near-zero idle p99.
    let bound = (p99(&i) * 10).max(Duration::from_millis(20));
    assert!(
        p99(&b) <= bound,
        "light client p99 {:?} on the busy server vs {:?} idle",
        p99(&b),
        p99(&i)
    );
}

/// The drain timeout holds while the loop is busy: with bulk clients still
/// sending during the drain (their input is read and dropped) and one
/// client that never reads, `run` returns within 100 ms (plus slack for a
/// loaded machine) of the drain deadline.
#[test]
fn drain_timeout_holds_while_the_loop_is_busy() {
    const DRAIN: Duration = Duration::from_millis(1000);
    let _serial = serial();
    let server = start(Config {
        drain_timeout: DRAIN,
        ..test_config()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .flat_map(|_| bulk_client(server.tcp, stop.clone()))
        .collect();
    let stalled = server.connect();
    let _writer = common::stalled_writer(&stalled, 64 << 20);
    let started = Instant::now();
    let stats = server.stop();
    let late = started.elapsed().saturating_sub(DRAIN);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "drain returned {late:?} after its deadline; max_turn_us={}",
        stats.max_turn_us
    );
    assert!(stats.drain_aborts >= 1, "the stalled client was cut off");
    assert!(
        late < Duration::from_millis(100 + 200),
        "drain returned {late:?} late"
    );
}
