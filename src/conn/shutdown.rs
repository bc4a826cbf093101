//! A connection during the graceful shutdown (`reactor/drain.rs` drives it):
//! what it still processes, and when it is done.

use std::io::Read;

use log::debug;

use super::{Conn, Ctx, Input, StreamSocket};
use crate::output::sink::Sink;
use crate::ready::Ready;

impl<S: Read + Sink + StreamSocket> Conn<S> {
    /// Graceful shutdown: stop taking *new* requests, finish what is owed,
    /// then close. Input the kernel already holds was acknowledged to the
    /// peer, which rightly counts it as sent, so it is still processed, once;
    /// what arrives after that is read and dropped (closing a socket with
    /// unread bytes sends a reset, and a reset can destroy the output we are
    /// about to flush before the peer reads it). Returns the readiness to
    /// serve: the reactor visits the connection for that reading.
    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) -> Ready {
        if self.input == Input::Open {
            // Where the platform cannot tell, nothing more is processed.
            let queued = self.socket.queued_input().unwrap_or(0);
            debug!(
                "shutdown id={} peer={} held_input={queued}",
                self.id,
                self.peer()
            );
            self.input.shutdown(queued);
            // A frame that input cannot complete is dropped now: paused by
            // the memory budget, the connection might never read that input.
            let left = match self.input {
                Input::Held { left } => left as usize,
                _ => 0,
            };
            self.end_input_short(left, ctx);
        }
        self.progress(ctx);
        Ready {
            read: self.can_read(),
            write: false,
        }
    }

    /// True when the peer has received everything we sent: nothing queued
    /// here, nothing unacknowledged in the kernel.
    pub fn fully_delivered(&self) -> bool {
        !self.has_pending() && self.socket.unacked() == 0
    }

    /// During shutdown: input held when it began is still to be processed.
    pub fn holds_input(&self) -> bool {
        matches!(self.input, Input::Held { .. })
    }

    /// During shutdown: the input held when it began was processed, and the
    /// peer has everything we owe it.
    pub fn shutdown_done(&self) -> bool {
        !matches!(self.input, Input::Held { .. }) && self.fully_delivered()
    }
}
