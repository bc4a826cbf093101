//! Test doubles shared by the unit tests: a scripted `Read + Write` peer that
//! returns short writes, `WouldBlock` and errors on cue, so connection and
//! buffer logic is tested without sockets or timing.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

/// One step a [`ScriptedIo`] plays back on `read`.
#[derive(Debug, Clone)]
pub enum ReadStep {
    Data(Vec<u8>),
    WouldBlock,
    Interrupted,
    Eof,
    Error(io::ErrorKind),
}

/// A fake socket. Each `write` takes the next entry of `writes`: `Some(n)`
/// accepts at most `n` bytes, `None` is `WouldBlock`; an exhausted script is
/// `WouldBlock` (a peer that stopped reading). Each `read` plays the next
/// [`ReadStep`]; an exhausted script is `WouldBlock`.
#[derive(Debug, Default)]
pub struct ScriptedIo {
    pub writes: VecDeque<Option<usize>>,
    pub reads: VecDeque<ReadStep>,
    pub written: Vec<u8>,
    pub write_calls: usize,
    pub read_calls: usize,
    /// What `take_error` (SO_ERROR) reports, e.g. a reset seen while
    /// not reading.
    pub pending_error: Option<io::ErrorKind>,
    fail_writes: Option<io::ErrorKind>,
}

impl ScriptedIo {
    pub fn new(writes: Vec<Option<usize>>) -> ScriptedIo {
        ScriptedIo {
            writes: writes.into(),
            ..ScriptedIo::default()
        }
    }

    /// Every write fails with `kind` (e.g. a peer that reset).
    pub fn failing(mut self, kind: io::ErrorKind) -> ScriptedIo {
        self.fail_writes = Some(kind);
        self
    }

    pub fn with_reads(mut self, reads: Vec<ReadStep>) -> ScriptedIo {
        self.reads = reads.into();
        self
    }
}

/// No zero-copy path: handlers copy, as on platforms without `sendfile`.
impl crate::output::sink::Sink for ScriptedIo {}

impl Write for ScriptedIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_calls += 1;
        if let Some(kind) = self.fail_writes {
            return Err(kind.into());
        }
        match self.writes.pop_front() {
            Some(Some(limit)) => {
                let n = limit.min(buf.len());
                self.written.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Flatten, then behave like one write: enough to exercise partial
        // progress across chunk boundaries.
        let flat: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.write(&flat)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ScriptedIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_calls += 1;
        match self.reads.pop_front() {
            Some(ReadStep::Data(mut d)) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                if n < d.len() {
                    // The rest stays queued for the next read.
                    self.reads.push_front(ReadStep::Data(d.split_off(n)));
                }
                Ok(n)
            }
            Some(ReadStep::Eof) => Ok(0),
            Some(ReadStep::Interrupted) => Err(io::ErrorKind::Interrupted.into()),
            Some(ReadStep::Error(kind)) => Err(kind.into()),
            Some(ReadStep::WouldBlock) | None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}
