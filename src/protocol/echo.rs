//! `echo`: every byte back, in order, exactly once.
//!
//! The bytes are still in the reactor's scratch buffer; sending them from there
//! means the common case copies nothing: one `read`, one `write`.

use super::{Flow, Output};

/// Sends `data` straight back.
pub fn on_data(data: &mut [u8], out: &mut Output<'_>) -> Flow {
    out.send(data);
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;

    #[test]
    fn echoes_bytes_unchanged() {
        let mut h = Harness::new();
        let mut data = *b"Hello\0\xff";
        assert_eq!(h.with(|out| on_data(&mut data, out)), Flow::Continue);
        assert_eq!(h.io.written, b"Hello\0\xff");
    }
}
