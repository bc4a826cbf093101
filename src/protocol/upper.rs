//! `upper`: the tutorial's `conn.send(data.upper())`, byte-exact.
//!
//! Only ASCII `a`..=`z` change. Every other byte, UTF-8 continuation bytes
//! included, passes through, so multi-byte characters survive any split
//! across reads and the transform needs no state between reads.

use super::{Flow, Handler};
use crate::output::Output;

/// Upper-cases ASCII letters in place.
pub fn transform(data: &mut [u8]) {
    data.make_ascii_uppercase();
}

/// The upper handler; stateless and zero-sized, like echo.
#[derive(Debug)]
pub struct Upper;

impl Handler for Upper {
    /// Sends `data` back upper-cased.
    fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        transform(data);
        out.send(data);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;

    #[test]
    fn upper_cases_ascii_only() {
        let mut h = Harness::new();
        let mut data = "hello, wörld! ß z{".as_bytes().to_vec();
        let _ = h.with(|out| Upper.on_data(&mut data, out));
        assert_eq!(h.io.written, "HELLO, WöRLD! ß Z{".as_bytes());
    }
}
