//! Input known to end before what the handler holds can complete
//! (`conn/ending.rs`): a framed connection the memory budget paused
//! mid-frame, on the scripted socket.

use super::*;

/// A framed connection holding the first 50 bytes of a frame that
/// announced 1000, paused by the memory budget.
fn paused_mid_frame(env: &mut Env) -> Conn<ScriptedIo> {
    let mut frame = 1000u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[5; 46]);
    let io = ScriptedIo::new(vec![Some(1 << 20); 10]).with_reads(vec![ReadStep::Data(frame)]);
    let proto = Box::new(crate::protocol::framed::Framed::new(1 << 20));
    let mut c = Conn::new(io, 1, proto, &mut env.ctx(1024));
    c.on_readable(&mut env.ctx(1024));
    assert!(c.held() >= 50, "the partial frame is held");
    assert!(c.set_memory_paused(true));
    c
}

/// Its FIN arrives behind 100 more bytes, 854 short of the frame: the
/// frame can never complete. Dropped and counted at once, the rest read
/// and dropped (paused or not: it costs no memory), FIN, closed.
#[test]
fn a_paused_frame_whose_fin_comes_too_soon_is_dropped() {
    let mut env = Env::new(1024);
    let mut c = paused_mid_frame(&mut env);
    let fins = FIN.with(Cell::get);
    c.socket.reads = vec![ReadStep::Data(vec![6; 100]), ReadStep::Eof].into();
    c.note_read_closed();
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.held(), 0);
    assert_eq!(env.stats.snapshot().partial_frames, 1);
    assert!(c.socket.written.is_empty(), "nothing echoed");
    assert!(c.socket.reads.is_empty(), "read to the EOF");
    assert_eq!(FIN.with(Cell::get), fins + 1);
    assert_eq!(c.close_reason(), Some(CloseReason::Done));
}

/// Behind its FIN are exactly the 954 bytes that complete the frame: kept,
/// paused, until the budget lets it read; then the frame is echoed whole.
#[test]
fn a_paused_frame_its_queued_input_completes_is_kept() {
    let mut env = Env::new(1024);
    let mut c = paused_mid_frame(&mut env);
    c.socket.reads = vec![ReadStep::Data(vec![6; 954]), ReadStep::Eof].into();
    c.note_read_closed();
    let held = c.held();
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.held(), held);
    assert_eq!(env.stats.snapshot().partial_frames, 0);
    assert_eq!(c.close_reason(), None);
    assert!(c.set_memory_paused(false));
    c.on_readable(&mut env.ctx(1 << 20));
    assert_eq!(c.socket.written.len(), 1004);
    assert_eq!(c.close_reason(), Some(CloseReason::Done));
}

/// Without a FIN the client may still finish its frame: a slow client, kept
/// paused (however little the kernel holds for it now).
#[test]
fn a_paused_frame_without_a_fin_is_kept() {
    let mut env = Env::new(64);
    let mut c = paused_mid_frame(&mut env);
    c.socket.reads = vec![ReadStep::Data(vec![6; 10])].into();
    c.on_readable(&mut env.ctx(1024));
    assert!(c.held() >= 50);
    assert_eq!(c.socket.read_calls, 1, "not read while paused");
    assert_eq!(c.close_reason(), None);
}

/// Shutdown takes only the 10 bytes the kernel holds: not enough for the
/// frame, so it is dropped at once rather than waiting for a read the
/// budget would not allow; the held bytes are read and dropped, FIN, done.
#[test]
fn shutdown_drops_a_frame_its_held_input_cannot_complete() {
    let mut env = Env::new(64);
    let mut c = paused_mid_frame(&mut env);
    c.socket.reads = vec![ReadStep::Data(vec![6; 10])].into();
    let fins = FIN.with(Cell::get);
    assert_eq!(c.begin_shutdown(&mut env.ctx(1024)), Ready::READ);
    assert_eq!(c.held(), 0);
    assert_eq!(env.stats.snapshot().partial_frames, 1);
    c.on_readable(&mut env.ctx(1024));
    assert!(c.socket.reads.is_empty(), "held input read and dropped");
    assert_eq!(FIN.with(Cell::get), fins + 1);
    assert!(c.shutdown_done());
}

/// Shutdown began with no frame started, and the 10 bytes held then
/// start one: once they are read the input is over, and the frame they
/// left short is dropped and counted then, not kept until the close.
#[test]
fn a_frame_left_short_when_the_held_input_runs_out_is_dropped() {
    let mut env = Env::new(64);
    let mut start = 1000u32.to_be_bytes().to_vec();
    start.extend_from_slice(&[5; 6]);
    let io = ScriptedIo::new(vec![Some(1 << 20); 10]).with_reads(vec![ReadStep::Data(start)]);
    let proto = Box::new(crate::protocol::framed::Framed::new(1 << 20));
    let mut c = Conn::new(io, 1, proto, &mut env.ctx(1024));
    assert_eq!(c.begin_shutdown(&mut env.ctx(1024)), Ready::READ);
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.held(), 0);
    assert_eq!(env.stats.snapshot().partial_frames, 1);
    assert!(c.shutdown_done());
}

/// A reset is not the end of the input: the connection closes as reset,
/// and its frame is not counted as one the input ended before.
#[test]
fn a_paused_frame_whose_peer_resets_is_not_counted() {
    let mut env = Env::new(1024);
    let mut c = paused_mid_frame(&mut env);
    c.socket.reads = vec![ReadStep::Error(io::ErrorKind::ConnectionReset)].into();
    c.socket.pending_error = Some(io::ErrorKind::ConnectionReset);
    c.note_read_closed();
    c.on_readable(&mut env.ctx(1024));
    assert_eq!(c.close_reason(), Some(CloseReason::Reset));
    assert_eq!(env.stats.snapshot().partial_frames, 0);
}
