//! The reactor's timing decisions on virtual time: idle timers, the accept
//! back-off, the drain's deadline, when to pause for a UDP batch. Real
//! sockets on 127.0.0.1, but no sleeping: the clock the reactor sees is
//! whatever `now` the test passes to `turn`, `fire_timers` and
//! `drain_done` (smoltcp's `set_now`, in spirit). Only waiting for the
//! kernel to deliver loopback bytes takes wall-clock time, bounded by
//! `PATIENCE`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::accept::ACCEPT_BACKOFF;
use super::{Exit, Reactor};
use crate::bind::{bind_shard, Addrs};
use crate::config::Config;
use crate::shutdown::ShutdownHandle;
use crate::stamp::Stamp;
use crate::stats::Stats;

/// How long a test waits for loopback IO before failing.
const PATIENCE: Duration = Duration::from_secs(10);
/// The idle timeout the tests use (virtual: nobody waits for it).
const IDLE: Duration = Duration::from_secs(300);

/// A reactor listening on 127.0.0.1:0 (no UDP), with its address.
fn reactor(config: Config) -> (Reactor, SocketAddr) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: None,
        ..config
    };
    let mut addrs = Addrs {
        tcp: config.listen,
        udp: None,
    };
    let (shard, waker) = bind_shard(&config, 0, &mut addrs, None).unwrap();
    let shutdown = ShutdownHandle::new(vec![waker]);
    let reactor = Reactor::new(shard, &config, &shutdown, &Stats::default(), None).unwrap();
    (reactor, addrs.tcp)
}

/// A reactor on 127.0.0.1:0 with UDP too: the reactor, its TCP and UDP
/// addresses.
fn reactor_with_udp(config: Config) -> (Reactor, SocketAddr, SocketAddr) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = Config {
        listen: any,
        udp: Some(any),
        ..config
    };
    let mut addrs = Addrs {
        tcp: any,
        udp: Some(any),
    };
    let (shard, waker) = bind_shard(&config, 0, &mut addrs, None).unwrap();
    let shutdown = ShutdownHandle::new(vec![waker]);
    let reactor = Reactor::new(shard, &config, &shutdown, &Stats::default(), None).unwrap();
    (reactor, addrs.tcp, addrs.udp.unwrap())
}

/// Runs turns at virtual time `now` until `done` holds; each waits up to
/// 50 ms of real time for the kernel's events.
fn turns_until(r: &mut Reactor, now: Instant, mut done: impl FnMut(&Reactor) -> bool) {
    let start = Instant::now();
    while !done(r) {
        assert!(start.elapsed() < PATIENCE, "the condition never held");
        r.poll
            .poll(&mut r.events, Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(r.turn(now), Exit::No);
    }
}

/// Connects a client and lets the reactor accept it at `now`.
fn connect(r: &mut Reactor, addr: SocketAddr, now: Instant) -> TcpStream {
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let before = r.conns.len();
    turns_until(r, now, |r| r.conns.len() > before);
    client
}

/// A reactor with `--idle-timeout` `IDLE`, and a client it accepted at `t0`.
fn idle_reactor_with_client(t0: Instant) -> (Reactor, TcpStream) {
    let config = Config {
        idle_timeout: Some(IDLE),
        ..Config::default()
    };
    let (mut r, addr) = reactor(config);
    let client = connect(&mut r, addr, t0);
    (r, client)
}

/// A reactor with `--idle-timeout 0`: no idle timer bounds its poll.
fn reactor_without_idle_timeout() -> (Reactor, SocketAddr) {
    reactor(Config {
        idle_timeout: None,
        ..Config::default()
    })
}

fn counter(
    r: &Reactor,
    pick: impl Fn(&crate::stats::Counters) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    pick(&r.shared.stats).load(Relaxed)
}

/// Now, on a whole millisecond: deadlines are kept as millisecond
/// [`Stamp`]s rounded up, so instants on the millisecond read back exactly.
fn whole_ms_now() -> Instant {
    Stamp::new(Instant::now()).instant()
}

/// A silent connection is closed exactly `IDLE` after it was accepted, not
/// a millisecond before, and the poll timeout says so in advance.
#[test]
fn a_silent_connection_closes_at_its_idle_deadline() {
    let t0 = whole_ms_now();
    let (mut r, mut client) = idle_reactor_with_client(t0);
    assert_eq!(r.poll_timeout(t0), Some(IDLE));
    r.fire_timers(t0 + IDLE - Duration::from_millis(1));
    assert_eq!(r.conns.len(), 1);
    r.fire_timers(t0 + IDLE);
    assert_eq!(r.conns.len(), 0);
    assert_eq!(counter(&r, |c| &c.idle_closes), 1);
    // The client sees the close.
    assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
}

/// Traffic moves the deadline: the timer entry that comes due at the old
/// deadline finds the connection active since, and is pushed to `IDLE`
/// after the last bytes moved.
#[test]
fn traffic_pushes_the_idle_deadline() {
    let t0 = whole_ms_now();
    let (mut r, mut client) = idle_reactor_with_client(t0);
    let t1 = t0 + Duration::from_secs(100);
    client.write_all(b"ping").unwrap();
    turns_until(&mut r, t1, |r| counter(r, |c| &c.bytes_out) == 4);
    let mut echo = [0; 4];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    r.fire_timers(t0 + IDLE);
    assert_eq!(r.conns.len(), 1, "active at t1: not idle at t0 + IDLE");
    assert_eq!(r.poll_timeout(t0 + IDLE), Some(t1 + IDLE - (t0 + IDLE)));
    r.fire_timers(t1 + IDLE);
    assert_eq!(r.conns.len(), 0);
    assert_eq!(counter(&r, |c| &c.idle_closes), 1);
}

/// With `--idle-timeout 0` no timer is ever set: nothing bounds the poll.
#[test]
fn no_idle_timeout_means_no_timer() {
    let (mut r, addr) = reactor_without_idle_timeout();
    let t0 = whole_ms_now();
    let _client = connect(&mut r, addr, t0);
    assert_eq!(r.poll_timeout(t0), None);
    r.fire_timers(t0 + Duration::from_secs(365 * 24 * 3600));
    assert_eq!(r.conns.len(), 1);
}

/// Out of descriptors, the reactor does not spin: the poll sleeps exactly
/// until the back-off ends, a turn before then accepts nobody, and at that
/// virtual time the client that waited in the backlog is accepted (its
/// edge passed long ago, so nothing else would announce it).
#[test]
fn an_accept_back_off_ends_on_time_and_takes_who_waited() {
    let (mut r, addr) = reactor_without_idle_timeout();
    let t0 = whole_ms_now();
    let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
    r.acceptor.on_error(emfile, t0, &r.shared.stats);
    assert_eq!(r.poll_timeout(t0), Some(ACCEPT_BACKOFF));
    // A blocking connect returns once the handshake is done: the client
    // waits in the backlog now.
    let _client = TcpStream::connect(addr).unwrap();
    r.poll
        .poll(&mut r.events, Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(r.turn(t0), Exit::No);
    r.fire_timers(t0 + ACCEPT_BACKOFF - Duration::from_millis(1));
    assert_eq!(r.conns.len(), 0, "still backing off");
    r.fire_timers(t0 + ACCEPT_BACKOFF);
    assert_eq!(r.conns.len(), 1);
    // Accepted at the back-off's end: its idle clock starts then.
    let (_, slot) = r.conns.iter().next().unwrap();
    let idle = Duration::from_secs(60);
    let (at, _) = slot.conn.deadline(Some(idle)).unwrap();
    assert_eq!(at, t0 + ACCEPT_BACKOFF + idle);
    assert_eq!(
        r.poll_timeout(t0 + ACCEPT_BACKOFF),
        None,
        "nothing left to wait for"
    );
}

/// A connection that owes nothing closes as delivered as soon as the peer
/// acknowledged our FIN, long before the drain timeout: the reactor is done
/// with the virtual clock still at the drain's start.
#[test]
fn a_drain_with_nothing_owed_ends_without_waiting_for_the_deadline() {
    let (mut r, addr) = reactor(Config::default());
    let t0 = whole_ms_now();
    let mut client = connect(&mut r, addr, t0);
    r.begin_shutdown();
    let start = Instant::now();
    while r.turn(t0) == Exit::No {
        assert!(start.elapsed() < PATIENCE, "the drain never ended");
        // While it waits for an acknowledgement it asks to be woken soon.
        let timeout = r.poll_timeout(t0).expect("a drain always wakes");
        assert!(timeout < Duration::from_secs(1), "{timeout:?}");
        r.poll.poll(&mut r.events, Some(timeout)).unwrap();
    }
    assert_eq!(r.conns.len(), 0);
    assert_eq!(counter(&r, |c| &c.drain_aborts), 0);
    assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
}

/// Input the kernel held when the drain began keeps the connection open
/// (it is still to be processed), but not past the drain timeout: at
/// exactly the deadline it is closed and counted as aborted.
#[test]
fn the_drain_timeout_closes_what_is_left() {
    let drain_timeout = Duration::from_secs(5);
    let config = Config {
        drain_timeout,
        ..Config::default()
    };
    let (mut r, addr) = reactor(config);
    let t0 = whole_ms_now();
    let mut client = connect(&mut r, addr, t0);
    client.write_all(b"held").unwrap();
    // Wait (bounded) until the kernel holds the bytes for the server.
    let (_, slot) = r.conns.iter().next().unwrap();
    let start = Instant::now();
    while crate::sys::queued_input_bytes(&slot.conn.socket).unwrap() < 4 {
        assert!(start.elapsed() < PATIENCE, "bytes never arrived");
        std::thread::yield_now();
    }
    r.begin_shutdown();
    assert!(!r.drain_done(t0), "held input is still to be processed");
    assert!(!r.drain_done(t0 + drain_timeout - Duration::from_millis(1)));
    assert_eq!(r.conns.len(), 1);
    assert!(r.drain_done(t0 + drain_timeout));
    assert_eq!(r.conns.len(), 0);
    assert_eq!(counter(&r, |c| &c.drain_aborts), 1);
}

/// A slab key is reused at once, but a timer entry names the connection id
/// it was meant for: the successor in the same slot is not closed at its
/// predecessor's idle deadline, only at its own.
#[test]
fn a_reused_slot_ignores_its_predecessors_timer() {
    let t0 = whole_ms_now();
    let config = Config {
        idle_timeout: Some(IDLE),
        ..Config::default()
    };
    let (mut r, addr) = reactor(config);
    let client = connect(&mut r, addr, t0);
    let first = r.conns.iter().next().map(|(key, _)| key).unwrap();
    drop(client);
    let t1 = t0 + IDLE / 2;
    turns_until(&mut r, t1, |r| r.conns.is_empty());
    let _second = connect(&mut r, addr, t1);
    let second = r.conns.iter().next().map(|(key, _)| key).unwrap();
    assert_eq!(first, second, "the slab hands out the freed key again");
    r.fire_timers(t0 + IDLE);
    assert_eq!(
        r.conns.len(),
        1,
        "the first connection's deadline is not the second's"
    );
    r.fire_timers(t1 + IDLE);
    assert_eq!(r.conns.len(), 0);
    assert_eq!(counter(&r, |c| &c.idle_closes), 1);
}

/// A `--max-conns` far beyond what this machine could hold (allowed where
/// the open-files limit is that high) still starts: the slab and timer
/// room reserved up front is capped, and past the cap they grow as used.
/// Reserving all of it aborted the process ("memory allocation of ...
/// failed") before it served anyone.
#[test]
fn a_huge_max_conns_reserves_a_bounded_slab() {
    let config = Config {
        max_conns: 1 << 40,
        ..Config::default()
    };
    let (mut r, addr) = reactor(config);
    assert!(r.conns.capacity() <= super::RESERVE_CONNS);
    let mut client = connect(&mut r, addr, Instant::now());
    client.write_all(b"ok").unwrap();
    let mut back = [0u8; 2];
    let start = Instant::now();
    while r.shared.stats.bytes_out.load(Relaxed) < 2 {
        assert!(start.elapsed() < PATIENCE, "no echo");
        r.poll
            .poll(&mut r.events, Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(r.turn(Instant::now()), Exit::No);
    }
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ok");
}

/// `--udp-coalesce`: the loop pauses before its next poll only after a
/// turn that served a burst of datagrams and no connection (the pause
/// holds every client), for no longer than the time to the next deadline,
/// never while work is left (a zero timeout), and never once the drain
/// began. Bursts of 8 datagrams (and a TCP message) are sent before the
/// reactor looks; a loaded machine may split them across turns, so each
/// case is tried until it happened, at most `TRIES` times.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn a_pause_follows_only_a_turn_that_served_datagrams_alone() {
    const TRIES: usize = 50;
    let pause = Duration::from_micros(20);
    let config = Config {
        udp_coalesce: pause,
        idle_timeout: None,
        ..Config::default()
    };
    let (mut r, tcp, udp) = reactor_with_udp(config);
    let now = Instant::now();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Runs turns until `total` datagrams and `bytes` TCP bytes were served;
    // true if one of them served 4 or more datagrams and a connection.
    let serve = |r: &mut Reactor, total: u64, bytes: u64| {
        let (start, mut both) = (Instant::now(), false);
        while counter(r, |c| &c.datagrams_out) < total || counter(r, |c| &c.bytes_out) < bytes {
            assert!(start.elapsed() < PATIENCE, "not served");
            let before = counter(r, |c| &c.datagrams_in);
            r.poll.poll(&mut r.events, Some(PATIENCE)).unwrap();
            assert_eq!(r.turn(now), Exit::No);
            if r.turn.visited() {
                assert_eq!(r.coalesce_pause(None), None, "a connection was served");
                both |= counter(r, |c| &c.datagrams_in) - before >= 4;
            }
        }
        both
    };
    let mut sent = 0;
    let mut burst = || {
        for i in 0..8u8 {
            sock.send_to(&[i], udp).unwrap();
        }
        sent += 8;
        sent
    };

    // Datagrams alone.
    let paused = (0..TRIES).any(|_| {
        let total = burst();
        serve(&mut r, total, 0);
        r.coalesce_pause(None).is_some()
    });
    assert!(paused, "{TRIES} bursts of 8 and never a pause");
    assert_eq!(r.coalesce_pause(None), Some(pause));
    let sooner = Duration::from_micros(5);
    assert_eq!(r.coalesce_pause(Some(sooner)), Some(sooner), "a deadline");
    assert_eq!(r.coalesce_pause(Some(Duration::ZERO)), None, "work left");

    // Datagrams and a connection in one turn.
    let mut client = connect(&mut r, tcp, now);
    let mut echoed = 0;
    let together = (0..TRIES).any(|_| {
        client.write_all(b"x").unwrap();
        echoed += 1;
        let total = burst();
        serve(&mut r, total, echoed)
    });
    assert!(together, "{TRIES} tries and never a turn with both");

    // Not once the drain began.
    let paused = (0..TRIES).any(|_| {
        let total = burst();
        serve(&mut r, total, echoed);
        r.coalesce_pause(None).is_some()
    });
    assert!(paused, "{TRIES} bursts of 8 and never a pause");
    r.begin_shutdown();
    assert_eq!(r.coalesce_pause(None), None, "draining");
}
