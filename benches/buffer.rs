//! Micro-benchmarks of the pending-output buffer, [`echoloop::buffer::OutBuf`].
//!
//! No sockets: the buffer only sees `io::Write`, so every writer here is an
//! in-memory one that copies what it is given (as the kernel would) into a
//! reused scratch area, taking at most `cap` bytes per call. A small `cap`
//! forces partial writes, the case the buffer exists for.
//!
//! Groups:
//!
//! - `outbuf/push_drain`: queue a batch of messages with `push_copy`, then
//!   drain them with `write_to`, for 64 B and 64 KiB messages. Includes the
//!   allocation made on the first push and released when the buffer drains,
//!   which is what a connection pays each time the socket refuses part of a
//!   reply.
//! - `outbuf/writev`: drain a backlog of 256 queued chunks (one `writev`
//!   per at most 32 of them) into writers that take 1460 B, 16 KiB or
//!   everything per call. The buffer is filled outside the timed part.
//! - `outbuf/broadcast`: one 64 B chat line queued to 100 recipients and
//!   drained, as a shared `Rc` chunk (`push_shared`) against a copy per
//!   recipient (`push_copy`), so the two can be quoted as a ratio.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench buffer
//! cargo bench --bench buffer -- --quick      # a faster, rougher run
//! cargo bench --bench buffer -- writev       # one group only
//! ```

use std::hint::black_box;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use echoloop::buffer::OutBuf;

/// An in-memory writer that takes at most `cap` bytes per call and copies
/// them into a reused scratch buffer, so written bytes are really touched.
struct CappedWriter {
    cap: usize,
    scratch: Vec<u8>,
}

impl CappedWriter {
    fn new(cap: usize) -> CappedWriter {
        CappedWriter {
            cap,
            scratch: vec![0; cap],
        }
    }
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.cap);
        self.scratch[..n].copy_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Gathers across slices like `writev`, up to `cap` bytes (the default
    /// implementation would take only the first slice).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(self.cap - n);
            self.scratch[n..n + take].copy_from_slice(&buf[..take]);
            n += take;
            if n == self.cap {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Queues `count` copies of `msg`, then drains them into `w`.
fn push_then_drain(buf: &mut OutBuf, msg: &[u8], count: usize, w: &mut CappedWriter) {
    for _ in 0..count {
        buf.push_copy(black_box(msg));
    }
    let n = buf
        .write_to(w, usize::MAX)
        .expect("in-memory writer never fails");
    debug_assert_eq!(n, msg.len() * count);
    debug_assert!(!buf.has_allocation());
}

fn push_drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbuf/push_drain");
    // (message size, messages per batch): 16 KiB and 1 MiB per iteration.
    for (size, count, label) in [(64, 256, "64B"), (64 * 1024, 16, "64KiB")] {
        let msg = vec![b'x'; size];
        let mut writer = CappedWriter::new(256 * 1024);
        let mut buf = OutBuf::new();
        group.throughput(Throughput::Bytes((size * count) as u64));
        group.bench_function(BenchmarkId::new("push_copy", label), |b| {
            b.iter(|| push_then_drain(&mut buf, &msg, count, &mut writer))
        });
    }
    group.finish();
}

/// A buffer holding `chunks` separate chunks, each all of `line`. Shared chunks
/// are used because consecutive copies would coalesce into one chunk.
fn backlog(line: &Rc<[u8]>, chunks: usize) -> OutBuf {
    let mut buf = OutBuf::new();
    for _ in 0..chunks {
        buf.push_shared(Rc::clone(line), 0);
    }
    buf
}

fn writev(c: &mut Criterion) {
    const CHUNKS: usize = 256;
    const SIZE: usize = 512;
    let line: Rc<[u8]> = Rc::from(vec![b'y'; SIZE]);
    let mut group = c.benchmark_group("outbuf/writev");
    group.throughput(Throughput::Bytes((CHUNKS * SIZE) as u64));
    // One Ethernet segment's payload, a typical socket send-buffer gap, and
    // a writer that takes all it is given.
    for (cap, label) in [
        (1460, "cap_1460B"),
        (16 * 1024, "cap_16KiB"),
        (CHUNKS * SIZE, "cap_all"),
    ] {
        let mut writer = CappedWriter::new(cap);
        group.bench_function(BenchmarkId::new("256x512B", label), |b| {
            b.iter_batched_ref(
                || backlog(&line, CHUNKS),
                |buf| {
                    buf.write_to(&mut writer, usize::MAX)
                        .expect("in-memory writer never fails")
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    const RECIPIENTS: usize = 100;
    const LINE: usize = 64;
    let mut group = c.benchmark_group("outbuf/broadcast");
    group.throughput(Throughput::Bytes((RECIPIENTS * LINE) as u64));
    let mut writer = CappedWriter::new(64 * 1024);
    let mut bufs: Vec<OutBuf> = (0..RECIPIENTS).map(|_| OutBuf::new()).collect();
    let line = vec![b'z'; LINE];

    group.bench_function(BenchmarkId::new("push_shared", "100x64B"), |b| {
        b.iter(|| {
            // One allocation for the line, then an Rc clone per recipient.
            let shared: Rc<[u8]> = Rc::from(black_box(&line[..]));
            for buf in &mut bufs {
                buf.push_shared(Rc::clone(&shared), 0);
            }
            for buf in &mut bufs {
                buf.write_to(&mut writer, usize::MAX)
                    .expect("in-memory writer never fails");
            }
        })
    });
    group.bench_function(BenchmarkId::new("push_copy", "100x64B"), |b| {
        b.iter(|| {
            for buf in &mut bufs {
                buf.push_copy(black_box(&line));
            }
            for buf in &mut bufs {
                buf.write_to(&mut writer, usize::MAX)
                    .expect("in-memory writer never fails");
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: these are nanosecond-to-microsecond operations and
    // 3 s of samples settles them; command-line flags still override.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = push_drain, writev, broadcast
}
criterion_main!(benches);
