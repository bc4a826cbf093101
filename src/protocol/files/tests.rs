//! Unit tests for `files`: name resolution against a real temporary root,
//! and the handler over a scripted socket.

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::rc::Rc;

use super::super::test_support::Harness;
use super::*;
use crate::buffer::OutBuf;
use crate::output::Output;
use crate::stats::Counters;
use crate::testutil::ScriptedIo;
use std::fs::File;

/// A fresh directory under the system temp dir, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let dir = std::env::temp_dir().join(format!("echoloop-unit-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/sub")).unwrap();
        std::fs::write(dir.join("root/a.txt"), b"alpha").unwrap();
        std::fs::write(dir.join("root/sub/b.bin"), [1, 2, 3]).unwrap();
        std::fs::write(dir.join("root/empty"), b"").unwrap();
        std::fs::write(dir.join("secret"), b"outside").unwrap();
        TempRoot(dir)
    }

    fn root(&self) -> PathBuf {
        self.0.join("root").canonicalize().unwrap()
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ok_header(name: &str, size: u64) -> Vec<u8> {
    header(&serde_json::json!({ "name": name, "size": size }))
}

fn feed(f: &mut Files, h: &mut Harness, bytes: &[u8]) -> Flow {
    let mut data = bytes.to_vec();
    h.with(|out| f.on_data(&mut data, out))
}

fn drained(f: &mut Files, h: &mut Harness, scratch: usize) -> Flow {
    let mut scratch = vec![0; scratch];
    h.with(|out| f.on_drained(&mut scratch, out))
}

#[test]
fn names_outside_the_root_are_refused() {
    let t = TempRoot::new("refused");
    let root = t.root();
    symlink(t.0.join("secret"), root.join("escape")).unwrap();
    symlink("/", root.join("slash")).unwrap();
    for name in [
        &b""[..],
        b"a\0b",
        b"/etc/passwd",
        b"../secret",
        b"sub/../a.txt",
        b"escape",
        b"slash/etc/passwd",
    ] {
        assert_eq!(
            resolve(&root, name),
            Err(Refusal::NotAllowed),
            "{:?}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(resolve(&root, b"nope").unwrap_err(), Refusal::NotFound);
    assert_eq!(resolve(&root, b"a.txt/x").unwrap_err(), Refusal::NotFound);
    assert_eq!(open(&root, b"sub").unwrap_err(), Refusal::NotAFile);
    assert_eq!(open(&root, b".").unwrap_err(), Refusal::NotAFile);
}

#[test]
fn names_inside_the_root_resolve_even_through_symlinks() {
    let t = TempRoot::new("inside");
    let root = t.root();
    symlink(root.join("sub/b.bin"), root.join("link")).unwrap();
    assert_eq!(
        resolve(&root, b"./sub/b.bin").unwrap(),
        root.join("sub/b.bin")
    );
    assert_eq!(open(&root, b"link").unwrap().1, 3);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let t = TempRoot::new("pipelined");
    let mut f = Files::new(Rc::from(t.root().as_path()), 64);
    let mut h = Harness::new();
    assert_eq!(
        feed(&mut f, &mut h, b"a.txt\r\nmissing\nempty\nsub/b"),
        Flow::Continue
    );
    assert!(f.more_output() == MoreOutput::Now && !f.wants_input());
    // Each call takes at most STEPS_PER_CALL steps; the connection calls
    // again while output is owed.
    for _ in 0..4 {
        assert_eq!(drained(&mut f, &mut h, 4), Flow::Continue);
    }
    let want = [
        ok_header("a.txt", 5),
        b"alpha".to_vec(),
        header(&serde_json::json!({ "error": "not found" })),
        ok_header("empty", 0),
    ]
    .concat();
    assert_eq!(h.io.written, want);
    assert!(f.wants_input() && f.more_output() == MoreOutput::Nothing);
    assert_eq!(feed(&mut f, &mut h, b".bin\n"), Flow::Continue);
    assert_eq!(drained(&mut f, &mut h, 4), Flow::Continue);
    assert!(h
        .io
        .written
        .ends_with(&[ok_header("sub/b.bin", 3), vec![1, 2, 3]].concat()));
    assert_eq!(h.stats.snapshot().files_served, 3);
    assert_eq!(f.input.capacity(), 0, "answered input is released");
}

#[test]
fn body_is_read_only_as_the_socket_takes_it() {
    let t = TempRoot::new("slow");
    let root = t.root();
    std::fs::write(root.join("big"), vec![7u8; 100_000]).unwrap();
    let mut f = Files::new(Rc::from(root.as_path()), 64);
    let mut h = Harness::new();
    // The socket takes the header and 10 body bytes, then is full.
    let head = ok_header("big", 100_000).len();
    h.io = ScriptedIo::new(vec![Some(head), Some(10), None]);
    assert_eq!(feed(&mut f, &mut h, b"big\n"), Flow::Continue);
    assert_eq!(drained(&mut f, &mut h, 1000), Flow::Continue);
    // One 1000-byte piece was read; 990 bytes of it wait, nothing more.
    assert_eq!(h.pending.len(), 990);
    assert!(f.more_output() == MoreOutput::Now && !f.wants_input());
    assert_eq!(f.body.as_ref().unwrap().left, 99_000);
}

#[test]
fn a_file_truncated_while_served_closes_the_connection() {
    let t = TempRoot::new("truncated");
    let root = t.root();
    std::fs::write(root.join("shrinks"), vec![1u8; 100]).unwrap();
    let mut f = Files::new(Rc::from(root.as_path()), 64);
    let mut h = Harness::new();
    let head = ok_header("shrinks", 100).len();
    h.io = ScriptedIo::new(vec![Some(head), None]);
    assert_eq!(feed(&mut f, &mut h, b"shrinks\nshrinks\n"), Flow::Continue);
    assert_eq!(drained(&mut f, &mut h, 10), Flow::Continue);
    std::fs::write(root.join("shrinks"), vec![1u8; 15]).unwrap();
    h.pending = OutBuf::new();
    h.io = ScriptedIo::new(vec![Some(usize::MAX); 10]);
    assert_eq!(drained(&mut f, &mut h, 10), Flow::Close);
    assert_eq!(
        f.more_output(),
        MoreOutput::Nothing,
        "nothing more is owed: the connection can close"
    );
    assert_eq!(h.stats.snapshot().protocol_errors, 1);
}

#[test]
fn an_overlong_request_line_gets_an_error_and_a_close() {
    let t = TempRoot::new("overlong");
    let mut f = Files::new(Rc::from(t.root().as_path()), 8);
    let mut h = Harness::new();
    assert_eq!(feed(&mut f, &mut h, b"123456789"), Flow::Close);
    let want = header(&serde_json::json!({ "error": "request line exceeds 8 bytes" }));
    assert_eq!(h.io.written, want);
    assert_eq!(f.more_output(), MoreOutput::Nothing);
    assert_eq!(h.stats.snapshot().protocol_errors, 1);
}

#[test]
fn a_fast_reader_cannot_monopolise_the_reactor() {
    let t = TempRoot::new("fair");
    let root = t.root();
    std::fs::write(root.join("big"), vec![3u8; 100_000]).unwrap();
    let mut f = Files::new(Rc::from(root.as_path()), 64);
    let mut h = Harness::new();
    assert_eq!(feed(&mut f, &mut h, b"big\n"), Flow::Continue);
    // The socket takes everything, yet one call stops after STEPS_PER_CALL
    // steps (the header, then pieces), owing more with nothing queued: the
    // connection requeues itself (Conn::yielded) and calls again.
    assert_eq!(drained(&mut f, &mut h, 1000), Flow::Continue);
    let head = ok_header("big", 100_000).len();
    assert_eq!(h.io.written.len(), head + (STEPS_PER_CALL - 1) * 1000);
    assert_eq!(h.pending.len(), 0);
    assert_ne!(f.more_output(), MoreOutput::Nothing);
    for _ in 0..100 {
        if f.more_output() == MoreOutput::Nothing {
            break;
        }
        assert_eq!(drained(&mut f, &mut h, 1000), Flow::Continue);
    }
    assert_eq!(h.io.written.len(), head + 100_000);
}

/// A socket whose `sendfile` takes `takes` bytes per call for `calls`
/// calls, then reports a full socket.
struct ZeroCopySink {
    calls: usize,
    takes: usize,
    sent: u64,
}

impl std::io::Write for ZeroCopySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl crate::output::sink::Sink for ZeroCopySink {
    fn send_file(
        &mut self,
        _file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Option<std::io::Result<usize>> {
        if self.calls == 0 {
            return Some(Err(std::io::ErrorKind::WouldBlock.into()));
        }
        self.calls -= 1;
        let n = count.min(self.takes);
        *offset += n as u64;
        self.sent += n as u64;
        Some(Ok(n))
    }
}

/// With `sendfile`, a full socket queues nothing: the handler reports that
/// it awaits WRITABLE (so the connection registers it instead of spinning
/// through requeues), and resumes at the right offset once called again.
#[test]
fn sendfile_waits_for_writable_without_queueing() {
    let t = TempRoot::new("zerocopy");
    let root = t.root();
    std::fs::write(root.join("big"), vec![5u8; 10_000]).unwrap();
    let mut f = Files::new(Rc::from(root.as_path()), 64).with_sendfile(true);
    let mut h = Harness::new();
    assert_eq!(feed(&mut f, &mut h, b"big\n"), Flow::Continue);
    let mut sink = ZeroCopySink {
        calls: 2,
        takes: 3000,
        sent: 0,
    };
    let stats = Counters::default();
    let mut pending = OutBuf::new();
    let mut scratch = vec![0u8; 4096];
    let mut call = |f: &mut Files, sink: &mut ZeroCopySink| {
        let mut bc = crate::protocol::Outbox::default();
        let mut out = Output::new(sink, &mut pending, &mut bc, &stats);
        let flow = f.on_drained(&mut scratch, &mut out);
        assert!(out.finish().error.is_none());
        flow
    };
    // The header and a first piece take the call's STEPS_PER_CALL (2)
    // steps; the next call sends a second piece and finds the socket full.
    assert_eq!(call(&mut f, &mut sink), Flow::Continue);
    assert_eq!(sink.sent, 3000, "header and one piece");
    assert_eq!(f.more_output(), MoreOutput::Now);
    assert_eq!(call(&mut f, &mut sink), Flow::Continue);
    assert_eq!(sink.sent, 6000, "two pieces, then the socket is full");
    assert_eq!(f.more_output(), MoreOutput::WhenWritable);
    // WRITABLE: the socket takes the rest.
    sink.calls = 10;
    assert_eq!(call(&mut f, &mut sink), Flow::Continue);
    assert_eq!(sink.sent, 10_000);
    assert_eq!(f.more_output(), MoreOutput::Nothing);
    assert_eq!(stats.snapshot().files_served, 1);
}

/// One call sends at most the per-call share of body (STEPS_PER_CALL
/// scratch buffers) with `sendfile` too, even to a socket that takes
/// everything: a fast reader cannot hold the loop on either path.
#[test]
fn sendfile_keeps_the_per_call_cap() {
    let t = TempRoot::new("zerocopy-cap");
    let root = t.root();
    std::fs::write(root.join("big"), vec![5u8; 100_000]).unwrap();
    let mut f = Files::new(Rc::from(root.as_path()), 64).with_sendfile(true);
    let mut h = Harness::new();
    assert_eq!(feed(&mut f, &mut h, b"big\n"), Flow::Continue);
    let mut sink = ZeroCopySink {
        calls: usize::MAX,
        takes: usize::MAX,
        sent: 0,
    };
    let (stats, mut pending, mut bc) = (
        Counters::default(),
        OutBuf::new(),
        crate::protocol::Outbox::default(),
    );
    let mut scratch = vec![0u8; 1000];
    let mut out = Output::new(&mut sink, &mut pending, &mut bc, &stats);
    assert_eq!(f.on_drained(&mut scratch, &mut out), Flow::Continue);
    assert!(out.finish().error.is_none());
    assert_eq!(sink.sent, (STEPS_PER_CALL * 1000) as u64);
    assert_eq!(f.more_output(), MoreOutput::Now, "yields, to be requeued");
}
