//! files: downloads compared byte for byte, error headers, a connection cut
//! mid-body, and a server whose header is not to be trusted.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;

use echoloop::{Config, Mode};

use super::common::{start, test_config, wait_until, Rng};
use super::{run_in, Client};

/// A fresh temporary directory (tempfile) holding `root/` (served) and
/// `out/` (the client's working directory), removed on drop.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("echoloop-client-{test}-"))
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    /// The names in `out/`, sorted.
    fn downloaded(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.out())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn files_config(root: &Path) -> Config {
    Config {
        mode: Mode::Files,
        root: Some(root.to_path_buf()),
        ..test_config()
    }
}

/// Bytes the kernel may buffer on one loopback connection at most: the
/// receiver's largest autotuned window plus the sender's largest buffer
/// (`tcp_rmem` and `tcp_wmem` maxima), or 16 MiB where they are unreadable.
fn socket_buffer_bytes() -> usize {
    let max = |file: &str| -> Option<usize> {
        let text = fs::read_to_string(format!("/proc/sys/net/ipv4/{file}")).ok()?;
        text.split_whitespace().nth(2)?.parse().ok()
    };
    match (max("tcp_rmem"), max("tcp_wmem")) {
        (Some(r), Some(w)) => r + w,
        _ => 16 * 1024 * 1024,
    }
}

/// A file larger than everything the socket buffers can hold arrives byte
/// for byte, under the name asked for, with no temporary file left behind.
#[test]
fn downloads_a_file_larger_than_the_socket_buffers() {
    let dir = TempDir::new("big");
    // Capped so a machine tuned for huge windows does not make this slow.
    let size = (socket_buffer_bytes() + 1024 * 1024).min(128 * 1024 * 1024);
    let data = Rng::new(0xC11E).bytes(size);
    fs::write(dir.root().join("big.bin"), &data).unwrap();
    let server = start(files_config(&dir.root()));
    let out = run_in(
        &dir.out(),
        &["--mode", "files", &server.tcp.to_string(), "big.bin"],
        b"",
    );
    out.assert_code(0);
    assert_eq!(
        out.stdout(),
        format!("big.bin: {size} bytes saved to ./big.bin\n")
    );
    assert!(fs::read(dir.out().join("big.bin")).unwrap() == data);
    assert_eq!(dir.downloaded(), ["big.bin"]);
    server.wait_stats("file counted", |s| s.files_served == 1);
}

/// The example root the README serves (`examples/public`) holds hello.txt,
/// and the README's download command fetches it into `--output-dir`.
#[test]
fn downloads_from_the_shipped_example_root() {
    let dir = TempDir::new("public");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/public");
    let server = start(files_config(&root));
    let out_dir = dir.out().to_string_lossy().into_owned();
    let out = run_in(
        Path::new("."),
        &[
            "--mode",
            "files",
            "-o",
            &out_dir,
            &server.tcp.to_string(),
            "hello.txt",
        ],
        b"",
    );
    out.assert_code(0);
    let want = fs::read(root.join("hello.txt")).unwrap();
    assert_eq!(fs::read(dir.out().join("hello.txt")).unwrap(), want);
}

/// An error header (not found, not allowed) is reported with the server's
/// words and the name; the connection stays usable, so the other names
/// still download; exit 1 counting the failures; no file for the refused.
#[test]
fn error_headers_are_reported_and_the_rest_download() {
    let dir = TempDir::new("refused");
    fs::write(dir.root().join("ok.txt"), b"fine").unwrap();
    fs::write(dir.path().join("secret.txt"), b"outside the root").unwrap();
    let server = start(files_config(&dir.root()));
    let addr = server.tcp.to_string();
    let out = run_in(
        &dir.out(),
        &[
            "--mode",
            "files",
            &addr,
            "missing.txt",
            "ok.txt",
            "../secret.txt",
        ],
        b"",
    );
    out.assert_code(1)
        .assert_stderr("missing.txt: the server answered with an error: not found")
        .assert_stderr("../secret.txt: the server answered with an error: not allowed")
        .assert_stderr("2 of 3 downloads failed");
    assert_eq!(out.stdout(), "ok.txt: 4 bytes saved to ./ok.txt\n");
    assert_eq!(dir.downloaded(), ["ok.txt"]);
}

/// A connection cut mid-body: the served file shrinks while it streams, so
/// the server, unable to keep the header's promise, closes. The client says
/// how far it got, exits 1, removes its temporary file, and leaves an
/// existing file of that name untouched (never a truncated download that
/// looks complete).
#[test]
fn connection_cut_mid_body_leaves_no_file() {
    let dir = TempDir::new("cut");
    // Sparse: costs no disk, and far more than can cross before we cut it.
    let size: u64 = 512 * 1024 * 1024;
    let served = fs::File::create(dir.root().join("big.bin")).unwrap();
    served.set_len(size).unwrap();
    fs::write(dir.out().join("big.bin"), b"the old file").unwrap();
    let server = start(files_config(&dir.root()));

    let mut client = Client::spawn_in(
        &dir.out(),
        &["--mode", "files", &server.tcp.to_string(), "big.bin"],
    );
    client.close_stdin();
    let part = dir.out().join(format!(".big.bin.part-{}", client.pid()));
    wait_until("the body to start arriving", || {
        fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    // The server reads the body from disk as the socket drains; its next
    // read now finds the end of the file.
    served.set_len(0).unwrap();
    let status = client.wait_exit();

    let stderr = client.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("the server closed the connection after ")
            && stderr.contains(&format!(" of the {size} bytes of the file body")),
        "{stderr}"
    );
    assert_eq!(dir.downloaded(), ["big.bin"], "temporary file left behind");
    assert_eq!(
        fs::read(dir.out().join("big.bin")).unwrap(),
        b"the old file"
    );
    server.wait_stats("the cut counted", |s| s.protocol_errors == 1);
}

/// The server is untrusted input: a header naming another file than the
/// one asked for (here a path out of the directory) is a protocol error,
/// and nothing is written anywhere.
#[test]
fn header_naming_another_file_is_refused() {
    let dir = TempDir::new("evil");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let evil = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        BufReader::new(&stream)
            .read_until(b'\n', &mut request)
            .unwrap();
        let header = br#"{"name":"../evil.txt","size":4}"#;
        let mut reply = (header.len() as u32).to_be_bytes().to_vec();
        reply.extend_from_slice(header);
        reply.extend_from_slice(b"evil");
        (&stream).write_all(&reply).unwrap();
        request
    });
    let out = run_in(&dir.out(), &["--mode", "files", &addr, "innocent.txt"], b"");
    assert_eq!(evil.join().unwrap(), b"innocent.txt\n");
    out.assert_code(1).assert_stderr(
        r#"the server broke the protocol: asked for "innocent.txt", the header is for "../evil.txt""#,
    );
    assert!(dir.downloaded().is_empty());
    assert!(!dir.path().join("evil.txt").exists());
}

/// Asking an echo server for a file: the "header length" is the echo of
/// the name's first four bytes, 1.7 GB, refused before any allocation.
#[test]
fn implausible_header_length_is_refused() {
    let dir = TempDir::new("echo");
    let server = start(test_config());
    let out = run_in(
        &dir.out(),
        &[
            "--mode",
            "files",
            "--timeout",
            "2",
            &server.tcp.to_string(),
            "hello.txt",
        ],
        b"",
    );
    out.assert_code(1)
        .assert_stderr("a header length of 1751477356 bytes")
        .assert_stderr("is this a files-mode server?");
    assert!(dir.downloaded().is_empty());
}
