//! What a run shows while it runs, on stderr: the line that says the connect phase is over,
//! then one line per second of the measured time (a bar that redraws itself on a terminal).

use std::time::Duration;

use crate::msg::INTERVAL_NS;

/// One per-second line (or a bar on a terminal) on stderr, and the line that says the
/// connect phase is over.
pub(crate) struct Progress {
    pub(crate) enabled: bool,
    pub(crate) tty: bool,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

impl Progress {
    /// The connect phase ended `at_ns` after the epoch with `opened` of `asked` open.
    /// With `--start-at`, measuring starts at `start_ns` instead of after the warm-up.
    pub(crate) fn connected(&self, at_ns: u64, opened: usize, asked: usize, start_ns: Option<u64>) {
        if !self.enabled || opened == 0 {
            return;
        }
        let secs = at_ns as f64 / 1e9;
        let rate = if secs > 0.0 {
            opened as f64 / secs
        } else {
            0.0
        };
        let warming = if let Some(start) = start_ns {
            let wait = start.saturating_sub(at_ns) as f64 / 1e9;
            format!("; measuring from --start-at in {wait:.3} s")
        } else if self.warmup.is_zero() {
            String::new()
        } else {
            format!("; warming up for {:?}", self.warmup)
        };
        eprintln!("connected {opened} of {asked} in {secs:.3} s ({rate:.0}/s){warming}");
    }

    /// Interval `index` (0-based) is complete with `msgs` messages. `end_ns`: when the run
    /// ended (ns since the start of the measured time), if it has: the last interval may
    /// be cut short, or may never have begun.
    pub(crate) fn line(
        &self,
        index: u64,
        msgs: u64,
        p99_ns: u64,
        errors: u64,
        end_ns: Option<u64>,
    ) {
        let measured = crate::clock::ns(self.duration).min(end_ns.unwrap_or(u64::MAX));
        let start = index * INTERVAL_NS;
        // An interval starting after the measured time holds only drained echoes; one
        // starting after the run ended (every connection failed in the warm-up) never was.
        if !self.enabled || start >= measured {
            return;
        }
        let length = (measured - start).min(INTERVAL_NS) as f64 / 1e9;
        let rate = msgs as f64 / length;
        let p99 = p99_ns as f64 / 1000.0;
        let stats = format!("{rate:.0} msg/s  p99 {p99:.1} us  errors {errors}");
        let second = index + 1;
        if self.tty {
            let total = self.duration.as_secs_f64().max(1.0);
            let done = ((second as f64 / total) * 30.0).min(30.0) as usize;
            let bar = format!("{}{}", "#".repeat(done), ".".repeat(30 - done));
            eprint!("\r\x1b[K[{bar}] {second:>4}s  {stats}");
        } else {
            eprintln!("[{second:>4}s] {stats}");
        }
    }

    pub(crate) fn finish(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}
