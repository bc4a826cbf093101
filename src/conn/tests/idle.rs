//! The idle rule ("idle = no bytes moved either way"), the linger time our
//! FIN starts, and the timer entries a connection asks for: on the scripted
//! socket, with the clock moved by hand.

use super::*;

fn chat_conn(io: ScriptedIo, env: &mut Env) -> Conn<ScriptedIo> {
    let proto = Box::new(crate::protocol::chat::Chat::new(
        "127.0.0.1:9".parse().unwrap(),
        64,
    ));
    Conn::new(io, 1, proto, &mut env.ctx(1024))
}

/// When the idle timer would close `c`.
fn idle_deadline(c: &Conn<ScriptedIo>, idle: Duration) -> Instant {
    let (at, reason) = c.deadline(Some(idle)).unwrap();
    assert_eq!(reason, CloseReason::Idle);
    at
}

/// The idle rule: a chat member that only listens is not idle while the
/// room's lines flow to it, since bytes move (our writes), though it never
/// sends a byte nor gets a WRITABLE event.
#[test]
fn a_listen_only_member_receiving_lines_is_not_idle() {
    let idle = Duration::from_secs(10);
    let mut env = Env::new(64);
    let start = env.now;
    let mut c = chat_conn(ScriptedIo::new(vec![Some(1000); 100]), &mut env);
    let line: Rc<[u8]> = Rc::from(&b"10.0.0.2:7: hi\n"[..]);
    for second in 1..=30 {
        env.now = start + Duration::from_secs(second);
        c.deliver(&line, &mut env.ctx(1024));
        assert!(idle_deadline(&c, idle) > env.now, "closed at {second} s");
    }
    assert_eq!(c.socket.written.len(), 30 * line.len());
    assert_eq!(idle_deadline(&c, idle), env.now + idle);
}

/// The idle rule: a member that neither sends nor receives is idle after
/// the timeout, whatever readiness events it gets; a spurious WRITABLE
/// (nothing queued) moves no bytes and keeps no one alive. Nor does a
/// delivery the socket does not take.
#[test]
fn a_silent_member_is_idle_spurious_writable_or_not() {
    let idle = Duration::from_secs(10);
    let mut env = Env::new(64);
    let start = env.now;
    let mut c = chat_conn(ScriptedIo::new(vec![Some(1000); 100]), &mut env);
    for second in 1..=9 {
        env.now = start + Duration::from_secs(second);
        c.on_writable(&mut env.ctx(1024));
        assert_eq!(idle_deadline(&c, idle), start + idle);
    }
    // A line for it that the (full) socket does not take is not activity.
    c.socket.writes.clear();
    let line: Rc<[u8]> = Rc::from(&b"10.0.0.2:7: hi\n"[..]);
    c.deliver(&line, &mut env.ctx(1024));
    assert_eq!(c.pending_bytes(), line.len());
    assert_eq!(idle_deadline(&c, idle), start + idle);
    // Its WRITABLE, when the socket takes the line at last, is.
    env.now = start + Duration::from_secs(9);
    c.socket.writes = vec![Some(1000)].into();
    c.on_writable(&mut env.ctx(1024));
    assert_eq!(c.pending_bytes(), 0);
    assert_eq!(idle_deadline(&c, idle), env.now + idle);
}

/// Both directions count for echo too: a read, and a queued reply going out
/// later on WRITABLE, each restart the idle time.
#[test]
fn reads_and_drained_replies_both_restart_the_idle_time() {
    let idle = Duration::from_secs(10);
    let mut env = Env::new(64);
    let start = env.now;
    let io = ScriptedIo::new(vec![None])
        .with_reads(vec![ReadStep::Data(b"ping".to_vec()), ReadStep::WouldBlock]);
    let mut c = echo_conn(io, &mut env, 1024);
    env.now = start + Duration::from_secs(3);
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.pending_bytes(), 4, "the reply waits for WRITABLE");
    assert_eq!(idle_deadline(&c, idle), env.now + idle);
    env.now = start + Duration::from_secs(8);
    c.socket.writes = vec![Some(1000)].into();
    c.on_writable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"ping");
    assert_eq!(idle_deadline(&c, idle), env.now + idle);
}

/// A timer entry is asked for only when the deadline moves earlier: at
/// open, and when our FIN starts the linger time; never for activity,
/// which only moves it later.
#[test]
fn a_new_timer_entry_only_when_the_deadline_moves_earlier() {
    let idle = Some(Duration::from_secs(10));
    let mut env = Env::new(64);
    let start = env.now;
    let io = ScriptedIo::new(vec![Some(100); 4])
        .with_reads(vec![ReadStep::Data(b"hi".to_vec()), ReadStep::Eof]);
    let mut c = echo_conn(io, &mut env, 1024);
    assert_eq!(
        c.take_new_deadline(idle),
        Some(start + Duration::from_secs(10))
    );
    assert_eq!(c.take_new_deadline(idle), None, "taken once");
    env.now = start + Duration::from_secs(1);
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.socket.written, b"hi");
    assert_eq!(c.close_reason(), None);
    assert_eq!(c.take_new_deadline(idle), None, "activity: no new entry");
    // The peer's EOF: everything owed is out, so FIN goes, and lingering
    // ends earlier than the idle deadline did.
    env.now = start + Duration::from_secs(2);
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.close_reason(), Some(CloseReason::Done));
    assert_eq!(c.take_new_deadline(idle), Some(env.now + LINGER));
}

/// Times are kept to the millisecond, rounded up (`Stamp`): activity at a
/// sub-millisecond instant gives an idle deadline at or after that instant
/// plus the timeout, never before (no connection closes early), and less
/// than a millisecond after.
#[test]
fn the_idle_deadline_is_never_early() {
    let idle = Duration::from_secs(10);
    let mut env = Env::new(64);
    let io = ScriptedIo::new(vec![Some(100)]).with_reads(vec![ReadStep::Data(b"x".to_vec())]);
    let mut c = echo_conn(io, &mut env, 1024);
    env.now += Duration::from_micros(1300);
    c.on_readable(&mut env.ctx(1024));
    let at = idle_deadline(&c, idle);
    assert!(at >= env.now + idle, "early by {:?}", env.now + idle - at);
    assert!(at < env.now + idle + Duration::from_millis(1));
}

/// Our FIN starts the linger time, and it shares the activity stamp: input
/// the peer still sends afterwards (read and dropped) must not extend it.
#[test]
fn the_linger_time_counts_from_our_fin_whatever_arrives_after() {
    let timeout = Duration::from_secs(300);
    let idle = Some(timeout);
    let mut env = Env::new(64);
    let start = env.now;
    // A frame longer than `--max-frame`: an error frame, then we close.
    let io = ScriptedIo::new(vec![Some(1000); 10])
        .with_reads(vec![ReadStep::Data(u32::MAX.to_be_bytes().to_vec())]);
    let mut c = framed_conn(io, &mut env);
    assert_eq!(c.take_new_deadline(idle), Some(start + timeout));
    env.now = start + Duration::from_secs(1);
    c.on_readable(&mut env.ctx(1024));
    assert!(!c.socket.written.is_empty(), "the error frame went out");
    assert_eq!(c.close_reason(), None, "lingers for the peer's EOF");
    let fin = env.now;
    assert_eq!(c.take_new_deadline(idle), Some(fin + LINGER));
    env.now = fin + Duration::from_secs(1);
    c.socket.reads.push_back(ReadStep::Data(b"more".to_vec()));
    c.on_readable(&mut env.ctx(1024));
    assert!(c.socket.reads.is_empty(), "read and dropped");
    assert_eq!(c.deadline(idle), Some((fin + LINGER, CloseReason::Timeout)));
    assert_eq!(c.take_new_deadline(idle), None);
}
