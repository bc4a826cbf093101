//! The built `loadgen` binary: exit statuses, `--json`, output files, `merge`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{closed_port, tcp_peer, temp_path, Behaviour};

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

/// A target that refuses connections exits 1 quickly with a clear message.
#[test]
fn refused_exits_1_quickly() {
    let started = Instant::now();
    let out = loadgen(&[
        "--target",
        &closed_port().to_string(),
        "--duration",
        "10s",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not connect") && err.contains("refused"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// --hgrm, --plot and --hlog write their files; `merge` reads the log back with the same
/// message count.
#[test]
fn output_files_and_merge() {
    let peer = tcp_peer(Behaviour::Echo);
    let (hgrm, plot, hlog) = (
        temp_path("cli.hgrm"),
        temp_path("cli.svg"),
        temp_path("cli.hlog"),
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
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .contains("Total count"));
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
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
}
