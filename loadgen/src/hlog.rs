//! The `.hlog` file: an HdrHistogram interval log (V2 deflate-compressed histograms in
//! base64, one line per second of the measured time), with loadgen's two comments: the
//! wire size of a message (for `merge` to report MB/s) and, last, the end line with the
//! run's verdict (`endline.rs`). This module owns the format both ways: `HlogWriter`
//! writes it during a run, `read` reads it back for `loadgen merge`.
//!
//! HdrHistogram readers skip comment lines, so the log stays a standard interval log that
//! other tools (HistogramLogAnalyzer, `hdrhistogram` in other languages) can read.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, IntervalLogWriterError, LogEntry,
    LogIteratorError,
};
use hdrhistogram::serialization::{DeserializeError, Deserializer, V2DeflateSerializer};
use hdrhistogram::{AdditionError, Histogram};

use crate::endline::EndLine;
pub use crate::endline::EndLineError;
use crate::io_text::io_text;

/// Why an `.hlog` file could not be read; each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    /// The file could not be read: check the path and permissions.
    #[error("{}", io_text(.0))]
    Read(io::Error),
    /// The file is not an interval log at all (the wrong file was named?).
    #[error("not an HdrHistogram interval log (parse error at byte {offset})")]
    NotALog {
        /// Where the parser gave up.
        offset: usize,
    },
    /// An interval's histogram is not valid base64: the file was damaged or edited.
    #[error("bad base64: {0}")]
    Base64(base64::DecodeError),
    /// An interval's histogram does not decode: the file was damaged, or written by an
    /// incompatible tool.
    #[error("bad histogram: {0}")]
    Histogram(DeserializeError),
    /// An interval's histogram cannot be added to the others.
    #[error("cannot add a histogram: {0}")]
    Add(AdditionError),
    /// loadgen's end line is there but unreadable: the file was damaged or edited.
    #[error(transparent)]
    EndLine(EndLineError),
    /// Neither an interval nor an end line: the run wrote nothing (or this is not its log).
    #[error("no interval histograms in it")]
    Empty,
}

/// Comment prefix that records the wire size in an `.hlog`, for `merge` to report MB/s.
const WIRE_COMMENT: &str = "loadgen wire_bytes=";

/// Writes an HdrHistogram interval log: V2 deflate-compressed, base64, one line a second.
pub(crate) struct HlogWriter {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    wire_bytes: usize,
    /// The header is written once the measured time's start is known.
    started: bool,
}

impl HlogWriter {
    /// Creates the file, and makes sure it takes writes (see [`crate::probe_write`]); the
    /// header follows when the measured time begins ([`HlogWriter::start`]).
    pub(crate) fn create(path: &Path, wire_bytes: usize) -> io::Result<Self> {
        let file = File::create(path)?;
        crate::probe_write(&file)?;
        Ok(HlogWriter {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            wire_bytes,
            started: false,
        })
    }

    /// Writes the header: interval timestamps are seconds after `base`, the start of the
    /// measured time.
    pub(crate) fn start(&mut self, base: SystemTime) -> io::Result<()> {
        if std::mem::replace(&mut self.started, true) {
            return Ok(());
        }
        let wire = self.wire_bytes;
        IntervalLogWriterBuilder::new()
            .add_comment("loadgen latency interval log; values in nanoseconds")
            .add_comment(&format!("{WIRE_COMMENT}{wire}"))
            .with_start_time(base)
            .with_base_time(base)
            .begin_log_with(&mut self.out, &mut self.serializer)?;
        writeln!(self.out, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")
    }

    /// Appends one interval.
    pub(crate) fn write(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> io::Result<()> {
        // A builder without headers writes nothing itself: it only formats the line.
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        w.write_histogram(h, start, length, None)
            .map_err(|e| match e {
                IntervalLogWriterError::IoError(e) => e,
                IntervalLogWriterError::SerializeError(e) => io::Error::other(e),
            })
    }

    /// Writes the end line (`endline.rs`) and flushes to disk: the log is whole.
    pub(crate) fn end(mut self, line: &EndLine) -> io::Result<()> {
        writeln!(self.out, "#{}", line.to_comment())?;
        self.out.flush()
    }
}

/// What one `.hlog` file holds.
#[derive(Debug)]
pub(crate) struct HlogContents {
    /// Sum of its interval histograms.
    pub(crate) histogram: Histogram<u64>,
    /// Each interval as (start, end) in seconds since the epoch (or since the log's start
    /// when it has no BaseTime).
    pub(crate) spans: Vec<(f64, f64)>,
    /// Each interval's start (as `spans`) and message count.
    pub(crate) counts: Vec<(f64, u64)>,
    /// Wire bytes per message, if loadgen wrote the log.
    pub(crate) wire_bytes: Option<usize>,
    /// The end line loadgen writes last, if it is there.
    pub(crate) end: Option<EndLine>,
}

/// Reads one interval log.
pub(crate) fn read(path: &Path) -> Result<HlogContents, HlogError> {
    let bytes = std::fs::read(path).map_err(HlogError::Read)?;
    let mut histogram = Histogram::<u64>::new(3).expect("3 significant digits are valid");
    let mut deserializer = Deserializer::new();
    let mut base = 0.0;
    let mut spans = Vec::new();
    let mut counts = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry
            .map_err(|LogIteratorError::ParseError { offset }| HlogError::NotALog { offset })?;
        match entry {
            LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(ilh) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(ilh.encoded_histogram())
                    .map_err(HlogError::Base64)?;
                let h: Histogram<u64> = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(HlogError::Histogram)?;
                // Auto-resizing: a histogram of any range adds.
                histogram.add(&h).map_err(HlogError::Add)?;
                let start = base + ilh.start_timestamp().as_secs_f64();
                spans.push((start, start + ilh.duration().as_secs_f64()));
                counts.push((start, h.len()));
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let end = EndLine::find(&text).map_err(HlogError::EndLine)?;
    // A run that failed before measuring (nothing connected) logs only its end line.
    if spans.is_empty() && end.is_none() {
        return Err(HlogError::Empty);
    }
    let wire_bytes = text
        .lines()
        .find_map(|l| {
            l.strip_prefix('#')
                .and_then(|l| l.strip_prefix(WIRE_COMMENT))
        })
        .and_then(|n| n.trim().parse().ok());
    Ok(HlogContents {
        histogram,
        spans,
        counts,
        wire_bytes,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the writer writes the reader reads back: the intervals, added; their spans;
    /// the wire size; the end line. A damaged file is a typed error, not a panic.
    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let mut w = HlogWriter::create(&path, 80).unwrap();
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        w.start(base).unwrap();
        let mut h = crate::latency::new_histogram();
        h.record(1_000).unwrap();
        h.record(2_000).unwrap();
        let second = Duration::from_secs(1);
        w.write(&h, Duration::ZERO, second).unwrap();
        w.write(&h, second, second).unwrap();
        drop(w);
        let log = read(&path).unwrap();
        assert_eq!(log.histogram.len(), 4);
        assert_eq!(log.wire_bytes, Some(80));
        assert_eq!(log.spans.len(), 2);
        assert!(
            (log.spans[1].0 - 1_700_000_001.0).abs() < 1e-3,
            "{:?}",
            log.spans
        );
        assert!(log.end.is_none(), "no end line was written");

        let junk = dir.path().join("junk.hlog");
        std::fs::write(&junk, "hello\n").unwrap();
        assert!(matches!(read(&junk), Err(HlogError::NotALog { offset: 0 })));
        let empty = dir.path().join("empty.hlog");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(read(&empty), Err(HlogError::Empty)));
        let missing = dir.path().join("missing.hlog");
        assert!(matches!(read(&missing), Err(HlogError::Read(_))));
    }
}
