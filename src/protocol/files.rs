//! `files`: file download from `--root`.
//! PLACEHOLDER: being implemented (see issue 4).

use std::path::Path;
use std::rc::Rc;

use super::{Flow, Output};

#[derive(Debug)]
pub struct Files {
    root: Rc<Path>,
    max_line: usize,
}

impl Files {
    pub fn new(root: Rc<Path>, max_line: usize) -> Files {
        Files { root, max_line }
    }

    pub fn on_data(&mut self, _data: &mut [u8], _out: &mut Output<'_>) -> Flow {
        let _ = (&self.root, self.max_line);
        Flow::Close
    }

    pub fn on_drained(&mut self, _scratch: &mut [u8], _out: &mut Output<'_>) -> Flow {
        Flow::Continue
    }

    pub fn wants_input(&self) -> bool {
        true
    }

    pub fn has_more_output(&self) -> bool {
        false
    }
}
