//! `framed`: u32 big-endian length + payload frames, each echoed whole.
//! PLACEHOLDER: being implemented (see issue 4).

use super::{Flow, Output};

#[derive(Debug)]
pub struct Framed {
    max_frame: usize,
}

impl Framed {
    pub fn new(max_frame: usize) -> Framed {
        Framed { max_frame }
    }

    pub fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        let _ = self.max_frame;
        out.send(data);
        Flow::Continue
    }

    pub fn on_eof(&mut self, _out: &mut Output<'_>) -> Flow {
        Flow::Continue
    }
}
