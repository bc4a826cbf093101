//! The metrics endpoint checked by the real thing: `promtool check metrics`
//! on a scrape, and a real Prometheus server scraping echoloop on loopback.
//!
//! Both need Debian's `prometheus` package (`promtool`, `prometheus`), which
//! `.ci/run` installs. Where the binaries are missing, the tests fail if
//! `CI` or `ECHOLOOP_REQUIRE_PROMETHEUS` is set (CI must run them for real)
//! and are otherwise skipped with a loud message, so `cargo test` still
//! works on a fresh machine.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::http;
use common::{start, test_config};
use echoloop::Config;

/// How long a real Prometheus gets to start, scrape and answer (it scrapes
/// every second; on an idle machine this takes 2-3 s).
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(90);

/// `name` from PATH, or `None` (after saying so loudly) where the tests
/// may be skipped; panics where they must run.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    let required = ["CI", "ECHOLOOP_REQUIRE_PROMETHEUS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty() && s != "false"));
    let msg = format!(
        "`{name}` not found on PATH: install Debian's prometheus package \
         (apt-get install -y prometheus, as .ci/run does)"
    );
    assert!(!required, "{msg}");
    // Straight to stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must not pass unseen.
    let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {msg} !!!!!\n");
    None
}

/// Waits for `child` with a deadline; kills it past the deadline.
fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{:?} still running after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `promtool check metrics` on `exposition`: (success, its output).
fn promtool_check(promtool: &Path, exposition: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (status.success(), text)
}

/// A scrape passes `promtool check metrics` (format and lint: names, help,
/// counter suffixes, histogram buckets) without a single remark.
#[test]
fn promtool_accepts_a_scrape() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let server = start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..test_config()
    });
    let _ = common::send_all_then_fin(&mut server.connect(), b"ping");
    server.wait_stats("a connection closed", |s| s.closed == 1);
    let exposition = http::scrape(server.metrics.unwrap());
    let (ok, remarks) = promtool_check(&promtool, &exposition);
    assert!(ok && remarks.trim().is_empty(), "{remarks}\n{exposition}");
    // The check can fail: a broken exposition is refused.
    let broken = exposition.replace("echoloop_accepted_total 1", "echoloop_accepted_total{ 1");
    assert!(
        !promtool_check(&promtool, &broken).0,
        "promtool took {broken}"
    );
    server.stop();
}

/// A real Prometheus, scraping echoloop every second, reports through its
/// query API the number of connections echoloop accepted.
#[test]
fn prometheus_scrapes_accepted_connections() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let server = start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..test_config()
    });
    for _ in 0..4 {
        let _ = common::send_all_then_fin(&mut server.connect(), b"ping");
    }
    server.wait_stats("4 connections closed", |s| s.closed == 4);
    let target = server.metrics.unwrap();

    let started = Instant::now();
    let mut last = String::new();
    // The web port is found by binding port 0 and releasing it; another
    // process may take it in between, so a Prometheus that exits early is
    // retried on a fresh port.
    for attempt in 1..=3 {
        let mut prom = RunningPrometheus::start(&prometheus, target, attempt);
        let query = http::get_request(prom.web, "/api/v1/query?query=echoloop_accepted_total");
        while started.elapsed() < PROMETHEUS_DEADLINE && prom.is_running() {
            if let Ok(raw) = http::try_raw_bytes(prom.web, &query, false) {
                last = String::from_utf8_lossy(&raw).to_string();
                if accepted_in(&last) == Some(4.0) {
                    return; // `prom` stops and cleans up on drop
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if prom.is_running() {
            break; // out of time, not an early exit
        }
        last = format!("prometheus exited early; its log:\n{}", prom.log());
    }
    panic!("prometheus never reported echoloop_accepted_total 4; last: {last}");
}

/// The value of `echoloop_accepted_total` in a query API response.
fn accepted_in(response: &str) -> Option<f64> {
    let body = response.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let result = json["data"]["result"].as_array()?.first()?;
    assert_eq!(result["metric"]["job"], "echoloop", "{body}");
    result["value"][1].as_str()?.parse().ok()
}

/// A Prometheus child process in its own temporary directory, stopped and
/// removed on drop.
struct RunningPrometheus {
    child: Child,
    dir: PathBuf,
    web: SocketAddr,
}

impl RunningPrometheus {
    fn start(binary: &Path, target: SocketAddr, attempt: u32) -> RunningPrometheus {
        let dir = std::env::temp_dir().join(format!(
            "echoloop-prometheus-{}-{attempt}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: echoloop\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let web = free_port();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        RunningPrometheus { child, dir, web }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for RunningPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}
