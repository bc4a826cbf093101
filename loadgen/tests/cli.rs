//! The built `loadgen` binary: exit statuses, `--json`, output files, `merge`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{closed_port, tcp_peer, Behaviour, Scratch};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the binary, killing it (and failing the test) if it is still going after `limit`.
fn loadgen_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            panic!("{args:?} still running after {limit:?}: {err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

const QUICK: [&str; 8] = [
    "--connections",
    "2",
    "--warmup",
    "100ms",
    "--duration",
    "300ms",
    "--quiet",
    "--pipeline=2",
];

fn run_against(addr: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--target", addr];
    args.extend(QUICK);
    args.extend(extra);
    loadgen(&args)
}

/// `--json` prints one JSON object with the documented keys, and a clean run exits 0.
#[test]
fn json_parses_and_clean_run_exits_0() {
    let peer = tcp_peer(Behaviour::Echo);
    let out = run_against(&peer.addr.to_string(), &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "messages",
        "duration_s",
        "msgs_per_sec",
        "bytes_per_sec",
        "latency_us",
        "errors",
        "connections",
        "settings",
    ] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    for key in ["min", "p50", "p90", "p99", "p999", "p9999", "max", "mean"] {
        assert!(v["latency_us"][key].as_f64().is_some(), "latency_us.{key}");
    }
    assert!(v["messages"].as_u64().unwrap() > 0);
    assert_eq!(v["connections"]["opened"], 2);
    assert_eq!(v["settings"]["pipeline"], 2);
}

/// Usage errors exit 2 with a message naming the problem.
#[test]
fn usage_errors_exit_2() {
    for (args, needle) in [
        (vec!["--duration", "ten"], "500ms"),
        (vec!["--size", "8"], "--size"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--no-such-flag"], "no-such-flag"),
        (vec!["--target", "not an address"], "--target"),
        (vec!["merge"], "FILES"),
    ] {
        let out = loadgen(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `--help` exits 0, shows the defaults and how durations are written, and ends with what
/// the exit status means.
#[test]
fn help_explains_defaults_durations_and_exit_status() {
    let out = loadgen(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{help}");
    for needle in [
        "[default: 10s]",
        "1.5s",
        "merge",
        "Exit status: 0",
        "2 usage error",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// A fraction with a unit (`1.5s`, as users write it) and bare seconds are durations; a
/// bad one is a usage error naming the flag and showing what would work.
#[test]
fn durations_take_fractions_and_bad_ones_name_the_flag() {
    for (text, shown) in [
        ("1.5s", "1.5s"),
        ("1.5", "1.5s"),
        ("0.5m", "30s"),
        (".5s", "500ms"),
    ] {
        let out = loadgen(&["--check", "--duration", text]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}: {out:?}");
        assert!(
            said.contains(&format!("duration {shown},")),
            "{text}: {said}"
        );
    }
    let out = loadgen(&["--warmup", "1.5 parsecs"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in ["--warmup", "1.5 parsecs", "500ms", "1.5s", "1h 30m"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// Values that used to panic (a duration past what `Duration` holds), spin (a rate so high
/// every message is due at once), overflow a deadline or allocate without bound (pipeline x
/// connections) are usage errors: exit 2 at once, naming the flag. The target refuses, so
/// a value let through by mistake cannot load anything.
#[test]
fn out_of_range_values_exit_2() {
    let target = closed_port().to_string();
    for (args, needles) in [
        (
            &["--duration", "1000000000000000000000000h"][..],
            &["--duration", "too long"][..],
        ),
        (
            &["--warmup", "99999999999999999999999"],
            &["--warmup", "too long"],
        ),
        (&["--duration", "8761h"], &["--duration", "365 days"]),
        (&["--warmup", "9000h"], &["--warmup", "365 days"]),
        (
            &["--udp", "--udp-timeout", "9000h"],
            &["--udp-timeout", "365 days"],
        ),
        (&["--rate", "0"], &["--rate", "positive"]),
        (&["--rate", "NaN"], &["--rate", "positive"]),
        (&["--rate", "inf"], &["--rate", "positive"]),
        (&["--rate", "1e300"], &["--rate", "at most"]),
        (&["--connect-rate", "NaN"], &["--connect-rate", "positive"]),
        (
            &["--connections", "4294967296"],
            &["--connections", "1000000"],
        ),
        (
            &["--pipeline", "4294967295", "--connections", "1000000"],
            &["--pipeline", "65536"],
        ),
        (
            &["--pipeline", "65536", "--connections", "100000"],
            &["--connections", "buffers", "--pipeline"],
        ),
        (&["--size", "100000000"], &["--size", "at most"]),
        (
            &["--threads", "2000", "--connections", "5000"],
            &["--threads"],
        ),
        // Open loop has no pipeline: both flags are named.
        (
            &["--rate", "100", "--pipeline", "4"],
            &["--pipeline", "--rate"],
        ),
        (
            &["--udp", "--udp-timeout", "0"],
            &["--udp-timeout", "must be greater than 0"],
        ),
        (
            &["--udp", "--udp-batch", "0"],
            &["--udp-batch", "between 1 and 1024"],
        ),
    ] {
        let mut all = vec!["--target", &target, "--quiet"];
        all.extend(args);
        let out = loadgen_within(&all, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: {needle}: {err}");
        }
    }
}

/// A corrupting peer makes the binary exit 1, with the report still printed.
#[test]
fn corruption_exits_1_with_report() {
    let peer = tcp_peer(Behaviour::FlipByteAt(200));
    let out = run_against(&peer.addr.to_string(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("corrupt 1") && text.contains("FAIL"),
        "{text}"
    );
}

/// A target that refuses connections exits 1 quickly with exactly the line the README
/// shows, and nothing else: no "warming up", no log line per failure, no progress line for
/// a second that never ran, no "(os error N)", the address once (TCP and UDP alike).
#[test]
fn refused_exits_1_quickly_with_one_line() {
    let target = closed_port().to_string();
    for (extra, n) in [(&[][..], 50), (&["--udp", "--connections", "3"][..], 3)] {
        let mut args = vec!["--target", &target, "--duration", "10s"];
        args.extend(extra);
        let started = Instant::now();
        // Progress on, default logging: what a user sees.
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let want = format!(
            "loadgen: error: could not connect to {target}: Connection refused \
             ({n} of {n} connections failed)\n"
        );
        assert_eq!(err, want, "{extra:?}");
        assert!(out.stdout.is_empty(), "{extra:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

/// A refused target with very many connections: the one line comes at once, and counts
/// right. loadgen gives up after the first thousand or so failures when none opened, and
/// says how many of how many it tried, instead of trying every one (or losing count).
#[test]
fn refused_with_many_connections_is_one_line_at_once() {
    let target = closed_port().to_string();
    // As many as this machine's hard open-files limit allows, up to 20,000.
    let hard = rlimit_nofile_hard();
    let n = hard.saturating_sub(200).min(20_000);
    let asked = n.to_string();
    let args = [
        "--target",
        &target,
        "--connections",
        &asked,
        "--duration",
        "10s",
    ];
    let started = Instant::now();
    let out = loadgen_within(&args, Duration::from_secs(30));
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    let prefix = format!("loadgen: error: could not connect to {target}: Connection refused (");
    let counts = err.strip_prefix(&prefix).expect(&err);
    if n as usize > loadgen::GIVE_UP_AFTER {
        let tail = format!(
            " of {n} connections failed and none opened, so loadgen gave up on the rest)\n"
        );
        let failed: u64 = counts
            .strip_prefix("the first ")
            .and_then(|c| c.strip_suffix(&tail))
            .and_then(|c| c.parse().ok())
            .expect(&err);
        assert!((1024..n).contains(&failed), "{err}");
    } else {
        assert_eq!(counts, format!("{n} of {n} connections failed)\n"));
    }
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// The hard open-files limit of this process (what the binary raises its soft limit to).
fn rlimit_nofile_hard() -> u64 {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or(1_000_000)
}

/// Output paths are opened before any traffic: a directory, a missing directory, or a file
/// that opens but refuses writes (/proc/version, /dev/full) as --hgrm, --plot or --hlog
/// fails at once (not after the measured time, not after printing a report), exit 1 like
/// any file that cannot be written, and a file the failed run created is not left behind.
#[test]
fn bad_output_paths_fail_before_the_run() {
    let tmp = Scratch::new();
    let peer = tcp_peer(Behaviour::Echo);
    let addr = peer.addr.to_string();
    let dir = tmp.path("out-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no-such-dir").join("x.svg");
    let (dir, missing) = (dir.to_str().unwrap(), missing.to_str().unwrap());
    let fresh = tmp.path("fresh.hgrm");
    let _ = std::fs::remove_file(&fresh);
    let mut cases = vec![
        ("--plot", dir, "Is a directory"),
        ("--hgrm", dir, "Is a directory"),
        ("--hlog", dir, "Is a directory"),
        ("--plot", missing, "No such file or directory"),
    ];
    // Paths that open but refuse writes: caught by a write of zero bytes up front.
    if cfg!(target_os = "linux") {
        cases.extend([
            ("--hgrm", "/proc/version", "Input/output error"),
            ("--hlog", "/proc/version", "Input/output error"),
            ("--plot", "/dev/full", "No space left on device"),
        ]);
    }
    for (flag, path, why) in cases {
        // A second, good output file, which must not be left behind either.
        let other = if flag == "--hgrm" { "--plot" } else { "--hgrm" };
        let args = [
            "--target",
            &addr,
            "--duration",
            "10s",
            other,
            fresh.to_str().unwrap(),
            flag,
            path,
        ];
        let started = Instant::now();
        let out = loadgen_within(&args, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {path}: {err}");
        assert_eq!(err, format!("loadgen: error: cannot write {path}: {why}\n"));
        assert!(out.stdout.is_empty(), "{flag} {path}: a report was printed");
        assert!(started.elapsed() < Duration::from_secs(3), "{flag} {path}");
        assert!(!fresh.exists(), "{flag} {path}: left {fresh:?} behind");
    }
    // merge checks its outputs before reading too.
    let out = loadgen(&["merge", "--plot", dir, "no-such.hlog"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot write {dir}: Is a directory")),
        "{err}"
    );
}

/// An existing --hgrm file survives a run that ends without a report, and is replaced by
/// one that has a report.
#[test]
fn existing_output_file_is_replaced_only_by_a_report() {
    let tmp = Scratch::new();
    let hgrm = tmp.path("keep.hgrm");
    std::fs::write(&hgrm, "old contents that are longer than nothing\n").unwrap();
    let path = hgrm.to_str().unwrap();
    let refused = closed_port().to_string();
    let out = loadgen(&["--target", &refused, "--quiet", "--hgrm", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .starts_with("old contents"));
    let peer = tcp_peer(Behaviour::Echo);
    let out = run_against(&peer.addr.to_string(), &["--hgrm", path]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(
        text.starts_with("       Value") && !text.contains("old"),
        "{text}"
    );
}

/// In open loop, --json warns on stderr when loadgen fell behind its schedule, as the text
/// report does, and stdout stays one JSON object. A rate no loadgen can keep makes sure
/// (the backlog then goes out in the drain, up to its timeout, 1 s here, and what is still
/// owed then counts missing: exit 0 or 1, either way with the warning).
#[test]
fn json_open_loop_warns_on_stderr_when_behind() {
    let peer = tcp_peer(Behaviour::Echo);
    let args = [
        "--target",
        &peer.addr.to_string(),
        "--connections",
        "1",
        "--size",
        "1024",
        "--rate",
        "100000000",
        "--warmup",
        "0",
        "--duration",
        "300ms",
        "--drain-timeout",
        "1s",
        "--quiet",
        "--json",
    ];
    let out = loadgen_within(&args, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["schedule"]["late_sends"].as_u64().unwrap() > 0, "{v}");
    assert!(
        err.starts_with("WARNING loadgen fell behind its schedule (")
            && err.contains("% of sends late)."),
        "{err}"
    );
}

/// --hgrm, --plot and --hlog write their files; `merge` reads the log back with the same
/// message count.
#[test]
fn output_files_and_merge() {
    let tmp = Scratch::new();
    let peer = tcp_peer(Behaviour::Echo);
    let (hgrm, plot, hlog) = (
        tmp.path("cli.hgrm"),
        tmp.path("cli.svg"),
        tmp.path("cli.hlog"),
    );
    let paths = [
        hgrm.to_str().unwrap(),
        plot.to_str().unwrap(),
        hlog.to_str().unwrap(),
    ];
    let out = run_against(
        &peer.addr.to_string(),
        &[
            "--json", "--hgrm", paths[0], "--plot", paths[1], "--hlog", paths[2],
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // `settings` holds every flag's value, the outputs too.
    let settings = &run["settings"];
    assert_eq!(settings["json"], true, "{settings}");
    assert_eq!(settings["quiet"], true, "{settings}");
    assert_eq!(settings["hgrm"], paths[0], "{settings}");
    assert_eq!(settings["plot"], paths[1], "{settings}");
    assert_eq!(settings["hlog"], paths[2], "{settings}");
    for key in [
        "connect_timeout_s",
        "reconnect_after",
        "bind",
        "max_loss",
        "connect_rate",
    ] {
        assert!(settings.get(key).is_some(), "{key}: {settings}");
    }
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .contains("Total count"));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(
        svg.contains(&format!(">tcp {} x2 64B: ", peer.addr)),
        "{svg}"
    );
    let out = loadgen(&["merge", "--json", paths[2]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["messages"], run["messages"]);
    assert_eq!(merged["latency_us"]["max"], run["latency_us"]["max"]);
    // The log's end line carries the run's verdict; counters stay null.
    assert_eq!(merged["passed"], true, "{merged}");
    assert_eq!(merged["merged"]["shards"][0]["shard"], "0/1", "{merged}");
    for key in ["sent", "errors", "connections"] {
        assert!(merged[key].is_null(), "{key}: {merged}");
    }
    let out = loadgen(&["merge", paths[2]]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("loadgen merge: 1 log\n"), "{text}");
    assert!(text.contains("  result       PASS\n"), "{text}");
    // Cut short (the end line lost): the merge fails and says why.
    let log = std::fs::read_to_string(&hlog).unwrap();
    let cut: String = log
        .lines()
        .filter(|l| !l.starts_with("#loadgen end "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&hlog, cut).unwrap();
    let out = loadgen(&["merge", paths[2]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no end line: the run was cut short"),
        "{text}"
    );
}

/// The debug log names each connection's local address plainly (for a loopback target
/// on Linux it is 127.0.0.2: 127.0.0.1's ports are left to other programs).
#[test]
fn debug_log_names_the_local_address() {
    let peer = tcp_peer(Behaviour::Echo);
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--target", &peer.addr.to_string()])
        .args(QUICK)
        .env("RUST_LOG", "loadgen=debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // 127.0.0.2 on Linux (127.0.0.1 where a sandbox does not allow binding it).
    assert!(err.contains("connected id=0 local=127.0.0."), "{err}");
    assert!(!err.contains("Ok("), "{err}");
}

/// `merge` of a file that is not an interval log says so in words, exit 1.
#[test]
fn merge_of_a_non_log_is_a_clear_error() {
    let tmp = Scratch::new();
    let bad = tmp.path("bad.hlog");
    std::fs::write(&bad, "this is not a log\n").unwrap();
    let path = bad.to_str().unwrap();
    let out = loadgen(&["merge", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "loadgen: error: cannot read {path}: not an HdrHistogram interval log (parse error at byte 0)\n"
    );
    assert_eq!(err, want);
}
