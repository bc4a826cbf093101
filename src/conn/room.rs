//! A connection as a member of the chat room: receiving the room's
//! messages (`reactor/room.rs` hands them out), and being woken when its own
//! last message reached everyone.

use std::io::Read;
use std::rc::Rc;

use log::debug;

use super::flags::Flag;
use super::visit::MAX_FLUSH_PER_VISIT;
use super::{CloseReason, Conn, Ctx, StreamSocket};
use crate::output::sink::Sink;
use crate::protocol::Flow;
use crate::ready::Ready;
use crate::stats;

impl<S: Read + Sink + StreamSocket> Conn<S> {
    /// Hands this member a chat message from the room without copying it,
    /// and sends what the socket takes now (one `writev` for a backlog of
    /// them). A member whose unread output exceeds the high-water mark (`> max_pending`) is
    /// dropped: one slow reader must not stall the room or grow without
    /// bound. Returns the readiness left, as `on_readable` does: the flush
    /// may release backpressure (and bytes that arrived meanwhile raised
    /// their edge long ago), or stop at its share with more to send.
    pub fn deliver(&mut self, msg: &Rc<[u8]>, ctx: &mut Ctx<'_>) -> Ready {
        if self.close.is_some() || self.flags.has(Flag::FinSent) {
            return Ready::default();
        }
        let could_read = self.can_read();
        let more = self.run_handler(ctx, |_, _, out| {
            out.queue_shared(Rc::clone(msg));
            (Flow::Continue, out.flush(MAX_FLUSH_PER_VISIT))
        });
        if self.close.is_none() && self.out.len() > ctx.max_pending {
            debug!(
                "slow consumer id={} peer={} pending={}",
                self.id,
                self.peer(),
                self.out.len()
            );
            stats::add(&ctx.stats.slow_consumers, 1);
            self.close = Some(CloseReason::SlowConsumer);
        }
        // The flush may also have sent the last bytes owed after the peer's
        // EOF: `progress` sends our FIN and closes, as WRITABLE would have.
        self.progress(ctx);
        Ready {
            read: !could_read && self.can_read(),
            write: more && self.close.is_none(),
        }
    }

    /// The room handed this connection's last chat message to everyone: it
    /// may read again (the reactor queues it, since its edge has passed).
    pub fn on_delivered(&mut self) {
        self.handler.on_delivered();
    }
}
