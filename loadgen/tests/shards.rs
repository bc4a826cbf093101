//! Sharded runs: several `loadgen --shard I/N --start-at T` processes (the built binary)
//! against one echoloop, merged into one verdict with `loadgen merge`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::echoloop::start;
use common::{closed_port, Scratch};

/// Starts one shard of a 30-connection run at `rate` in total for `duration`, measured
/// from `start_at` (Unix seconds), logging to `hlog`.
fn shard(
    target: &str,
    i: usize,
    rate: &str,
    duration: &str,
    start_at: f64,
    hlog: &PathBuf,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--target", target, "--shard", &format!("{i}/3")])
        .args([
            "--connections",
            "30",
            "--rate",
            rate,
            "--duration",
            duration,
        ])
        .args([
            "--warmup",
            "500ms",
            "--drain-timeout",
            "2s",
            "--quiet",
            "--json",
        ])
        .args(["--start-at", &format!("{start_at:.3}")])
        .arg("--hlog")
        .arg(hlog)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`, killing it (and failing the test) past `deadline`.
fn wait(mut child: Child, deadline: Instant) -> Output {
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "shard still running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Unix seconds `ahead` from now.
fn unix_in(ahead: Duration) -> f64 {
    (SystemTime::now() + ahead)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn merge(logs: &[PathBuf], json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.arg("merge").args(logs);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

/// Three shards at a total --rate 6000 for 3 s apply exactly that load together: each
/// passes with its third, and the merge of their logs holds 18,000 messages (+- 2%) over
/// a common 3 s window, with a PASS.
#[test]
fn three_shards_merge_to_the_total_load() {
    let tmp = Scratch::new();
    let server = start(echoloop::Mode::Echo);
    let target = server.tcp.to_string();
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path(&format!("shard{i}.hlog")))
        .collect();
    // Room for three processes to start and connect on a loaded 2-core machine.
    let start_at = unix_in(Duration::from_millis(3500));
    let children: Vec<Child> = (0..3)
        .map(|i| shard(&target, i, "6000", "3s", start_at, &logs[i]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, child) in children.into_iter().enumerate() {
        let out = wait(child, deadline);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "shard {i}: {err}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["settings"]["shard"], format!("{i}/3"));
        assert_eq!(r["connections"]["opened"], 10, "{r}");
        let n = r["messages"].as_f64().unwrap();
        assert!((5880.0..=6120.0).contains(&n), "shard {i}: {n} messages");
    }
    let out = merge(&logs, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = m["messages"].as_f64().unwrap();
    assert!((17_640.0..=18_360.0).contains(&n), "{n} messages: {m}");
    assert_eq!(m["passed"], true, "{m}");
    assert_eq!(m["merged"]["shards"].as_array().unwrap().len(), 3);
    let (a, b) = (
        m["merged"]["common_window"][0].as_f64().unwrap(),
        m["merged"]["common_window"][1].as_f64().unwrap(),
    );
    assert!(
        (a - start_at).abs() < 0.01 && (b - a - 3.0).abs() < 0.01,
        "{m}"
    );
    let rate = m["msgs_per_sec"].as_f64().unwrap();
    assert!((5880.0..=6120.0).contains(&rate), "{rate}");
    // Thirty distinct connections reached the server: no two shards used one id's slot.
    assert_eq!(server.stats.snapshot().accepted, 30);
}

/// One shard pointed at a dead port fails, and so does the merge, naming it; leaving a
/// shard's log out fails the merge too.
#[test]
fn a_failed_or_missing_shard_fails_the_merge() {
    let tmp = Scratch::new();
    let server = start(echoloop::Mode::Echo);
    let (good, dead) = (server.tcp.to_string(), closed_port().to_string());
    let logs: Vec<PathBuf> = (0..3).map(|i| tmp.path(&format!("dead{i}.hlog"))).collect();
    let start_at = unix_in(Duration::from_millis(3000));
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let target = if i == 2 { &dead } else { &good };
            shard(target, i, "3000", "1s", start_at, &logs[i])
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .map(|c| wait(c, deadline).status.code())
        .collect();
    assert_eq!(codes, [Some(0), Some(0), Some(1)]);
    let out = merge(&logs, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("shard 2/3 ("), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
    assert!(text.contains("  result       FAIL ("), "{text}");
    let out = merge(&logs[..2], false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("shard 2/3 is missing"), "{text}");
}

/// A shard whose connect phase is still running at --start-at fails, saying by how much:
/// its window would have started without all its connections.
#[test]
fn a_connect_phase_past_start_at_fails_the_shard() {
    let server = start(echoloop::Mode::Echo);
    let mut cfg = common::quick(server.tcp);
    // Five connections at 2/s: the last opens 2 s in, 0.8 s after the start.
    (cfg.connections, cfg.connect_rate) = (5, Some(2.0));
    cfg.warmup = Duration::from_millis(1000);
    cfg.duration = Duration::from_millis(500);
    cfg.start_at = Some(SystemTime::now() + Duration::from_millis(1200));
    let r = loadgen::run(&cfg).unwrap();
    let failures = r.failures().join(", ");
    assert!(!r.passed(), "{}", r.to_text());
    assert!(failures.contains("s after --start-at"), "{failures}");
}

/// --start-at in the past, too close for the warm-up, or a day away is a usage error
/// (exit 2) naming the flag, before any connection.
#[test]
fn start_at_out_of_range_is_a_usage_error() {
    let dead = closed_port().to_string();
    for (ahead, want) in [
        (-5.0, "in the past"),
        (0.2, "less than --warmup"),
        (200_000.0, "Unix seconds, not milliseconds?"),
    ] {
        let at = unix_in(Duration::ZERO) + ahead;
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--target", &dead, "--start-at", &format!("{at:.3}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("loadgen: error: --start-at: ") && err.contains(want),
            "{err}"
        );
    }
}
