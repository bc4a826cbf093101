//! `count`: a mode that exists only in tests, to show (and pin) what adding
//! a mode takes: this one file and its `mod` line (a real mode adds a
//! `Mode` variant and its arm in `protocol::handler`; see `protocol/mod.rs`).
//! It implements only the hooks it needs; the rest keep their defaults, and
//! the connection runs it like any other.
//!
//! The peer sends bytes; on its EOF it gets back how many it sent, in
//! decimal, and a newline.

use super::{Flow, Handler};
use crate::output::Output;

/// Counts the bytes the peer sends.
#[derive(Debug, Default)]
pub struct Count {
    bytes: u64,
}

impl Handler for Count {
    fn on_data(&mut self, data: &mut [u8], _out: &mut Output<'_>) -> Flow {
        self.bytes += data.len() as u64;
        Flow::Continue
    }

    fn on_eof(&mut self, out: &mut Output<'_>) -> Flow {
        out.send(format!("{}\n", self.bytes).as_bytes());
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::TurnBudget;
    use crate::conn::{CloseReason, Conn, Ctx};
    use crate::protocol::Outbox;
    use crate::stats::Counters;
    use crate::testutil::{ReadStep, ScriptedIo};
    use std::time::Instant;

    /// A new mode runs through a real connection unchanged: its reads reach
    /// `on_data`, its EOF reaches `on_eof`, its answer is written, and the
    /// connection finishes as any other does.
    #[test]
    fn a_test_only_mode_runs_through_a_connection() {
        let io = ScriptedIo::new(vec![Some(100); 4]).with_reads(vec![
            ReadStep::Data(b"hello ".to_vec()),
            ReadStep::Data(b"world".to_vec()),
            ReadStep::Eof,
        ]);
        let (mut scratch, mut room, stats) = (vec![0; 64], Outbox::default(), Counters::default());
        let mut budget = TurnBudget::new();
        let mut ctx = Ctx {
            scratch: &mut scratch,
            room: &mut room,
            stats: &stats,
            budget: &mut budget,
            now: Instant::now(),
            max_pending: 1024,
            low_water: 512,
            read_allowance: usize::MAX,
            hold_fin: false,
        };
        let mut c = Conn::new(io, 1, Box::new(Count::default()), &mut ctx);
        c.note_read_closed(); // read on to the EOF past short reads
        for _ in 0..3 {
            if !c.on_readable(&mut ctx).read {
                break;
            }
        }
        assert_eq!(c.socket.written, b"11\n");
        assert_eq!(c.close_reason(), Some(CloseReason::Done));
    }
}
