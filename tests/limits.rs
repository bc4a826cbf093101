//! Limits: `--max-conns`, the open-files limit (EMFILE) and the idle timeout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{connect, read_n, spawn_binary, start, test_config, wait_until};

/// True if `s` gets no byte back within `wait` (the server has not accepted it).
fn silent_for(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let silent = matches!(s.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut);
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    silent
}

/// At max-conns the server stops accepting: the next client waits in the
/// backlog unserved. When a slot frees, it is accepted and served.
#[test]
fn max_conns_pauses_accepting_until_a_slot_frees() {
    let mut config = test_config();
    config.max_conns = 3;
    let server = start(config);
    let mut held: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    server.wait_stats("three accepted", |s| s.active == 3);

    // The kernel completes the handshake (backlog), but the server does not
    // accept, so nothing echoes.
    let mut waiting = server.connect();
    waiting.write_all(b"wait").unwrap();
    assert!(
        silent_for(&mut waiting, Duration::from_millis(300)),
        "served past max-conns"
    );
    assert_eq!(server.stats().accepted, 3);

    // The held connections still work.
    held[0].write_all(b"ok").unwrap();
    assert_eq!(read_n(&mut held[0], 2), b"ok");

    // Free a slot: the waiting client is accepted and its early bytes echo.
    held.pop();
    assert_eq!(read_n(&mut waiting, 4), b"wait");
    let s = server.wait_stats("fourth accepted", |s| s.accepted == 4);
    assert_eq!(s.active, 3);
}

/// max-conns is clamped below the open-files limit, and start-up says so.
#[test]
fn max_conns_is_clamped_below_the_open_files_limit() {
    // Run through sh so `ulimit` lowers both soft and hard limits for the
    // child only.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 100 && exec {} --listen 127.0.0.1:0 --no-udp --max-conns 5000",
            env!("CARGO_BIN_EXE_echoloop")
        ))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The start-up line comes after the clamp; read stderr until it appears.
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + common::WAIT;
    while !log.contains("tcp=") && Instant::now() < deadline {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => log.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("max_conns=64"), "log: {log}");
    assert!(log.contains("ulimit -n"), "no hint how to raise it: {log}");
}

/// When accept fails with EMFILE the server pauses accepting, logs it once
/// for the burst (no busy loop, no crash), and serves the waiting clients
/// once descriptors are available again.
#[test]
fn emfile_pauses_accepting_and_recovers() {
    let mut server = spawn_binary(&["--listen", "127.0.0.1:0", "--no-udp"]);
    let pid = server.process.id() as i32;
    let original = set_nofile(pid, None);
    // Room for what the server has open plus two clients.
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    set_nofile(pid, Some(open_fds + 2));

    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(server.tcp)).collect();
    server.wait_log("accept error warning", "accept failed");
    // Not synchronisation but an observation window: the claim is that
    // nothing more is logged while the server retries, and retries come
    // every 100 ms, so watch through several of them.
    std::thread::sleep(Duration::from_millis(500));
    let warnings = server
        .log()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert_eq!(warnings, 1, "logged more than once per burst");
    assert!(server.process.try_wait().unwrap().is_none(), "server died");

    // Descriptors back: every client is served.
    set_nofile(pid, Some(original));
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&[i as u8]).unwrap();
        assert_eq!(read_n(c, 1), [i as u8]);
    }
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
    let stopped = server.wait_log("final counters", "stopped:");
    assert!(stopped.contains("accepted=10 "), "{stopped}");
    assert!(!stopped.contains("accept_errors=0 "), "{stopped}");
}

/// Sets `pid`'s soft open-files limit (if `soft` is given) and returns the
/// previous one.
// rlim_t is u64 on Linux but not everywhere: the casts are for the others.
#[allow(clippy::unnecessary_cast)]
fn set_nofile(pid: i32, soft: Option<u64>) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new = soft.map(|s| libc::rlimit {
        rlim_cur: s as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    });
    // Keep the hard limit as it is.
    let new = new.map(|mut n| {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit only reads/writes the structs we own.
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut cur) };
        n.rlim_max = cur.rlim_max;
        n
    });
    let new_ptr = new.as_ref().map_or(std::ptr::null(), |n| n as *const _);
    // SAFETY: as above; pid is our own child.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, new_ptr, &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur as u64
}

/// A connection that says nothing for the idle timeout is closed and
/// counted; one that keeps talking is not.
#[test]
fn idle_connections_are_closed() {
    let mut config = test_config();
    config.idle_timeout = Some(Duration::from_millis(500));
    let server = start(config);
    let mut idle = server.connect();
    let mut busy = server.connect();
    let started = Instant::now();

    // Talk on `busy` every 100 ms while `idle` times out.
    let mut closed = false;
    wait_until("the idle connection to close", || {
        busy.write_all(b"x").unwrap();
        assert_eq!(read_n(&mut busy, 1), b"x", "busy connection was closed");
        idle.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 1];
        closed = matches!(idle.read(&mut b), Ok(0));
        closed
    });
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "closed too early"
    );
    let s = server.stats();
    assert_eq!(s.idle_closes, 1);
    assert_eq!(s.active, 1);
}

/// `idle_timeout: None` (`--idle-timeout 0`) never closes a quiet connection.
#[test]
fn idle_timeout_zero_means_never() {
    let mut config = test_config();
    config.idle_timeout = None;
    let server = start(config);
    let mut s = server.connect();
    assert!(silent_for(&mut s, Duration::from_millis(700)));
    s.write_all(b"still open").unwrap();
    assert_eq!(read_n(&mut s, 10), b"still open");
    assert_eq!(server.stats().idle_closes, 0);
}
