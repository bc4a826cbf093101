//! `framed`: `u32` big-endian length + payload frames, each echoed whole.
//!
//! TCP is a byte stream: one `send` may arrive as many reads and many sends
//! as one read (the tutorials' "sticky packets"). A length header restores
//! message boundaries; this handler echoes a frame only once all of it has
//! arrived, however the bytes were split.
//!
//! Memory: a run of complete frames inside one read is sent straight from the
//! reactor's scratch buffer, with one `send` for the whole run. Only a frame
//! cut by the end of a read is copied into a per-connection buffer, which
//! grows only as that frame's bytes actually arrive (never to a size the
//! header merely claims) and is released once the frame is complete.
//!
//! Errors: a header announcing more than `--max-frame` payload bytes is
//! answered with one frame whose payload is the UTF-8 text
//! `error: frame length N exceeds max-frame M`, after which the server closes
//! the connection (it reads and discards further input until the peer's EOF,
//! so the reply is not lost to a reset). Frames before the bad header are
//! echoed first. Counted in `protocol_errors`.
//!
//! EOF: an incomplete frame (or header) at EOF is counted in
//! `partial_frames` and dropped, never echoed. So is one the input is known
//! to end short of (`Handler::unfinished`), as soon as that is known: a
//! client the memory budget paused mid-frame that then sends its FIN can
//! never finish the frame, and its bytes are not kept waiting for a read
//! the budget would not allow (`conn/ending.rs`).

use log::debug;

use super::lines::grow_within;
use super::{Flow, Handler};
use crate::output::Output;
use crate::stats;

/// Bytes in a frame header.
const HEADER: usize = 4;

/// A header announced a payload longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLong {
    /// The announced payload length.
    pub len: u32,
    /// The limit it exceeds.
    pub max: usize,
}

/// Splits a byte stream into frames across reads.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    /// The frame cut by the end of the last read: header bytes, then payload.
    /// Invariant: shorter than its whole frame (`HEADER + len`), its capacity
    /// at most that, and unallocated while empty.
    partial: Vec<u8>,
}

/// The announced payload length of the frame starting at `buf`.
fn frame_len(buf: &[u8]) -> u32 {
    u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame,
            partial: Vec::new(),
        }
    }

    /// True while an incomplete frame is buffered.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Bytes of memory the incomplete frame holds.
    pub fn held(&self) -> usize {
        self.partial.capacity()
    }

    /// The fewest bytes still to come before the buffered frame is
    /// complete: the rest of its header (a frame may be empty), or of its
    /// payload. 0 while none is buffered.
    pub fn missing(&self) -> usize {
        let have = self.partial.len();
        match have {
            0 => 0,
            _ if have < HEADER => HEADER - have,
            // At most `HEADER + max_frame`: the header was checked.
            _ => (HEADER + frame_len(&self.partial) as usize).saturating_sub(have),
        }
    }

    /// Drops the incomplete frame and its memory.
    pub fn clear(&mut self) {
        self.partial = Vec::new();
    }

    /// Feeds the next bytes of the stream. `emit` receives complete frames,
    /// header included, in order: either one completed buffered frame or a
    /// run of complete frames borrowed from `data`. On `Err` the frames before
    /// the bad header were emitted; do not feed again.
    pub fn feed(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) -> Result<(), FrameTooLong> {
        let mut data = data;
        if self.has_partial() {
            let used = self.fill_partial(data).inspect_err(|_| self.clear())?;
            data = &data[used..];
            if !self.partial_complete() {
                // `fill_partial` took all of `data` and still needs more.
                return Ok(());
            }
            emit(&self.partial);
            self.clear();
        }
        let (run, result) = self.complete_run(data);
        if run > 0 {
            emit(&data[..run]);
        }
        result?;
        let rest = &data[run..];
        if !rest.is_empty() {
            grow_within(&mut self.partial, rest.len(), rest.len());
            self.partial.extend_from_slice(rest);
        }
        Ok(())
    }

    /// The length of the leading complete frames of `data`, and an error if
    /// the header after them (complete or not yet) is over the limit.
    fn complete_run(&self, data: &[u8]) -> (usize, Result<(), FrameTooLong>) {
        let mut pos = 0;
        while data.len() - pos >= HEADER {
            let len = frame_len(&data[pos..]);
            if let Err(e) = self.check(len) {
                return (pos, Err(e));
            }
            let end = pos + HEADER + len as usize;
            if end > data.len() {
                break;
            }
            pos = end;
        }
        (pos, Ok(()))
    }

    /// Moves bytes of `data` into the buffered frame, up to its end; returns
    /// how many it took.
    fn fill_partial(&mut self, data: &[u8]) -> Result<usize, FrameTooLong> {
        let mut used = 0;
        if self.partial.len() < HEADER {
            used = (HEADER - self.partial.len()).min(data.len());
            grow_within(&mut self.partial, used, HEADER);
            self.partial.extend_from_slice(&data[..used]);
            if self.partial.len() < HEADER {
                return Ok(used);
            }
        }
        let len = frame_len(&self.partial);
        self.check(len)?;
        let total = HEADER + len as usize;
        let take = (total - self.partial.len()).min(data.len() - used);
        grow_within(&mut self.partial, take, total);
        self.partial.extend_from_slice(&data[used..used + take]);
        Ok(used + take)
    }

    fn partial_complete(&self) -> bool {
        self.partial.len() >= HEADER
            && self.partial.len() == HEADER + frame_len(&self.partial) as usize
    }

    fn check(&self, len: u32) -> Result<(), FrameTooLong> {
        if len as usize > self.max_frame {
            return Err(FrameTooLong {
                len,
                max: self.max_frame,
            });
        }
        Ok(())
    }
}

/// Per-connection state of the `framed` mode.
#[derive(Debug)]
pub struct Framed {
    decoder: FrameDecoder,
}

impl Framed {
    pub fn new(max_frame: usize) -> Framed {
        Framed {
            decoder: FrameDecoder::new(max_frame),
        }
    }
}

impl Handler for Framed {
    /// Echoes every frame `data` completes; refuses an oversize header.
    fn on_data(&mut self, data: &mut [u8], out: &mut Output<'_>) -> Flow {
        match self.decoder.feed(data, |frames| out.send(frames)) {
            Ok(()) => Flow::Continue,
            Err(e) => {
                // A client's mistake, not the server's: debug, not warn, so a
                // misbehaving client cannot flood the log. Counted below.
                debug!("framed: oversize frame len={} max_frame={}", e.len, e.max);
                stats::add(&out.stats.protocol_errors, 1);
                out.send(&error_frame(e));
                Flow::Close
            }
        }
    }

    /// Bytes of a partial frame held, for the memory budget.
    fn held(&self) -> usize {
        self.decoder.held()
    }

    /// The rest of the partial frame: input that ends sooner (a FIN queued
    /// behind fewer bytes) leaves it incomplete for good.
    fn unfinished(&self) -> usize {
        self.decoder.missing()
    }

    /// The peer is done sending, or will not send enough to complete the
    /// frame: an incomplete frame is counted and dropped.
    fn on_eof(&mut self, out: &mut Output<'_>) -> Flow {
        if self.decoder.has_partial() {
            debug!(
                "framed: partial frame at end of input missing={}",
                self.decoder.missing()
            );
            stats::add(&out.stats.partial_frames, 1);
            self.decoder.clear();
        }
        Flow::Continue
    }
}

/// The error reply: a frame whose payload is a line of text.
pub fn error_frame(e: FrameTooLong) -> Vec<u8> {
    let text = format!("error: frame length {} exceeds max-frame {}", e.len, e.max);
    let mut frame = Vec::with_capacity(HEADER + text.len());
    // The text is a few dozen bytes: its length always fits a u32.
    frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
    frame.extend_from_slice(text.as_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;
    use proptest::prelude::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `chunks`, returning the emitted bytes and how many emits there were.
    fn decode(
        d: &mut FrameDecoder,
        chunks: &[&[u8]],
    ) -> (Vec<u8>, usize, Result<(), FrameTooLong>) {
        let (mut out, mut emits) = (Vec::new(), 0);
        for c in chunks {
            let r = d.feed(c, |f| {
                out.extend_from_slice(f);
                emits += 1;
            });
            if r.is_err() {
                return (out, emits, r);
            }
        }
        (out, emits, Ok(()))
    }

    #[test]
    fn many_frames_in_one_read_go_out_in_one_send() {
        let stream = [frame(b"a"), frame(b""), frame(b"xyz")].concat();
        let mut d = FrameDecoder::new(16);
        let (out, emits, r) = decode(&mut d, &[&stream]);
        assert_eq!((out, emits, r), (stream, 1, Ok(())));
        assert!(!d.has_partial());
    }

    #[test]
    fn byte_at_a_time_echoes_each_frame_once_complete() {
        let stream = [frame(&[7; 300]), frame(b"hi")].concat();
        let mut d = FrameDecoder::new(1024);
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (out, emits, r) = decode(&mut d, &chunks);
        assert_eq!((out, emits, r), (stream, 2, Ok(())));
        assert_eq!(d.partial.capacity(), 0, "buffer released after the frame");
    }

    #[test]
    fn buffer_grows_with_arrivals_never_past_the_frame() {
        let mut d = FrameDecoder::new(1 << 20);
        // A header claiming 1 MiB, then 10 bytes: only the bytes are held.
        let mut head = (1u32 << 20).to_be_bytes().to_vec();
        head.extend_from_slice(&[1; 10]);
        d.feed(&head, |_| panic!("incomplete")).unwrap();
        assert!(d.partial.capacity() <= 14);
        for _ in 0..1000 {
            d.feed(&[2; 1000], |_| panic!("incomplete")).unwrap();
            assert!(d.partial.capacity() <= 4 + (1 << 20));
            assert!(d.partial.capacity() <= 2 * d.partial.len());
        }
    }

    #[test]
    fn oversize_header_is_refused_without_allocating() {
        let mut d = FrameDecoder::new(100);
        let stream = [frame(b"ok"), 101u32.to_be_bytes().to_vec()].concat();
        let (out, _, r) = decode(&mut d, &[&stream]);
        assert_eq!(out, frame(b"ok"));
        assert_eq!(r, Err(FrameTooLong { len: 101, max: 100 }));
        assert_eq!(d.partial.capacity(), 0);
        // Also when the header itself arrives split.
        let mut d = FrameDecoder::new(100);
        let (_, _, r) = decode(&mut d, &[&[0, 0], &[0xff, 0xff]]);
        assert_eq!(
            r,
            Err(FrameTooLong {
                len: 0xffff,
                max: 100
            })
        );
        assert_eq!(d.partial.capacity(), 0);
    }

    #[test]
    fn handler_replies_with_an_error_frame_and_closes() {
        let mut h = Harness::new();
        let mut f = Framed::new(8);
        let mut data = [frame(b"fine"), 9u32.to_be_bytes().to_vec()].concat();
        assert_eq!(h.with(|out| f.on_data(&mut data, out)), Flow::Close);
        let want = [
            frame(b"fine"),
            frame(b"error: frame length 9 exceeds max-frame 8"),
        ]
        .concat();
        assert_eq!(h.io.written, want);
        assert_eq!(h.stats.snapshot().protocol_errors, 1);
    }

    #[test]
    fn partial_frame_at_eof_is_counted_not_echoed() {
        let mut h = Harness::new();
        let mut f = Framed::new(8);
        let mut data = [frame(b"a"), vec![0, 0, 0, 5, b'x']].concat();
        assert_eq!(h.with(|out| f.on_data(&mut data, out)), Flow::Continue);
        assert_eq!(h.with(|out| f.on_eof(out)), Flow::Continue);
        assert_eq!(h.io.written, frame(b"a"));
        assert_eq!(h.stats.snapshot().partial_frames, 1);
    }

    proptest! {
        /// Any split of a stream of frames decodes to the same frames; a
        /// trailing incomplete frame stays buffered, never emitted.
        #[test]
        fn any_split_decodes_the_same(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
            tail in 0usize..54,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let whole: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
            // Then the first `tail` bytes of a 54-byte frame: incomplete.
            let mut stream = whole.clone();
            stream.extend_from_slice(&frame(&[9; 50])[..tail]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.extend([0, stream.len()]);
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let mut d = FrameDecoder::new(200);
            let (out, emits, r) = decode(&mut d, &chunks);
            prop_assert_eq!(r, Ok(()));
            prop_assert_eq!(out, whole);
            prop_assert!(emits <= payloads.len());
            prop_assert_eq!(d.has_partial(), tail > 0);
            // What the frame still misses: until its header is whole, the
            // rest of that (a frame may be empty); then the rest of it.
            let missing = match tail {
                0 => 0,
                t if t < HEADER => HEADER - t,
                t => 54 - t,
            };
            prop_assert_eq!(d.missing(), missing);
        }

        /// An oversize header is refused at the same point however the
        /// stream is split, after exactly the frames before it.
        #[test]
        fn oversize_is_found_under_any_split(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..6),
            len in 51u32..,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let whole: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
            let mut stream = whole.clone();
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend_from_slice(b"junk");
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.extend([0, stream.len()]);
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let mut d = FrameDecoder::new(50);
            let (out, _, r) = decode(&mut d, &chunks);
            prop_assert_eq!(r, Err(FrameTooLong { len, max: 50 }));
            prop_assert_eq!(out, whole);
        }
    }
}
