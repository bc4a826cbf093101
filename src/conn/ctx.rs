//! [`Ctx`]: what a connection borrows from the reactor for one visit.

use std::time::Instant;

use crate::budget::TurnBudget;
use crate::protocol::Outbox;
use crate::stats::Counters;

/// What a connection needs from the reactor for one visit.
pub struct Ctx<'a> {
    /// The reactor-wide read buffer; its contents are garbage between calls.
    pub scratch: &'a mut [u8],
    /// Chat messages for every other connection, delivered after the call.
    pub room: &'a mut Outbox,
    pub stats: &'a Counters,
    /// What is left of this turn's work budget; every byte moved spends it.
    pub budget: &'a mut TurnBudget,
    /// The time at the top of this loop iteration (one clock read per batch).
    pub now: Instant,
    /// High-water mark: pending output at or past it pauses reading.
    pub max_pending: usize,
    /// Low-water mark: pending output at or below it resumes reading.
    pub low_water: usize,
    /// Bytes this visit may read: the memory budget's allowance
    /// (`usize::MAX` while the server is under it).
    pub read_allowance: usize,
    /// Do not send FIN yet (shutting down while the chat room still has
    /// lines on their way to us).
    pub hold_fin: bool,
}
