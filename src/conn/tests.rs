//! Unit tests for `Conn`, driven by a scripted socket: no sockets, no timing.

use super::*;
use crate::budget::TurnBudget;
use crate::protocol::echo::Echo;
use crate::protocol::Outbox;
use crate::ready::Ready;
use crate::stats::Counters;
use crate::testutil::{ReadStep, ScriptedIo};
use mio::Interest;
use std::cell::Cell;

impl StreamSocket for ScriptedIo {
    fn shutdown_write(&self) -> io::Result<()> {
        FIN.with(|f| f.set(f.get() + 1));
        Ok(())
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.pending_error.map(io::Error::from))
    }

    /// The data steps scripted before the first pause: what "the kernel"
    /// holds now.
    fn queued_input(&self) -> Option<usize> {
        let data = self.reads.iter().map_while(|r| match r {
            ReadStep::Data(d) => Some(d.len()),
            _ => None,
        });
        Some(data.sum())
    }
}

thread_local! { static FIN: Cell<u32> = const { Cell::new(0) }; }

struct Env {
    scratch: Vec<u8>,
    room: Outbox,
    stats: Counters,
    budget: TurnBudget,
    allowance: usize,
    hold_fin: bool,
    /// The visit's clock: tests move it by hand.
    now: Instant,
}

impl Env {
    fn new(scratch: usize) -> Env {
        Env {
            scratch: vec![0; scratch],
            room: Outbox::default(),
            stats: Counters::default(),
            budget: TurnBudget::new(),
            allowance: usize::MAX,
            hold_fin: false,
            // On a whole millisecond, as connections keep their times (`Stamp`).
            now: crate::stamp::Stamp::new(Instant::now()).instant(),
        }
    }
    fn ctx(&mut self, max_pending: usize) -> Ctx<'_> {
        Ctx {
            scratch: &mut self.scratch,
            room: &mut self.room,
            stats: &self.stats,
            budget: &mut self.budget,
            now: self.now,
            max_pending,
            low_water: max_pending / 2,
            read_allowance: self.allowance,
            hold_fin: self.hold_fin,
        }
    }
}

fn echo_conn(io: ScriptedIo, env: &mut Env, max_pending: usize) -> Conn<ScriptedIo> {
    Conn::new(io, 1, Box::new(Echo), &mut env.ctx(max_pending))
}

/// Bytes the socket would not take are kept and sent, in order, on WRITABLE.
#[test]
fn short_writes_queue_the_rest_and_writable_drains_it() {
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(3), None, Some(100)]).with_reads(vec![
        ReadStep::Data(b"abcdef".to_vec()),
        ReadStep::WouldBlock,
    ]);
    let mut c = echo_conn(io, &mut env, 1024);
    assert!(c.on_readable(&mut env.ctx(1024)).is_empty());
    assert_eq!(c.socket.written, b"abc");
    assert_eq!(c.interest(), Some(Interest::READABLE | Interest::WRITABLE));
    c.on_writable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"abcdef");
    assert_eq!(c.interest(), Some(Interest::READABLE));
    assert!(
        !c.out.has_allocation(),
        "drained connection keeps no buffer"
    );
}

/// A short read ends the read loop on Linux (one read per message), and
/// Interrupted is retried.
#[test]
fn interrupted_is_retried_and_short_read_ends_the_loop() {
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(100); 4]).with_reads(vec![
        ReadStep::Interrupted,
        ReadStep::Data(b"hi".to_vec()),
        ReadStep::Data(b"later".to_vec()),
    ]);
    let mut c = echo_conn(io, &mut env, 1024);
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"hi");
    if SHORT_READ_MEANS_DRAINED {
        assert_eq!(c.socket.read_calls, 2);
    }
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"hilater");
}

/// Data and FIN that arrived together (one event, read-closed set) are
/// both read in that event: no later edge would announce the FIN.
#[test]
fn queued_fin_is_read_past_a_short_read() {
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(100); 4])
        .with_reads(vec![ReadStep::Data(b"bye".to_vec()), ReadStep::Eof]);
    let mut c = echo_conn(io, &mut env, 1024);
    c.note_read_closed();
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"bye");
    assert_eq!(c.close_reason(), Some(CloseReason::Done));
}

/// A member whose input ended, and whose last owed bytes go out with a
/// broadcast's flush, sends FIN and closes right then (regression: it
/// used to wait, deregistered, for the idle timeout).
#[test]
fn broadcast_flush_that_drains_after_eof_finishes_the_connection() {
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(2), None, Some(1000), Some(1000)])
        .with_reads(vec![ReadStep::Data(b"owed".to_vec()), ReadStep::Eof]);
    let mut c = echo_conn(io, &mut env, 1024);
    c.note_read_closed();
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"ow");
    assert_eq!(c.close_reason(), None, "still owes bytes");
    let fins = FIN.with(Cell::get);
    let msg: Rc<[u8]> = Rc::from(&b"* x left\n"[..]);
    c.deliver(&msg, &mut env.ctx(1024));
    assert_eq!(c.socket.written, b"owed* x left\n");
    assert_eq!(FIN.with(Cell::get), fins + 1, "FIN sent");
    assert_eq!(c.close_reason(), Some(CloseReason::Done));
}

/// A peer that does not read: reading pauses at the high-water mark, and
/// resumes (reading at once, without waiting for an edge) once drained.
#[test]
fn backpressure_pauses_and_resumes_reading() {
    let mut env = Env::new(8);
    let reads = (0..10).map(|i| ReadStep::Data(vec![i; 8])).collect();
    let io = ScriptedIo::new(vec![]).with_reads(reads);
    let mut c = echo_conn(io, &mut env, 16);
    c.on_readable(&mut env.ctx(16));
    assert_eq!(c.out.len(), 16, "stops reading at the high-water mark");
    assert_eq!(c.interest(), Some(Interest::WRITABLE));
    assert_eq!(env.stats.snapshot().backpressure_pauses, 1);
    // The peer reads everything; WRITABLE drains, then reads resume at once
    // (a visit's worth, then as many more visits as the reactor gives it).
    c.socket.writes = vec![Some(1000); 100].into();
    let mut left = c.on_writable(&mut env.ctx(16));
    assert!(c.socket.written.len() > 16, "read again in the same visit");
    for _ in 0..10 {
        if !left.read {
            break;
        }
        left = c.on_readable(&mut env.ctx(16));
    }
    assert_eq!(c.socket.written.len(), 80);
    let expect: Vec<u8> = (0..10u8).flat_map(|i| [i; 8]).collect();
    assert_eq!(c.socket.written, expect);
}

/// After EOF everything owed is flushed, then FIN, then close.
#[test]
fn half_close_flushes_then_closes() {
    FIN.with(|f| f.set(0));
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(2)])
        .with_reads(vec![ReadStep::Data(b"tail".to_vec()), ReadStep::Eof]);
    let mut c = echo_conn(io, &mut env, 1024);
    c.on_readable(&mut env.ctx(1024));
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.close_reason(), None, "2 bytes still owed");
    assert_eq!(FIN.with(|f| f.get()), 0);
    c.socket.writes = vec![Some(100)].into();
    c.on_writable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"tail");
    assert_eq!(FIN.with(|f| f.get()), 1);
    assert_eq!(c.close_reason(), Some(CloseReason::Done));
}

/// A reset is a quiet close, counted.
#[test]
fn reset_closes_and_counts() {
    let mut env = Env::new(64);
    let io =
        ScriptedIo::new(vec![]).with_reads(vec![ReadStep::Error(io::ErrorKind::ConnectionReset)]);
    let mut c = echo_conn(io, &mut env, 1024);
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.close_reason(), Some(CloseReason::Reset));
    assert_eq!(env.stats.snapshot().resets, 1);
    assert_eq!(c.interest(), None);
}

/// One connection cannot monopolise the loop: the read cap leaves read
/// readiness for the reactor to serve later.
#[test]
fn read_cap_requests_requeue() {
    let mut env = Env::new(4);
    let reads = (0..40).map(|_| ReadStep::Data(vec![1; 4])).collect();
    let io = ScriptedIo::new(vec![Some(1000); 100]).with_reads(reads);
    let mut c = echo_conn(io, &mut env, 1 << 20);
    assert_eq!(c.on_readable(&mut env.ctx(1 << 20)), Ready::READ);
    assert_eq!(c.socket.read_calls, MAX_READS_PER_VISIT);
}

/// The turn's budget ends a visit after the read that spent it (a visit
/// always makes progress), leaving read readiness; reads and writes both
/// spend it.
#[test]
fn an_exhausted_turn_budget_ends_the_visit() {
    let mut env = Env::new(64);
    env.budget = TurnBudget::with_limits(100, 10);
    let reads = (0..4).map(|_| ReadStep::Data(vec![7; 64])).collect();
    let io = ScriptedIo::new(vec![Some(1000); 10]).with_reads(reads);
    let mut c = echo_conn(io, &mut env, 1 << 20);
    assert_eq!(c.on_readable(&mut env.ctx(1 << 20)), Ready::READ);
    assert_eq!(c.socket.read_calls, 1, "64 read + 64 echoed spend 100");
    assert!(env.budget.exhausted());
    for _ in 0..4 {
        env.budget.refill();
        if c.on_readable(&mut env.ctx(1 << 20)).is_empty() {
            break; // drained
        }
    }
    assert_eq!(c.socket.written.len(), 4 * 64);
}

/// A flush stops at its share of the turn with bytes left, and says the
/// socket may still be writable: no new edge would come for it.
#[test]
fn a_flush_stops_at_its_share_and_asks_to_write_again() {
    let mut env = Env::new(64 * 1024);
    let reads = (0..8).map(|_| ReadStep::Data(vec![3; 64 * 1024])).collect();
    // The socket refuses everything while we read, then takes it all.
    let io = ScriptedIo::new(vec![None; 8]).with_reads(reads);
    let mut c = echo_conn(io, &mut env, 1 << 30);
    for _ in 0..8 / MAX_READS_PER_VISIT {
        env.budget.refill(); // a visit per turn
        c.on_readable(&mut env.ctx(1 << 30));
    }
    assert_eq!(c.out.len(), 8 * 64 * 1024);
    c.socket.writes = vec![Some(64 * 1024); 100].into();
    let left = c.on_writable(&mut env.ctx(1 << 30));
    assert!(left.write);
    assert_eq!(c.socket.written.len(), MAX_FLUSH_PER_VISIT);
}

/// Over the memory budget a visit reads at most its allowance.
#[test]
fn reads_stay_within_the_memory_allowance() {
    let mut env = Env::new(64);
    env.allowance = 10;
    // A frame announcing 1000 bytes, of which 50 arrived.
    let mut frame = 1000u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[5; 46]);
    let io = ScriptedIo::new(vec![Some(1000); 10]).with_reads(vec![ReadStep::Data(frame)]);
    let mut c = framed_conn(io, &mut env);
    assert!(c.on_readable(&mut env.ctx(1024)).read, "input left");
    assert_eq!(c.socket.read_calls, 1);
    assert!((10..=20).contains(&c.held()), "10 bytes read and held");
    assert!(c.set_memory_paused(true), "paused: it stops reading");
    assert!(!c.can_read());
    // Still registered, so that a reset from the peer is noticed.
    assert_eq!(c.interest(), Some(Interest::READABLE));
    assert!(c.set_memory_paused(false));
    assert_eq!(c.interest(), Some(Interest::READABLE));
}

/// A chat member whose join notice is still on its way through the room
/// reads nothing, but stays registered, so that a reset from its peer is
/// seen before the notice went out (and then nobody is told of it).
#[test]
fn a_member_waiting_for_the_room_stays_registered_without_reading() {
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![]).with_reads(vec![ReadStep::Data(b"hi\n".to_vec())]);
    let peer = "10.0.0.1:4242".parse().unwrap();
    let chat = Box::new(crate::protocol::chat::Chat::new(peer, 64));
    let mut c = Conn::new(io, 1, chat, &mut env.ctx(1024));
    assert!(!env.room.is_empty(), "the join notice");
    assert!(!c.can_read());
    assert_eq!(c.interest(), Some(Interest::READABLE));
    assert!(c.on_readable(&mut env.ctx(1024)).is_empty());
    assert_eq!(c.socket.read_calls, 0, "its input waits for the room");
    c.on_delivered();
    assert_eq!(c.interest(), Some(Interest::READABLE));
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.read_calls, 1);
}

fn framed_conn(io: ScriptedIo, env: &mut Env) -> Conn<ScriptedIo> {
    let proto = Box::new(crate::protocol::framed::Framed::new(1 << 20));
    Conn::new(io, 1, proto, &mut env.ctx(1024))
}

/// Shutdown processes exactly the input the kernel held when it began,
/// then sends FIN; bytes arriving later are read and dropped.
#[test]
fn shutdown_processes_held_input_then_discards() {
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(1000); 10])
        .with_reads(vec![ReadStep::Data(b"held too".to_vec())]);
    let mut c = echo_conn(io, &mut env, 1024);
    let fins = FIN.with(Cell::get);
    assert_eq!(c.begin_shutdown(&mut env.ctx(1024)), Ready::READ);
    assert!(!c.shutdown_done(), "held input not processed yet");
    // More arrives after shutdown began: never echoed.
    c.socket.reads.push_back(ReadStep::Data(b"late".to_vec()));
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"held too");
    assert_eq!(FIN.with(Cell::get), fins + 1, "FIN after the held input");
    assert!(c.shutdown_done());
}

/// While the chat room still has lines on their way, FIN waits.
#[test]
fn hold_fin_delays_the_fin() {
    let mut env = Env::new(64);
    env.hold_fin = true;
    let io = ScriptedIo::new(vec![Some(1000); 10]);
    let mut c = echo_conn(io, &mut env, 1024);
    let fins = FIN.with(Cell::get);
    c.begin_shutdown(&mut env.ctx(1024));
    assert_eq!(FIN.with(Cell::get), fins);
    env.hold_fin = false;
    c.on_writable(&mut env.ctx(1024));
    assert_eq!(FIN.with(Cell::get), fins + 1);
}

/// Bytes of a connection's part of its slab entry in a release build: what
/// every connection pays, idle or not (issue 9 asks for 128 bytes per idle
/// connection in all; the reactor's slot adds its bookkeeping, the timer
/// heap an entry). A release `TcpStream` is its file descriptor.
const CONN_BYTES: usize = 56;

/// The common slab entry stays within its bound: mode state, output and
/// the peer's address stay out of it.
#[test]
fn an_idle_connection_fits_its_bound() {
    use std::mem::{align_of, size_of};
    use std::os::fd::RawFd;
    // mio's `TcpStream` carries a selector id in debug builds (tests) only.
    let socket_extra = size_of::<mio::net::TcpStream>() - size_of::<RawFd>();
    let bound = (CONN_BYTES + socket_extra).next_multiple_of(align_of::<usize>());
    let size = size_of::<Conn<mio::net::TcpStream>>();
    assert!(
        size <= bound,
        "Conn is {size} bytes, bound {bound} ({CONN_BYTES} in a release build)"
    );
    // An echo connection's handler and empty output allocate nothing.
    assert_eq!(size_of::<crate::protocol::echo::Echo>(), 0);
    assert_eq!(size_of::<OutBuf>(), size_of::<usize>());
}

/// The idle rule, the linger time and the timer entries they ask for.
mod ending;
mod idle;
