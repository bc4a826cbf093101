//! `--mode files` over real sockets: exact bodies, refusals for names
//! outside `--root`, pipelined requests, a missing root, and a huge file to a
//! slow reader streamed in bounded memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{read_n, self_rss_kib, start, test_config, wait_until, Rng, Running};
use echoloop::{Config, ConfigError, Error, Mode, Server};
use serde_json::{json, Value};

/// A fresh temporary directory (tempfile) holding `root/` (served) and
/// `outside/` (not), removed on drop even if the test fails.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("echoloop-{test}-"))
            .tempdir()
            .unwrap();
        let path = dir.path();
        std::fs::create_dir(path.join("root")).unwrap();
        std::fs::create_dir(path.join("outside")).unwrap();
        std::fs::write(path.join("outside/secret.txt"), b"top secret").unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn outside(&self) -> PathBuf {
        self.path().join("outside")
    }
}

fn files_config(root: &Path) -> Config {
    Config {
        mode: Mode::Files,
        root: Some(root.to_path_buf()),
        ..test_config()
    }
}

/// Reads one reply header: `u32` big-endian length, then that much JSON.
fn read_header(s: &mut TcpStream) -> Value {
    let len = u32::from_be_bytes(read_n(s, 4).try_into().unwrap()) as usize;
    assert!(len < 64 * 1024, "header length {len} is implausible");
    serde_json::from_slice(&read_n(s, len)).expect("header is JSON")
}

/// Sends `name` and returns the reply header and body (empty for an error).
fn request(s: &mut TcpStream, name: &str) -> (Value, Vec<u8>) {
    s.write_all(format!("{name}\n").as_bytes()).unwrap();
    read_reply(s)
}

fn read_reply(s: &mut TcpStream) -> (Value, Vec<u8>) {
    let header = read_header(s);
    let body = match header.get("size").and_then(Value::as_u64) {
        Some(size) => read_n(s, size as usize),
        None => Vec::new(),
    };
    (header, body)
}

/// Asserts `name` is refused with `{"error": why}` and that the connection
/// stays usable for the next request.
fn assert_refused(server: &Running, name: &str, why: &str) {
    let mut s = server.connect();
    let (header, body) = request(&mut s, name);
    assert_eq!(header, json!({ "error": why }), "request {name:?}");
    assert!(body.is_empty());
    let (header, body) = request(&mut s, "ok.txt");
    assert_eq!(header, json!({ "name": "ok.txt", "size": 2 }));
    assert_eq!(body, b"ok");
}

/// A multi-MiB random file arrives byte for byte after a header giving
/// its name and exact size, sent with `sendfile` (Linux) and copied
/// through user space (`--no-sendfile`) alike.
#[test]
fn serves_exact_bytes_of_a_multi_mib_file() {
    for sendfile in [true, false] {
        serves_exact_bytes(sendfile);
    }
}

fn serves_exact_bytes(sendfile: bool) {
    let dir = TempDir::new(&format!("exact-{sendfile}"));
    let data = Rng::new(0xF11E).bytes(5 * 1024 * 1024 + 17);
    std::fs::write(dir.root().join("data.bin"), &data).unwrap();
    let server = start(Config {
        sendfile,
        ..files_config(&dir.root())
    });
    let mut s = server.connect();
    let (header, body) = request(&mut s, "data.bin");
    assert_eq!(header, json!({ "name": "data.bin", "size": data.len() }));
    assert!(body == data, "body differs from the file");
    server.wait_stats("file counted", |s| s.files_served == 1);
}

/// A name that does not exist gets `{"error":"not found"}`, no body, and the
/// connection stays open for the next request.
#[test]
fn missing_file_is_not_found() {
    let dir = TempDir::new("notfound");
    std::fs::write(dir.root().join("ok.txt"), b"ok").unwrap();
    let server = start(files_config(&dir.root()));
    assert_refused(&server, "no-such-file.txt", "not found");
    assert_refused(&server, "sub/dir/none", "not found");
}

/// `..` components are refused with "not allowed", even when the file they
/// reach exists.
#[test]
fn dot_dot_escape_is_not_allowed() {
    let dir = TempDir::new("dotdot");
    std::fs::write(dir.root().join("ok.txt"), b"ok").unwrap();
    let server = start(files_config(&dir.root()));
    assert_refused(&server, "../outside/secret.txt", "not allowed");
    assert_refused(&server, "ok.txt/../../outside/secret.txt", "not allowed");
    assert_refused(&server, "..", "not allowed");
}

/// Absolute paths are refused with "not allowed", even one naming a file
/// inside the root.
#[test]
fn absolute_path_is_not_allowed() {
    let dir = TempDir::new("absolute");
    std::fs::write(dir.root().join("ok.txt"), b"ok").unwrap();
    let server = start(files_config(&dir.root()));
    let secret = dir.outside().join("secret.txt");
    assert_refused(&server, secret.to_str().unwrap(), "not allowed");
    let inside = dir.root().join("ok.txt");
    assert_refused(&server, inside.to_str().unwrap(), "not allowed");
    assert_refused(&server, "/etc/passwd", "not allowed");
}

/// A symlink inside the root whose target leaves it (a file, or a directory
/// to walk through) is refused with "not allowed"; a symlink that stays
/// inside the root is served.
#[test]
fn symlink_escaping_root_is_not_allowed() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("symlink");
    let root = dir.root();
    std::fs::write(root.join("ok.txt"), b"ok").unwrap();
    symlink(dir.outside().join("secret.txt"), root.join("escape")).unwrap();
    symlink(dir.outside(), root.join("outdir")).unwrap();
    symlink("ok.txt", root.join("alias")).unwrap();
    let server = start(files_config(&root));
    assert_refused(&server, "escape", "not allowed");
    assert_refused(&server, "outdir/secret.txt", "not allowed");
    let mut s = server.connect();
    let (header, body) = request(&mut s, "alias");
    assert_eq!(header, json!({ "name": "alias", "size": 2 }));
    assert_eq!(body, b"ok");
}

/// A directory is answered with `{"error":"not a file"}`.
#[test]
fn directory_is_not_a_file() {
    let dir = TempDir::new("notafile");
    std::fs::write(dir.root().join("ok.txt"), b"ok").unwrap();
    std::fs::create_dir(dir.root().join("sub")).unwrap();
    let server = start(files_config(&dir.root()));
    assert_refused(&server, "sub", "not a file");
    assert_refused(&server, ".", "not a file");
}

/// Requests pipelined in one write are answered in order, each header
/// followed by its own body, refusals included.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = TempDir::new("pipelined");
    let big = Rng::new(0xB16).bytes(300 * 1024); // spans many writes
    std::fs::write(dir.root().join("a.txt"), b"alpha").unwrap();
    std::fs::write(dir.root().join("big.bin"), &big).unwrap();
    std::fs::write(dir.root().join("b.txt"), b"bravo!").unwrap();
    std::fs::write(dir.root().join("empty"), b"").unwrap();
    let server = start(files_config(&dir.root()));
    let mut s = server.connect();
    s.write_all(b"a.txt\nbig.bin\nnope\r\nempty\nb.txt\n")
        .unwrap();

    let (h, body) = read_reply(&mut s);
    assert_eq!(
        (h, body),
        (json!({ "name": "a.txt", "size": 5 }), b"alpha".to_vec())
    );
    let (h, body) = read_reply(&mut s);
    assert_eq!(h, json!({ "name": "big.bin", "size": big.len() }));
    assert!(body == big, "big.bin body differs");
    let (h, body) = read_reply(&mut s);
    assert_eq!((h, body), (json!({ "error": "not found" }), Vec::new()));
    let (h, body) = read_reply(&mut s);
    assert_eq!(
        (h, body),
        (json!({ "name": "empty", "size": 0 }), Vec::new())
    );
    let (h, body) = read_reply(&mut s);
    assert_eq!(
        (h, body),
        (json!({ "name": "b.txt", "size": 6 }), b"bravo!".to_vec())
    );
    server.wait_stats("four files served", |s| s.files_served == 4);
}

/// Files mode without a usable root does not start: `Server::bind` fails
/// when the root is unset or does not exist, and names the problem.
#[test]
fn missing_root_is_a_bind_error() {
    let dir = TempDir::new("noroot");
    let unset = Server::bind(Config {
        root: None,
        ..files_config(&dir.root())
    });
    let err = unset.expect_err("files mode without --root must not bind");
    assert!(
        matches!(err, Error::Config(ConfigError::MissingRoot)),
        "{err}"
    );

    let missing = dir.path().join("does-not-exist");
    let err = Server::bind(files_config(&missing)).expect_err("missing root must not bind");
    assert!(
        matches!(&err, Error::Root { path, .. } if *path == missing),
        "{err}"
    );

    let file = dir.outside().join("secret.txt");
    let err = Server::bind(files_config(&file)).expect_err("a file as root must not bind");
    assert!(
        matches!(&err, Error::RootNotDir { path } if *path == file),
        "{err}"
    );
}

/// A 256 MiB file to a client that reads 64 KiB at a time with pauses is
/// delivered whole, while the server's memory stays bounded: the body is read
/// from disk only as the socket drains, never buffered ahead.
#[test]
fn huge_file_to_slow_reader_streams_in_bounded_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let dir = TempDir::new("huge");
    // Sparse: instant to create, reads back as zeros.
    let f = std::fs::File::create(dir.root().join("huge.bin")).unwrap();
    f.set_len(SIZE).unwrap();
    drop(f);
    let server = start(files_config(&dir.root()));
    let mut s = server.connect();
    let rss_before = self_rss_kib();
    let started = Instant::now();

    s.write_all(b"huge.bin\n").unwrap();
    assert_eq!(
        read_header(&mut s),
        json!({ "name": "huge.bin", "size": SIZE })
    );
    // Read 64 KiB, pause, repeat: the server's socket buffer fills during
    // every pause, so it must stop reading the file and wait for WRITABLE.
    let mut buf = vec![0xEE; CHUNK];
    let mut max_growth_kib = 0;
    for chunk in 0..SIZE / CHUNK as u64 {
        s.read_exact(&mut buf).expect("read body");
        assert!(
            buf.iter().all(|&b| b == 0),
            "non-zero byte in chunk {chunk}"
        );
        std::thread::sleep(Duration::from_micros(200));
        if chunk % 16 == 0 {
            let growth = self_rss_kib().saturating_sub(rss_before);
            max_growth_kib = max_growth_kib.max(growth);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "too slow: chunk {chunk}"
        );
    }
    let stats = server.wait_stats("file counted", |s| s.files_served == 1);
    assert!(stats.bytes_out >= SIZE);
    assert!(
        max_growth_kib < 64 * 1024,
        "RSS grew by {max_growth_kib} KiB while serving a 256 MiB file"
    );
}

/// More pipelined requests than one read holds (about 200 KiB of names):
/// every one is answered, in order. Pins the requeue after a handler that
/// stopped reading mid-batch answers everything without queueing output: no
/// readiness edge would come for the requests still in the kernel.
#[test]
fn pipelined_requests_beyond_one_read_are_all_answered() {
    const REQUESTS: usize = 8_000;
    let dir = TempDir::new("pipelined-many");
    std::fs::write(dir.root().join("x"), b"!").unwrap();
    let server = start(files_config(&dir.root()));
    let s = server.connect();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..REQUESTS {
            // Mostly misses with long names: small replies, all written
            // at once, so no interest change re-arms the socket for us.
            if i % 100 == 0 {
                batch.extend_from_slice(b"x\n");
            } else {
                batch.extend_from_slice(format!("missing-{i:040}\n").as_bytes());
            }
        }
        writer.write_all(&batch).unwrap();
    });
    let mut s = s;
    for i in 0..REQUESTS {
        let (h, body) = read_reply(&mut s);
        if i % 100 == 0 {
            assert_eq!(
                (h, body),
                (json!({ "name": "x", "size": 1 }), b"!".to_vec()),
                "reply {i}"
            );
        } else {
            assert_eq!(h, json!({ "error": "not found" }), "reply {i}");
        }
    }
    sender.join().unwrap();
}

/// A file another process holds a write lease on (fcntl F_SETLEASE) cannot
/// be opened without waiting for the holder: the server does not wait (that
/// would stall every connection for the lease-break time) and answers
/// `{"error":"busy"}`, not "not found"; once the lease is gone the file is
/// served.
#[test]
fn a_leased_file_is_busy() {
    use std::os::fd::AsRawFd;
    let t = TempDir::new("lease");
    std::fs::write(t.root().join("leased.txt"), b"contents").unwrap();
    // The server runs as its own process: a lease only conflicts with
    // opens by others.
    let root = t.root().to_string_lossy().into_owned();
    let server = common::spawn_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--no-udp",
        "--mode",
        "files",
        "--root",
        &root,
    ]);
    let holder = std::fs::File::open(t.root().join("leased.txt")).unwrap();
    // Breaking the lease signals its holder (this test process) with SIGIO,
    // whose default action would end it.
    // SAFETY: signal(2) with SIG_IGN changes no memory of ours.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    // SAFETY: fcntl on a descriptor we own; F_SETLEASE takes an int.
    let rc = unsafe { libc::fcntl(holder.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    if rc != 0 {
        // Some filesystems (and `fs.leases-enable = 0`) refuse leases.
        let e = std::io::Error::last_os_error();
        eprintln!("skipping: cannot take a lease under {root}: {e}");
        return;
    }
    let mut s = common::connect(server.tcp);
    let (header, body) = request(&mut s, "leased.txt");
    assert_eq!(header, json!({ "error": "busy" }));
    assert!(body.is_empty());
    // SAFETY: as above; F_UNLCK releases the lease.
    let rc = unsafe { libc::fcntl(holder.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    assert_eq!(rc, 0);
    let (header, body) = request(&mut s, "leased.txt");
    assert_eq!(header, json!({ "name": "leased.txt", "size": 8 }));
    assert_eq!(body, b"contents");
}

/// Size of the sparse file the idle-timeout download tests ask for.
const BIG_SIZE: u64 = 64 * 1024 * 1024;

/// A server with `--idle-timeout 1` serving a sparse `BIG_SIZE`-byte file, and
/// a client that asked for it and read the header: the body comes next.
fn big_download_with_idle_timeout_1s(tag: &str) -> (TempDir, Running, TcpStream) {
    let dir = TempDir::new(tag);
    let f = std::fs::File::create(dir.root().join("big.bin")).unwrap();
    f.set_len(BIG_SIZE).unwrap();
    drop(f);
    let config = Config {
        idle_timeout: Some(Duration::from_secs(1)),
        ..files_config(&dir.root())
    };
    let server = start(config);
    let mut s = server.connect();
    s.write_all(b"big.bin\n").unwrap();
    assert_eq!(
        read_header(&mut s),
        json!({ "name": "big.bin", "size": BIG_SIZE })
    );
    (dir, server, s)
}

/// A download read steadily but slowly (about 250 KiB/s) outlives an idle
/// timeout of 1 s many times over: bytes move to the client all along.
/// The server itself writes only when its socket buffer (autotuned to
/// megabytes) has room again, which at this pace is seconds apart, so
/// counting only our own writes closed it as idle after 1 s and cut the
/// body short. The kernel's sending to the peer counts too.
#[test]
fn a_slow_steady_download_is_not_idle() {
    const STEP: usize = 25 * 1024;
    let (_dir, server, mut s) = big_download_with_idle_timeout_1s("slow-steady");
    let mut buf = vec![0; STEP];
    let started = Instant::now();
    let mut got = 0usize;
    while started.elapsed() < Duration::from_secs(5) {
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed after {got} of {BIG_SIZE} bytes, {:?} in (idle closes: {})",
                started.elapsed(),
                server.stats().idle_closes
            ),
            Ok(n) => got += n,
            Err(e) => panic!("read: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.stats().idle_closes, 0);
}

/// A downloader that stops reading is closed as idle with a reset, not a
/// FIN queued behind the megabytes it did not take: those would stay in
/// the kernel, retried for minutes, after the server let go of them. The
/// client sees the reset once it reads again, well before the body's end.
#[test]
fn a_stalled_download_is_reset_when_it_idles() {
    let (_dir, server, mut s) = big_download_with_idle_timeout_1s("stalled");
    // Stop reading until the server gave up on us.
    wait_until("an idle close", || server.stats().idle_closes > 0);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0; 1 << 16];
    let mut got = 0u64;
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n as u64,
            Err(e) => break Err(e),
        }
    };
    assert!(got < BIG_SIZE, "the whole body came");
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "after {got} bytes"
    );
}
