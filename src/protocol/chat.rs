//! `chat`: newline-delimited lines broadcast to every other client.
//! PLACEHOLDER: being implemented (see issue 4).

use std::net::SocketAddr;
use std::rc::Rc;

use super::{Flow, Output};

#[derive(Debug)]
pub struct Chat {
    peer: SocketAddr,
    max_line: usize,
}

impl Chat {
    pub fn new(peer: SocketAddr, max_line: usize) -> Chat {
        Chat { peer, max_line }
    }

    pub fn on_open(&mut self, _out: &mut Output<'_>) -> Flow {
        Flow::Continue
    }

    pub fn on_data(&mut self, _data: &mut [u8], _out: &mut Output<'_>) -> Flow {
        let _ = (self.peer, self.max_line);
        Flow::Continue
    }

    pub fn on_close(&mut self) -> Option<Rc<[u8]>> {
        None
    }
}
