//! The command line, run through the built binary as a user would: start-up
//! line with the real ports, and one clear line (never a panic) for every
//! mistake a user can make.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{connect, send_all_then_fin, spawn_binary};

/// Runs the binary to completion (it must exit by itself within 10 s).
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + common::WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("echoloop {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Asserts a failed start: the exit code, and one stderr line (no panic,
/// no backtrace) containing every piece of `needles`.
fn assert_fails(args: &[&str], code: i32, needles: &[&str]) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("echoloop: ") || l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{args:?}: want one error line: {stderr}");
    for n in needles {
        assert!(
            errors[0].contains(n),
            "{args:?}: {:?} lacks {n:?}",
            errors[0]
        );
    }
}

/// Port 0 works: the start-up line shows the real bound TCP and UDP ports,
/// and both serve.
#[test]
fn port_zero_logs_real_addresses() {
    let server = spawn_binary(&["--listen", "127.0.0.1:0"]);
    assert_ne!(server.tcp.port(), 0);
    let udp = server.udp.expect("udp= address in the start-up line");
    assert_ne!(udp.port(), 0);
    let mut s = connect(server.tcp);
    assert_eq!(send_all_then_fin(&mut s, b"hi"), b"hi");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    sock.send_to(b"dg", udp).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(sock.recv(&mut buf).unwrap(), 2);
}

/// The bound addresses also go to stdout, whatever the log level, so a
/// script can find a port-0 server even with `RUST_LOG=off`.
#[test]
fn bound_addresses_on_stdout_even_with_logging_off() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let read = stdout.read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    let addr = |key: &str| -> std::net::SocketAddr {
        let field = line.split_whitespace().find_map(|f| f.strip_prefix(key));
        field.expect(key).parse().expect(key)
    };
    assert_ne!(addr("tcp=").port(), 0, "{line}");
    assert_ne!(addr("udp=").port(), 0, "{line}");
}

/// `--no-udp` says `udp=off`; `--udp` picks a separate address.
#[test]
fn udp_flags() {
    let server = spawn_binary(&["--listen", "127.0.0.1:0", "--no-udp"]);
    assert!(server.log()[0].contains("udp=off"), "{:?}", server.log());
    let server = spawn_binary(&["--listen", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    assert!(server.udp.is_some());
}

/// `--help` explains every flag.
#[test]
fn help_lists_every_flag() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--udp",
        "--no-udp",
        "--mode",
        "--max-conns",
        "--max-pending",
        "--idle-timeout",
        "--drain-timeout",
        "--backlog",
        "--stats-interval",
        "--max-frame",
        "--max-line",
        "--root",
        "--reactors",
        "--max-memory",
        "--udp-batch",
        "--no-sendfile",
        "--metrics",
        "--check",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// Unknown flags and unparsable values are usage errors (exit 2).
#[test]
fn bad_flags_exit_2() {
    assert_fails(&["--bogus"], 2, &["--bogus"]);
    assert_fails(&["--listen", "not-an-address"], 2, &["not-an-address"]);
    assert_fails(&["--max-conns", "lots"], 2, &["--max-conns", "lots"]);
    assert_fails(&["--mode", "telnet"], 2, &["telnet"]);
    assert_fails(&["--udp", "127.0.0.1:0", "--no-udp"], 2, &["--no-udp"]);
}

/// Settings that parse but cannot work are refused before binding (exit 2).
#[test]
fn unusable_settings_exit_2() {
    let l = ["--listen", "127.0.0.1:0"];
    assert_fails(
        &[&l[..], &["--max-conns", "0"]].concat(),
        2,
        &["--max-conns"],
    );
    assert_fails(
        &[&l[..], &["--max-pending", "0"]].concat(),
        2,
        &["--max-pending"],
    );
    assert_fails(&[&l[..], &["--mode", "files"]].concat(), 2, &["--root"]);
    let huge = u64::MAX.to_string();
    for flag in ["--idle-timeout", "--drain-timeout", "--stats-interval"] {
        assert_fails(&[&l[..], &[flag, &huge]].concat(), 2, &[flag]);
    }
    assert_fails(
        &[&l[..], &["--max-line", &huge]].concat(),
        2,
        &["--max-line"],
    );
    assert_fails(
        &[&l[..], &["--max-pending", &huge]].concat(),
        2,
        &["--max-pending"],
    );
    assert_fails(&[&l[..], &["--reactors", "0"]].concat(), 2, &["--reactors"]);
    // Every zero limit is refused, --max-frame too (a framed server would
    // otherwise answer every non-empty frame with an error).
    assert_fails(
        &[&l[..], &["--mode", "framed", "--max-frame", "0"]].concat(),
        2,
        &["--max-frame"],
    );
    assert_fails(
        &[&l[..], &["--max-memory", "0"]].concat(),
        2,
        &["--max-memory"],
    );
    assert_fails(
        &[&l[..], &["--max-memory", "1000"]].concat(),
        2,
        &["--max-memory", "1048576"],
    );
    for n in ["0", "257"] {
        assert_fails(&[&l[..], &["--udp-batch", n]].concat(), 2, &["--udp-batch"]);
    }
    assert_fails(
        &[&l[..], &["--mode", "chat", "--reactors", "2"]].concat(),
        2,
        &["--reactors 1"],
    );
    assert_fails(
        &[&l[..], &["--root", "/tmp"]].concat(),
        2,
        &["--root", "--mode files"],
    );
}

/// `--check` validates without opening anything: valid settings exit 0 and
/// print the configuration, even on an address in use; an unusable one
/// exits 2 naming the flag, worded as a run would word it.
#[test]
fn check_validates_without_binding() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--check", "--listen", &addr, "--max-conns", "7"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("configuration ok"), "{stdout}");
    assert!(stdout.contains("max_conns: 7"), "{stdout}");
    assert_fails(
        &["--check", "--max-conns", "0"],
        2,
        &["invalid setting: --max-conns must be at least 1"],
    );
}

/// An address in use (TCP or UDP) exits 1 naming the address, with one
/// reactor or several.
#[test]
fn address_in_use_exits_1_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_fails(&["--listen", &addr, "--no-udp"], 1, &[&addr, "tcp"]);
    // Several reactors use SO_REUSEPORT, which must not let a second server
    // quietly share a port with a first one that uses it too.
    let first = spawn_binary(&["--listen", "127.0.0.1:0", "--no-udp", "--reactors", "2"]);
    let held = first.tcp.to_string();
    assert_fails(
        &["--listen", &held, "--no-udp", "--reactors", "2"],
        1,
        &[&held, "tcp"],
    );

    let taken_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uaddr = taken_udp.local_addr().unwrap().to_string();
    assert_fails(
        &["--listen", "127.0.0.1:0", "--udp", &uaddr],
        1,
        &[&uaddr, "udp"],
    );
}

/// A `--root` that does not exist, or is a file, exits 1 naming it.
#[test]
fn bad_root_exits_1() {
    let missing = std::env::temp_dir().join(format!("echoloop-no-such-dir-{}", std::process::id()));
    let missing = missing.to_string_lossy().to_string();
    assert_fails(
        &[
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "files",
            "--root",
            &missing,
        ],
        1,
        &[&missing],
    );
    let file = env!("CARGO_BIN_EXE_echoloop");
    assert_fails(
        &["--listen", "127.0.0.1:0", "--mode", "files", "--root", file],
        1,
        &["not a directory"],
    );
}

/// With `RUST_LOG=debug` every close line names the connection's id, the
/// one its open line gave next to the peer's address: by the time a
/// connection closes its socket is usually disconnected and the address
/// can no longer be asked of it (`peer=?`), so the id is what ties the two
/// lines together. Pinned for a graceful close and a reset.
#[test]
fn debug_log_ties_each_close_to_its_open_line() {
    use std::io::{Read, Write};
    let mut child = common::spawn_binary_logging(&["--listen", "127.0.0.1:0", "--no-udp"], "debug");
    let mut graceful = connect(child.tcp);
    let reset = connect(child.tcp);
    let ids: Vec<String> = [&graceful, &reset]
        .iter()
        .map(|s| {
            let peer = format!("peer={}", s.local_addr().unwrap());
            let open = child.wait_log("the open line", &format!("{peer} "));
            assert!(open.contains(" open "), "{open}");
            common::field(&open, "id=").to_string()
        })
        .collect();

    graceful.write_all(b"hi").unwrap();
    assert_eq!(common::read_n(&mut graceful, 2), b"hi");
    graceful.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    graceful.read_to_end(&mut rest).unwrap();
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);

    for (id, reason) in ids.iter().zip(["reason=Done", "reason=Reset"]) {
        let needle = format!(" id={id} ");
        let mut close = None;
        common::wait_until("the close line naming the id", || {
            close = child
                .log()
                .into_iter()
                .find(|l| l.contains(" close ") && l.contains(&needle));
            close.is_some()
        });
        let close = close.unwrap();
        assert!(close.contains(reason), "{close}");
    }
    child.signal(libc::SIGTERM);
    let status = child.process.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
