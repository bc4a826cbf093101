//! The [`Client`] trait the TCP and UDP clients implement, and what a handler tells the
//! reactor ([`Flow`], [`Closed`]).

use std::io;
use std::net::IpAddr;

use mio::event::{Event, Source};

use crate::ctx::Ctx;
use crate::error::ConnectFailure;
use crate::send::SendState;

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Closed {
    /// It never got established.
    ConnectFailed(ConnectFailure),
    /// It broke after being established: the peer closed or reset it.
    Broken(String),
    /// The server closed it after the measured time with nothing owed: not an error.
    Finished,
    /// `--reconnect-after`: it sent its messages and got every echo; open a new one.
    Reconnect,
}

/// What a handler tells the reactor.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Keep going.
    Continue,
    /// Close it (after the event batch).
    Close(Closed),
}

/// One TCP connection or UDP socket, driven by the thread's reactor.
pub(crate) trait Client: Sized {
    /// Starts connecting connection `id` (non-blocking), from `source` if given. `resume`:
    /// open loop, the schedule index where its previous connection stopped (0 at first).
    fn open(id: u32, source: Option<IpAddr>, resume: u64, ctx: &mut Ctx) -> io::Result<Self>;
    /// The socket, for registration.
    fn source(&mut self) -> &mut dyn Source;
    /// Readiness: finish connecting, read and verify everything, then send.
    fn on_event(&mut self, ev: &Event, ctx: &mut Ctx) -> Flow;
    /// Sends whatever the policy allows now, in one write where the transport allows.
    fn pump(&mut self, ctx: &mut Ctx) -> Flow;
    /// When [`Client::on_deadline`] must run next, ns since the epoch: a connect timeout,
    /// a UDP datagram's loss timeout. `None`: nothing pending.
    fn deadline(&self, ctx: &Ctx) -> Option<u64>;
    /// A deadline passed (or maybe not: the caller may be early; check the clock).
    fn on_deadline(&mut self, ctx: &mut Ctx) -> Flow;
    /// The connection ends: count whatever is still owed.
    fn finish(&mut self, ctx: &mut Ctx);
    /// Whether it is established (UDP: from the start).
    fn is_up(&self) -> bool;
    /// Messages sent and not yet resolved.
    fn outstanding(&self) -> usize;
    /// The send policy state.
    fn sender(&mut self) -> &mut SendState;
}
