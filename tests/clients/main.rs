//! The `client` example (`examples/client/`) run as a process, the way a
//! user runs it, against the real server started in-process on 127.0.0.1
//! port 0: every mode, over TCP and UDP, and every way a run can fail.
//!
//! Finding the example: cargo sets `CARGO_BIN_EXE_<name>` for `[[bin]]`
//! targets only, not for examples. A plain `cargo test` builds the examples
//! (to check they compile) before it runs any test, but a filtered one
//! (`cargo test --test clients`) does not, and would find a missing or stale
//! binary. So [`client_exe`] runs `cargo build --example client` once per
//! test run, for the test's own target directory and profile: a no-op of a
//! fraction of a second when `cargo test` has just built it. (Cargo releases
//! its build-directory lock before running tests, so this does not wait for
//! the outer cargo.)

#[path = "../common/mod.rs"]
mod common;

mod chat;
mod files;
mod stream;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long one client run may take before the test fails (and kills it).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The built `client` example, brought up to date on first use.
pub fn client_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        // This test runs as <target-dir>/<profile>/deps/clients-HASH, and
        // cargo puts examples in <target-dir>/<profile>/examples/.
        let test_exe = std::env::current_exe().expect("test executable path");
        let profile_dir = test_exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable inside <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--locked", "--example", "client"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cargo.arg("--release");
            }
            Some(profile) => {
                cargo.args(["--profile", profile]);
            }
            None => panic!("no profile directory in {}", test_exe.display()),
        }
        let mut build = cargo.spawn().expect("run cargo");
        let status = wait_exit(
            &mut build,
            Duration::from_secs(600),
            "cargo build --example client",
        );
        assert!(status.success(), "cargo build --example client: {status}");
        let exe = profile_dir
            .join("examples")
            .join(format!("client{}", std::env::consts::EXE_SUFFIX));
        assert!(exe.is_file(), "{} was not built", exe.display());
        exe
    })
}

/// Waits up to `limit` for `child` to exit; kills it and fails otherwise.
fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A finished client run.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts the exit code, and that nothing panicked.
    pub fn assert_code(&self, code: i32) -> &Run {
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert_eq!(
            self.status.code(),
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr
        );
        self
    }

    /// Asserts stderr holds `needle`.
    pub fn assert_stderr(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs the client with `args`, feeding it `stdin`, in the current directory.
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    run_in(Path::new("."), args, stdin)
}

/// Runs the client with `args` in `dir`, feeding it `stdin` (then EOF).
pub fn run_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut client = Client::spawn_in(dir, args);
    let mut input = client.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // A thread, so a client that answers while we are still writing (or
    // quits early) cannot deadlock the test.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let status = client.wait_exit();
    let _ = writer.join();
    Run {
        status,
        stdout: client.stdout(),
        stderr: client.stderr(),
    }
}

/// A client running in the background, its stdin open, its output collected.
pub struct Client {
    child: Child,
    pub stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Client {
    pub fn spawn(args: &[&str]) -> Client {
        Client::spawn_in(Path::new("."), args)
    }

    pub fn spawn_in(dir: &Path, args: &[&str]) -> Client {
        let mut child = Command::new(client_exe())
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        let (stdout, out_reader) = collect(child.stdout.take().expect("stdout"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("stderr"));
        Client {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).expect("write to client");
        stdin.write_all(b"\n").expect("write to client");
    }

    /// Ends the input (Ctrl-D).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits for a complete stdout line matching `pred` and returns it.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        common::wait_until(what, || {
            let out = String::from_utf8_lossy(&self.stdout()).into_owned();
            found = out.lines().find(|l| pred(l)).map(str::to_string);
            if found.is_none() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "client exited ({status}) before {what}: {out}{}",
                        self.stderr()
                    );
                }
            }
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits (bounded) for the client to exit, then for its output to be
    /// collected.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child, RUN_LIMIT, "the client");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Collects everything `pipe` yields on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let into = sink.clone();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (sink, reader)
}
