//! Backpressure: a client that writes but does not read cannot make the
//! server hold more than `--max-pending` for it. The server runs as its own
//! process so its RSS is measured alone.

mod common;

use std::io::Read;
use std::sync::atomic::Ordering;

use common::{connect, pattern, pattern_writer, spawn_binary, wait_for_stall};

/// Pushes 64 MiB at the server while not reading. The writer stalls once the
/// server stops reading (its output passed max-pending), the server's RSS
/// stays within a few MiB of its start, and when the client finally reads,
/// every byte comes back in order.
#[test]
fn non_reading_client_is_bounded_then_gets_every_byte() {
    const TOTAL: u64 = 64 << 20;
    const MAX_PENDING: &str = "262144";
    let mut server = spawn_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--no-udp",
        "--max-pending",
        MAX_PENDING,
    ]);
    let rss_start = server.rss_kib();
    let stream = connect(server.tcp);
    // No write timeout: the writer is expected to block for a while.
    stream.set_write_timeout(None).unwrap();

    let (written, sender) = pattern_writer(&stream, TOTAL);
    // Wait until the writer has been stuck for a while: the kernel buffers
    // on both sides are full and the server has stopped reading.
    let mut peak_rss = rss_start;
    wait_for_stall(&written, || peak_rss = peak_rss.max(server.rss_kib()));
    let stalled_at = written.load(Ordering::Relaxed);
    assert!(
        stalled_at < TOTAL,
        "the writer never stalled: the server kept reading"
    );
    let growth = peak_rss.saturating_sub(rss_start);
    eprintln!("server rss start={rss_start}KiB peak={peak_rss}KiB, writer stalled after {stalled_at} bytes");
    // max-pending (256 KiB) + the 64 KiB scratch buffer, plus allocator slack.
    assert!(
        growth < 8 * 1024,
        "server RSS grew {growth} KiB for one non-reading client"
    );

    // Now read: everything comes back, in order, then EOF.
    let mut reader = stream;
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                pattern(pos + i as u64),
                "byte at offset {}",
                pos + i as u64
            );
        }
        pos += n as u64;
        peak_rss = peak_rss.max(server.rss_kib());
    }
    assert_eq!(pos, TOTAL, "bytes echoed");
    sender.join().unwrap();
    let growth = peak_rss.saturating_sub(rss_start);
    assert!(
        growth < 8 * 1024,
        "server RSS grew {growth} KiB during the transfer"
    );

    // The server counted at least one pause.
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
    let stopped = server.wait_log("final counters", "stopped:");
    assert!(
        !stopped.contains("backpressure_pauses=0 "),
        "no backpressure pause counted: {stopped}"
    );
}
