//! Keeps the deploy recipes (`deploy/`) true without a Docker daemon or a
//! cluster: the echoloop command lines they contain go through the built
//! binary's own parser and validation (`echoloop --check`), and the ports,
//! probes, annotations, Service and runtime user must agree with them; the
//! loadgen Job's command line, once per shard, goes through loadgen's
//! (`loadgen --check`, the same function in-process), and the merge Job must
//! read exactly the files the shards write.
//!
//! What this cannot show: that the image builds, or that a cluster accepts
//! the manifests (no schema check is run). The README says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML document under `deploy/kubernetes/`.
fn manifests() -> Vec<Yaml> {
    let mut docs = Vec::new();
    let dir = deploy_dir().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        docs.extend(parsed);
    }
    docs
}

fn find<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

/// The document of `kind` named `name`.
fn named<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn list(y: &Yaml) -> &Vec<Yaml> {
    y.as_vec()
        .unwrap_or_else(|| panic!("expected a list, got {y:?}"))
}

/// Runs `echoloop --check ARGS`: the binary's own parser and validation.
/// Returns the configuration it prints.
fn check(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .arg("--check")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "echoloop {args:?}: {stderr}");
    assert!(stdout.starts_with("configuration ok: "), "{stdout}");
    stdout
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[i + 1]
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<std::net::SocketAddr>().unwrap().port()
}

/// `--check` really checks: a bad value or an unusable setting fails it.
#[test]
fn check_rejects_what_a_start_would() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
            .arg("--check")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stderr) = run(&["--metrics", "not-an-address"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--metrics"), "{stderr}");
    let (code, stderr) = run(&["--max-conns", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-conns"), "{stderr}");
    // It binds nothing: a port in use is not its business.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_eq!(run(&["--listen", &addr]).0, Some(0));
}

/// The Deployment's echoloop command line parses and validates, and its
/// container ports, probes, Prometheus annotations, security context and
/// Service all agree with the addresses it sets.
#[test]
fn kubernetes_deployment_and_service_agree_with_the_command_line() {
    let docs = manifests();
    let deployment = find(&docs, "Deployment");
    let pod = &deployment["spec"]["template"];
    let containers = list(&pod["spec"]["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert!(
        c["command"].is_badvalue(),
        "the image's entrypoint runs echoloop"
    );
    let args: Vec<String> = list(&c["args"]).iter().map(text).collect();
    let config = check(&args);

    let listen = flag(&args, "--listen");
    assert_eq!(listen, "0.0.0.0:7878");
    let metrics = flag(&args, "--metrics");
    assert!(config.contains(&format!("listen: {listen}")), "{config}");
    assert!(config.contains(&format!("udp: Some({listen})")), "{config}");
    assert!(
        config.contains(&format!("metrics: Some({metrics})")),
        "{config}"
    );

    // Container ports: TCP and UDP on the listen port, metrics on its own.
    let ports: Vec<(String, u16, String)> = list(&c["ports"])
        .iter()
        .map(|p| {
            let number = p["containerPort"].as_i64().unwrap() as u16;
            (text(&p["name"]), number, text(&p["protocol"]))
        })
        .collect();
    let named = |name: &str| {
        ports
            .iter()
            .find(|p| p.0 == name)
            .unwrap_or_else(|| panic!("port {name} in {ports:?}"))
    };
    let tcp = named("echo-tcp");
    let udp = named("echo-udp");
    let metrics_port = named("metrics");
    assert_eq!((tcp.1, tcp.2.as_str()), (port_of(listen), "TCP"));
    assert_eq!((udp.1, udp.2.as_str()), (port_of(listen), "UDP"));
    assert_eq!(
        (metrics_port.1, metrics_port.2.as_str()),
        (port_of(metrics), "TCP")
    );

    // Readiness: a TCP connect to the echo port. Liveness: a scrape.
    assert_eq!(text(&c["readinessProbe"]["tcpSocket"]["port"]), "echo-tcp");
    assert_eq!(text(&c["livenessProbe"]["httpGet"]["port"]), "metrics");
    assert_eq!(text(&c["livenessProbe"]["httpGet"]["path"]), "/metrics");

    // Prometheus finds the metrics port through the pod's annotations.
    let notes = &pod["metadata"]["annotations"];
    assert_eq!(text(&notes["prometheus.io/scrape"]), "true");
    assert_eq!(
        text(&notes["prometheus.io/port"]),
        port_of(metrics).to_string()
    );
    assert_eq!(text(&notes["prometheus.io/path"]), "/metrics");

    // Non-root, as the image's USER.
    let security = &pod["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        security["runAsUser"].as_i64(),
        Some(i64::from(dockerfile_uid()))
    );

    // The Service selects these pods and exposes every port by name.
    let service = find(&docs, "Service");
    let labels = &pod["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_hash().unwrap() {
        assert_eq!(&labels[key.as_str().unwrap()], value, "selector {key:?}");
    }
    assert_eq!(
        &deployment["spec"]["selector"]["matchLabels"],
        &service["spec"]["selector"]
    );
    let exposed: BTreeSet<(String, String)> = list(&service["spec"]["ports"])
        .iter()
        .map(|p| (text(&p["targetPort"]), text(&p["protocol"])))
        .collect();
    let declared: BTreeSet<(String, String)> =
        ports.iter().map(|p| (p.0.clone(), p.2.clone())).collect();
    assert_eq!(exposed, declared);
}

/// The runtime stage's USER, which must be a numeric non-root uid.
fn dockerfile_uid() -> u32 {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "runs as root");
    uid
}

/// The Dockerfile builds both binaries in a build stage, ships them in a
/// separate runtime stage as a non-root user, with a toolchain new enough
/// for the workspace, and its default command line parses and validates.
#[test]
fn dockerfile_builds_both_binaries_and_runs_a_valid_command_as_non_root() {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(stages[0].ends_with(" AS build"), "{stages:?}");
    for bin in ["echoloop", "loadgen"] {
        assert!(dockerfile.contains(&format!("--bin {bin}")), "builds {bin}");
        assert!(
            dockerfile.contains(&format!("/src/target/release/{bin}")),
            "copies {bin}"
        );
    }
    assert!(dockerfile_uid() > 0);

    // rust:X.Y... must be at least the workspace's rust-version.
    let image = stages[0].split_whitespace().nth(1).unwrap();
    let tag = image.strip_prefix("rust:").expect("an official rust image");
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let toolchain = version(tag.split('-').next().unwrap());
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(toolchain >= version(rust_version), "{tag} < {rust_version}");

    // ENTRYPOINT ["echoloop"] + CMD [...] is the container's command line.
    let json_line = |instruction: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(instruction))
            .unwrap_or_else(|| panic!("{instruction}"));
        serde_json::from_str(line.trim()).expect("exec form (a JSON array)")
    };
    assert_eq!(json_line("ENTRYPOINT "), ["echoloop"]);
    let cmd = json_line("CMD ");
    let config = check(&cmd);
    assert!(config.contains("listen: 0.0.0.0:7878"), "{config}");
    // EXPOSE names the ports the command line binds.
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap();
    let listen = port_of(flag(&cmd, "--listen"));
    let metrics = port_of(flag(&cmd, "--metrics"));
    for port in [
        format!("{listen}/tcp"),
        format!("{listen}/udp"),
        format!("{metrics}/tcp"),
    ] {
        assert!(
            expose.split_whitespace().any(|p| p == port),
            "EXPOSE {port}"
        );
    }
}

/// Expands `$(NAME)` references as the kubelet does, from `env`.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_string();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    assert!(!out.contains("$("), "unexpanded reference in {arg}");
    out
}

/// The loadgen Indexed Job: each pod's command line, with its completion index
/// and the Job's START_AT, passes loadgen's own parser and validation as shard
/// I of N = parallelism = completions; every shard writes its own .hlog on
/// the shared volume, and the merge Job reads exactly those files.
#[test]
fn kubernetes_loadgen_job_shards_and_merge_agree() {
    let docs = manifests();
    let job = named(&docs, "Job", "loadgen");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["parallelism"].as_i64().unwrap();
    assert_eq!(spec["completions"].as_i64(), Some(n));
    assert!(n > 1);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let c = &list(&pod["containers"])[0];
    assert_eq!(
        list(&c["command"]).iter().map(text).collect::<Vec<_>>(),
        ["loadgen"]
    );
    let mut env: Vec<(String, String)> = list(&c["env"])
        .iter()
        .map(|e| (text(&e["name"]), text(&e["value"])))
        .collect();
    let start_at = env
        .iter()
        .find(|(k, _)| k == "START_AT")
        .expect("START_AT")
        .1
        .clone();
    // The README's sed replaces the quoted START_AT value: it must occur once.
    let file = std::fs::read_to_string(deploy_dir().join("kubernetes/loadgen-job.yaml")).unwrap();
    assert_eq!(file.matches(&format!("\"{start_at}\"")).count(), 1);
    let args: Vec<String> = list(&c["args"]).iter().map(text).collect();
    let mount = text(&list(&c["volumeMounts"])[0]["mountPath"]);
    let mut written = Vec::new();
    env.push(("JOB_COMPLETION_INDEX".into(), String::new()));
    for i in 0..n {
        env.last_mut().unwrap().1 = i.to_string();
        let argv: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
        let ok =
            loadgen::cli::check_args(std::iter::once("loadgen".to_string()).chain(argv.clone()))
                .unwrap_or_else(|e| panic!("shard {i}: loadgen {argv:?}: {e}"));
        assert!(ok.contains(&format!("shard {i}/{n} (")), "{ok}");
        assert!(ok.contains("start-at "), "{ok}");
        let hlog = flag(&argv, "--hlog").to_string();
        assert!(
            hlog.starts_with(&format!("{mount}/")),
            "{hlog} not on {mount}"
        );
        written.push(hlog);
    }
    written.dedup();
    assert_eq!(written.len() as i64, n, "each shard its own log");
    // The merge reads the same volume and exactly the shards' files.
    let merge = named(&docs, "Job", "loadgen-merge");
    let m = &list(&merge["spec"]["template"]["spec"]["containers"])[0];
    let margs: Vec<String> = list(&m["args"]).iter().map(text).collect();
    assert_eq!(margs[0], "merge");
    assert_eq!(margs[1..], written[..]);
    let argv = std::iter::once("loadgen".to_string()).chain(margs.clone());
    assert!(loadgen::cli::check_args(argv).is_ok(), "{margs:?}");
    assert_eq!(text(&list(&m["volumeMounts"])[0]["mountPath"]), mount);
    let claim = |p: &Yaml| text(&list(&p["volumes"])[0]["persistentVolumeClaim"]["claimName"]);
    assert_eq!(claim(pod), claim(&merge["spec"]["template"]["spec"]));
    named(&docs, "PersistentVolumeClaim", &claim(pod));
}
