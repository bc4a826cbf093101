//! The memory budget's overdraft (`--max-memory`, see `src/memory.rs`):
//! framed clients whose frames in flight add up to more than the budget
//! are each paused mid-frame, and without the overdraft none could finish
//! (the total falls only when a frame completes). One paused holder at a
//! time reads past the budget just enough to finish its frame; one that
//! stalls with it loses it, so it cannot keep the others waiting.

mod common;

use std::io::{self, Read, Write};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{connect, start, test_config, Running};
use echoloop::{Config, Mode};

const MIB: usize = 1024 * 1024;
/// `SMALL_HOLDING` in `src/memory.rs`: what a paused client may top up to.
const SMALL: usize = 4096;
/// Reads of the clients that must be answered: several overdraft stalls
/// (2 s each) may come first, on a loaded machine.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A framed server with a 1 MiB budget and the default 1 MiB `--max-frame`.
fn framed_server() -> Running {
    start(Config {
        mode: Mode::Framed,
        udp: None,
        max_memory: MIB,
        ..test_config()
    })
}

/// One frame of `len` payload bytes (a pattern, so a misplaced byte shows).
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = (len as u32).to_be_bytes().to_vec();
    f.extend((0..len).map(|i| (i % 251) as u8 ^ seed));
    f
}

/// Clients that each send one whole frame (`frames`) from a writer thread,
/// all at once (connected first, then released together), while reading
/// the echo; each thread returns whether its frame came back exactly.
fn echo_clients(server: &Running, frames: Vec<Vec<u8>>) -> Vec<thread::JoinHandle<bool>> {
    let start = Arc::new(Barrier::new(frames.len()));
    frames
        .into_iter()
        .map(|f| echo_client(server, f, start.clone()))
        .collect()
}

fn echo_client(server: &Running, frame: Vec<u8>, start: Arc<Barrier>) -> thread::JoinHandle<bool> {
    let mut s = connect(server.tcp);
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    thread::spawn(move || {
        let mut w = s.try_clone().unwrap();
        let sent = frame.clone();
        start.wait();
        let writer = thread::spawn(move || w.write_all(&sent).is_ok());
        let mut got = vec![0u8; frame.len()];
        let echoed = s.read_exact(&mut got).is_ok() && got == frame;
        writer.join().unwrap() && echoed
    })
}

/// 20 clients each send one whole 1 MiB frame at once under a 1 MiB
/// budget (20 MiB in flight): every frame comes back, and the server never
/// held more than the budget, plus one frame for the overdraft, plus what
/// the visit that crossed the budget added (up to half a frame when a
/// partial frame's buffer doubled), plus the small top-ups the budget
/// allows every client. Before the overdraft, 0 to 4 came back and the
/// rest waited for `--idle-timeout`.
#[test]
fn frames_bigger_than_the_budget_together_are_all_echoed() {
    const CLIENTS: usize = 20;
    let server = framed_server();
    let clients = echo_clients(&server, (0..CLIENTS).map(|i| frame(MIB, i as u8)).collect());
    for (i, c) in clients.into_iter().enumerate() {
        assert!(c.join().unwrap(), "client {i}: its frame did not come back");
    }
    let end = server.wait_stats("every connection closed", |s| s.memory_held == 0);
    eprintln!(
        "held at most {} bytes, overdrafts {}, pauses {}",
        end.memory_held_max, end.memory_overdrafts, end.memory_pauses
    );
    assert!(end.memory_overdrafts > 0, "{end:?}");
    assert_eq!(end.overdraft_expiries, 0);
    assert_eq!(end.partial_frames, 0);
    let bound = MIB + (4 + MIB) + (MIB / 2 + 128 * 1024) + CLIENTS * 2 * SMALL;
    assert!(
        end.memory_held_max <= bound as u64,
        "held {} > {bound}",
        end.memory_held_max
    );
}

/// Holders that stall with the overdraft do not keep the others from
/// finishing, and one that read any of its frame with it loses that frame.
/// F sends all but the last two bytes of a 1 MiB frame: it fills the
/// budget alone; one more byte, arriving over the budget, pauses it, and it
/// never finishes. S sends 8 KiB of a 1 MiB frame and stops. Eight clients
/// then each send a whole 256 KiB frame. F's turn comes first: it reads its
/// byte (no more memory: its buffer had room) and stalls, so after the
/// stall time its frame is dropped and it gets a FIN. That gives back its
/// megabyte, and everyone reads again: the eight finish, S keeps its
/// connection. Before, F kept the budget engaged and no frame came back;
/// and until F's byte counted as a use, F just waited again at the back
/// (a client could hold the overdraft for the stall time, turn after turn,
/// a byte each, and never lose anything).
#[test]
fn holders_that_stall_with_the_overdraft_do_not_block_the_others() {
    let server = framed_server();
    let mut f = connect(server.tcp);
    let f_frame = frame(MIB, 1);
    let (most, last_but_one) = f_frame.split_at(f_frame.len() - 2);
    let mut fw = f.try_clone().unwrap();
    let most = most.to_vec();
    let f_writer = thread::spawn(move || fw.write_all(&most).unwrap());
    server.wait_stats("F filled the budget", |s| s.memory_held > MIB as u64);
    f_writer.join().unwrap();
    f.write_all(&last_but_one[..1]).unwrap();
    // Paused, F waits first for the overdraft.
    server.wait_stats("F paused", |s| s.memory_pauses >= 1);
    let pauses = server.stats().memory_pauses;
    let mut s = connect(server.tcp);
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    s.write_all(&frame(MIB, 2)[..4 + 8 * 1024]).unwrap();
    server.wait_stats("S paused", |st| st.memory_pauses > pauses);
    let others = echo_clients(&server, (0..8).map(|i| frame(256 * 1024, 10 + i)).collect());
    for (i, c) in others.into_iter().enumerate() {
        assert!(c.join().unwrap(), "client {i}: its frame did not come back");
    }
    // F: its frame dropped, a FIN (no reply, no reset).
    let mut b = [0u8; 1];
    f.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    assert_eq!(f.read(&mut b).unwrap(), 0, "F was answered");
    let st = server.wait_stats("F's frame counted", |st| st.partial_frames >= 1);
    eprintln!("{st:?}");
    assert!(st.overdraft_expiries >= 1, "{st:?}");
    // S neither answered nor closed: its frame is still unfinished.
    s.set_nonblocking(true).unwrap();
    match s.read(&mut b) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("S was answered or closed: {other:?}"),
    }
}

/// Paused holders with nothing left to read are passed over for the
/// overdraft: they could not use it, only hold it for the stall time. F
/// fills the budget with most of a 1 MiB frame; ten clients each send
/// exactly the 4 KiB of a 1 MiB frame a client may read over the budget,
/// and stop, so each is paused with nothing in the kernel; then an honest
/// client sends a 256 KiB frame. It comes back at once. Before, each of
/// the ten held the overdraft for the 2 s stall time in turn (and then
/// waited again at the back), so the frame took over 20 s; 20 such clients
/// made it 41 s, at no cost to them but 4 KiB each.
#[test]
fn holders_with_nothing_to_read_do_not_hold_the_overdraft() {
    const IDLE: usize = 10;
    let server = framed_server();
    let f = connect(server.tcp);
    let f_frame = frame(MIB, 1);
    let mut fw = f.try_clone().unwrap();
    let most = f_frame[..f_frame.len() - 2].to_vec();
    let f_writer = thread::spawn(move || fw.write_all(&most).unwrap());
    server.wait_stats("F filled the budget", |s| s.memory_held > MIB as u64);
    f_writer.join().unwrap();
    let pauses = server.stats().memory_pauses;
    let idle: Vec<_> = (0..IDLE)
        .map(|i| {
            let mut c = connect(server.tcp);
            c.write_all(&frame(MIB, 20 + i as u8)[..SMALL]).unwrap();
            c
        })
        .collect();
    server.wait_stats("the idle holders paused", |s| {
        s.memory_pauses >= pauses + IDLE as u64
    });
    let started = std::time::Instant::now();
    let honest = echo_clients(&server, vec![frame(256 * 1024, 7)]);
    let echoed = honest.into_iter().all(|c| c.join().unwrap());
    let took = started.elapsed();
    eprintln!("honest frame echoed={echoed} after {took:?}");
    assert!(echoed, "the honest frame did not come back");
    // Half of what the ten stall times would take at the least: room for
    // a loaded machine, none for the old behaviour.
    assert!(
        took < Duration::from_secs(IDLE as u64),
        "the honest frame waited {took:?}"
    );
    drop((f, idle));
}
