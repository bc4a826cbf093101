//! What a run's buffers will cost ([`run_bytes`]), checked by validation before anything
//! starts, and the one sizing decision it depends on that the clients share: how many
//! messages a TCP send buffer holds ([`send_batch`]).

use crate::config::RunConfig;
use crate::payload::{self, SCRATCH_LEN};
use crate::schedule::Schedule;
use crate::send::window_capacity;
use crate::udp_batch::UdpBatch;
use crate::verify::Window;

/// Open loop: a TCP connection's send buffer holds about this many bytes of due messages.
pub(crate) const OPEN_LOOP_BATCH: usize = 256 * 1024;

/// Per connection, beyond its buffers: its client struct and slot in the thread's table,
/// rounded up.
const CONNECTION_OVERHEAD: u64 = 256;

/// Messages a TCP send buffer holds (its fixed capacity): closed loop `--pipeline`, open
/// loop [`OPEN_LOOP_BATCH`] bytes' worth, at most what a window of `slots` tracks.
pub(crate) fn send_batch(cfg: &RunConfig, wire: usize, slots: usize) -> usize {
    match cfg.rate {
        None => cfg.pipeline,
        Some(_) => (OPEN_LOOP_BATCH / wire).clamp(1, slots),
    }
}

/// About how many bytes the run allocates, all connections open: per thread the scratch
/// buffer and the codec's pattern; per connection its window, its send buffer
/// ([`send_batch`]) and a partial echo. Saturates.
pub(crate) fn run_bytes(cfg: &RunConfig) -> u64 {
    let wire = payload::wire_len(cfg.size, cfg.framed) as u64;
    let schedule = cfg.rate.map(|r| Schedule::new(r, cfg.connections));
    let capacity = window_capacity(cfg, schedule);
    let window = Window::bytes_for(capacity) as u64;
    let slots = Window::slots_for(capacity);
    let out = (send_batch(cfg, wire as usize, slots) as u64).saturating_mul(wire);
    let per_conn = CONNECTION_OVERHEAD + window + out.saturating_add(wire);
    let per_thread = (SCRATCH_LEN + cfg.size) as u64 + UdpBatch::bytes_for(cfg);
    (cfg.connections as u64)
        .saturating_mul(per_conn)
        .saturating_add((cfg.threads as u64).saturating_mul(per_thread))
}
