//! Newline-delimited input, bounded: the line codec `chat` and `files` share.
//!
//! A line ends with `\n`; a `\r` just before it is stripped too, so `nc -C`
//! and telnet clients work. The limit `max_line` applies to the line without
//! its terminator, and an overlong line is reported as soon as it is certain,
//! not when its newline finally arrives: a client that never sends a newline
//! cannot make us hold more than `max_line + 2` bytes.
//!
//! Lines wholly inside one read are handed out as slices of that read (no
//! copy); only a line split across reads is assembled in the decoder's own
//! buffer, which exists only while such a line is incomplete.

/// A line longer than the limit arrived (or is arriving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Finds the first line of `buf`. Returns the line (terminator stripped) and
/// how many bytes of `buf` it used, `Ok(None)` if `buf` holds only the start
/// of a line that may still be legal, or `Err` once the line cannot fit
/// `max_line`. Scans at most `max_line + 2` bytes.
pub fn first_line(buf: &[u8], max_line: usize) -> Result<Option<(&[u8], usize)>, LineTooLong> {
    // A legal line plus "\r\n" is at most max_line + 2 bytes, so its newline
    // is inside this window.
    let window = &buf[..buf.len().min(max_line.saturating_add(2))];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if could_still_fit(buf, max_line) {
            Ok(None)
        } else {
            Err(LineTooLong)
        };
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    if line.len() > max_line {
        return Err(LineTooLong);
    }
    Ok(Some((line, nl + 1)))
}

/// True if `partial` (no newline yet) can still become a line of at most
/// `max_line` bytes: it may be one byte longer only if that byte is the `\r`
/// of a coming `\r\n`.
fn could_still_fit(partial: &[u8], max_line: usize) -> bool {
    partial.len() <= max_line || (partial.len() == max_line + 1 && partial.last() == Some(&b'\r'))
}

/// Reserves room for `additional` more bytes in `v`, growing geometrically
/// (so byte-at-a-time input costs amortised O(1) per byte) but never past
/// `limit`: the capacity tracks bytes that actually arrived, never a size a
/// peer merely announced.
pub(crate) fn grow_within(v: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = v.len() + additional;
    if needed <= v.capacity() {
        return;
    }
    let target = v.capacity().saturating_mul(2).min(limit).max(needed);
    v.reserve_exact(target - v.len());
}

/// Splits a byte stream into lines across reads.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    /// The start of a line whose newline has not arrived. Invariant: no `\n`
    /// in it, and `could_still_fit(partial)`, so it is at most `max_line + 1`
    /// bytes. Unallocated while empty.
    partial: Vec<u8>,
}

impl LineDecoder {
    pub fn new(max_line: usize) -> LineDecoder {
        LineDecoder {
            max_line,
            partial: Vec::new(),
        }
    }

    /// True while part of a line is buffered.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Bytes of memory the partial line holds.
    pub fn held(&self) -> usize {
        self.partial.capacity()
    }

    /// Drops a buffered partial line and its memory.
    pub fn clear(&mut self) {
        self.partial = Vec::new();
    }

    /// Feeds the next bytes of the stream, calling `on_line` for every line
    /// they complete, in order. On `Err` the lines before the overlong one
    /// were already handed out, and the decoder should not be fed again.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_line: impl FnMut(&[u8]),
    ) -> Result<(), LineTooLong> {
        if self.has_partial() {
            // Take at most what could complete a legal line, so the buffer
            // stays bounded whatever the read size.
            let room = self
                .max_line
                .saturating_add(2)
                .saturating_sub(self.partial.len());
            let take = match data[..data.len().min(room)]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(nl) => nl + 1,
                None => data.len().min(room),
            };
            grow_within(&mut self.partial, take, self.max_line.saturating_add(2));
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            match first_line(&self.partial, self.max_line) {
                Err(e) => {
                    self.clear();
                    return Err(e);
                }
                Ok(None) => return Ok(()), // all of `data` went into `partial`
                Ok(Some((line, _))) => on_line(line),
            }
            self.clear();
        }
        while let Some((line, used)) = first_line(data, self.max_line)? {
            on_line(line);
            data = &data[used..];
        }
        if !data.is_empty() {
            grow_within(
                &mut self.partial,
                data.len(),
                self.max_line.saturating_add(2),
            );
            self.partial.extend_from_slice(data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Result<(), LineTooLong>) {
        let mut d = LineDecoder::new(max);
        let mut lines = Vec::new();
        for c in chunks {
            let r = d.feed(c, |l| lines.push(l.to_vec()));
            if r.is_err() {
                return (lines, r);
            }
        }
        (lines, Ok(()))
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let (lines, r) = decode(&[b"a\r\nbc\n\nd"], 8);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, [&b"a"[..], b"bc", b""]);
    }

    #[test]
    fn joins_a_line_split_across_reads_and_releases_the_buffer() {
        let mut d = LineDecoder::new(8);
        let mut lines = Vec::new();
        d.feed(b"hel", |l| lines.push(l.to_vec())).unwrap();
        assert!(d.has_partial());
        d.feed(b"lo\r", |l| lines.push(l.to_vec())).unwrap();
        d.feed(b"\nx\n", |l| lines.push(l.to_vec())).unwrap();
        assert_eq!(lines, [&b"hello"[..], b"x"]);
        assert_eq!(d.partial.capacity(), 0);
    }

    #[test]
    fn the_limit_excludes_the_terminator() {
        assert_eq!(first_line(b"abcd\r\n", 4), Ok(Some((&b"abcd"[..], 6))));
        assert_eq!(first_line(b"abcd\r", 4), Ok(None));
        assert_eq!(first_line(b"abcde", 4), Err(LineTooLong));
        assert_eq!(first_line(b"abcde\n", 4), Err(LineTooLong));
    }

    #[test]
    fn an_endless_line_is_refused_early_and_stays_bounded() {
        let mut d = LineDecoder::new(10);
        for _ in 0..10 {
            d.feed(b"x", |_| panic!("no line")).unwrap();
        }
        assert!(d.partial.capacity() <= 12);
        assert_eq!(d.feed(b"y", |_| {}), Err(LineTooLong));
        // One big read without a newline is refused at once, whatever its size.
        let big = vec![b'z'; 100_000];
        assert_eq!(LineDecoder::new(10).feed(&big, |_| {}), Err(LineTooLong));
    }

    #[test]
    fn lines_before_an_overlong_one_are_handed_out() {
        let (lines, r) = decode(&[b"ok\n", b"also ok\ntoo long for four"], 7);
        assert_eq!(lines, [&b"ok"[..], b"also ok"]);
        assert_eq!(r, Err(LineTooLong));
    }

    proptest! {
        /// Any split of a stream of legal lines decodes to the same lines.
        #[test]
        fn any_split_decodes_the_same(
            lines in prop::collection::vec(
                prop::collection::vec(any::<u8>().prop_filter("no terminator", |b| *b != b'\n' && *b != b'\r'), 0..40),
                0..20),
            crlf in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut stream = Vec::new();
            for l in &lines {
                stream.extend_from_slice(l);
                stream.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.extend([0, stream.len()]);
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let (got, r) = decode(&chunks, 40);
            prop_assert_eq!(r, Ok(()));
            prop_assert_eq!(got, lines);
        }
    }
}
