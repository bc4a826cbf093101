//! `echo`: every byte back, in order, exactly once.
//!
//! The bytes are still in the reactor's scratch buffer; sending them from there
//! means the common case copies nothing: one `read`, one `write`.

use super::{Flow, Handler};
use crate::output::Output;

/// The echo handler. It keeps no state: a zero-sized type, so the
/// connection's `Box<dyn Handler>` for it allocates nothing.
#[derive(Debug)]
pub struct Echo;

impl Handler for Echo {
    /// Sends `data` straight back.
    fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        out.send(data);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;

    #[test]
    fn echoes_bytes_unchanged() {
        let mut h = Harness::new();
        let mut data = *b"Hello\0\xff";
        assert_eq!(h.with(|out| Echo.on_data(&mut data, out)), Flow::Continue);
        assert_eq!(h.io.written, b"Hello\0\xff");
    }
}
