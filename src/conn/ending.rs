//! Input known to end too soon: what the handler holds can never complete.
//!
//! Sometimes we know how much input a connection will still hand its
//! handler without reading it: once the peer's FIN is queued, the kernel
//! holds all the peer will ever send (`queued_input` counts it), and at
//! shutdown we take only what the kernel held then (`Input::Held`). If the
//! handler needs more than that to turn what it holds into a reply (the
//! rest of a frame, `Handler::unfinished`), those bytes are dead: framed
//! would drop them at EOF anyway.
//!
//! Why not just read on to the EOF, as an unpaused connection does: the
//! memory budget stops reading the biggest holders until the total falls
//! (`memory.rs`). A paused client that sent part of a frame and then its
//! FIN kept those bytes, and the budget engaged for everyone, until the
//! idle timeout; a shutdown waited its whole drain timeout for input the
//! budget never let it read. Bytes *owed* to the peer (echo's replies) are
//! another matter: they wait for the peer to read them, paused or not.
//!
//! The same ending serves a holder whose overdraft past the budget ran out
//! mid-frame (`abandon_unfinished`): the input may go on, but the frame it
//! holds will not be finished in time, and its bytes must be given back.

use std::io::Read;

use log::debug;

use super::flags::Flag;
use super::input::Input;
use super::{Conn, Ctx, StreamSocket};
use crate::output::sink::Sink;

impl<S: Read + Sink + StreamSocket> Conn<S> {
    /// At most `left` more bytes will reach the handler. If it needs more
    /// than that to complete what it holds, that is dropped as at EOF
    /// (framed counts it in `partial_frames`), and the rest of the input,
    /// all of it part of the same dead frame, is read and dropped: no
    /// memory, so the budget lets it be read. Then the connection ends as
    /// after an EOF: it flushes what it owes, sends FIN, and closes.
    pub(super) fn end_input_short(&mut self, left: usize, ctx: &mut Ctx<'_>) {
        let needed = self.handler.unfinished();
        // After an EOF, `on_eof` has run already; a connection closing for
        // another reason (a reset) is gone, and its frame with it.
        if needed == 0 || needed <= left || self.input == Input::Eof || self.close.is_some() {
            return;
        }
        debug!(
            "input ends short id={} peer={} needed={needed} left={left} held={}",
            self.id,
            self.peer(),
            self.handler.held()
        );
        self.run_handler(ctx, |p, _, out| (p.on_eof(out), ()));
        self.input.close();
    }

    /// The memory budget's overdraft ran out before this connection
    /// finished the frame it was for (`memory.rs`): what the handler holds
    /// unfinished is dropped as if the input ended here, the rest of the
    /// input is read and dropped, and the connection ends as after an EOF
    /// (it flushes what it owes, sends FIN, and closes).
    pub fn abandon_unfinished(&mut self, ctx: &mut Ctx<'_>) {
        self.end_input_short(0, ctx);
        self.progress(ctx);
    }

    /// While the memory budget keeps this connection from reading: if the
    /// input still to come is known (the peer's FIN is queued, or shutdown
    /// holds only what the kernel had), applies `end_input_short` to it.
    /// Called on the visits a paused connection still gets: an event (its
    /// FIN raises one) or a requeued read.
    pub(super) fn end_paused_input(&mut self, ctx: &mut Ctx<'_>) {
        // Most paused connections hold nothing unfinished (echo's replies),
        // and one closing already is not read again: no syscall for them.
        if self.handler.unfinished() == 0 || self.close.is_some() {
            return;
        }
        let left = match self.input {
            Input::Held { left } => Some(left as usize),
            Input::Open if self.flags.has(Flag::FinQueued) => self.socket.queued_input(),
            _ => None,
        };
        if let Some(left) = left {
            self.end_input_short(left, ctx);
        }
    }
}
