//! The `settings` object of the JSON report: every flag's value, so a result file says how
//! it was made. It is derived from the run's [`RunConfig`] (no second struct to keep in
//! step with it) plus where the report itself went ([`Outputs`]).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::config::RunConfig;

/// Where the report went: the command line's `--json`, `--hgrm` and `--plot`, echoed in
/// `settings` (a library caller that writes none leaves the default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// `--json`: the report was JSON.
    pub json: bool,
    /// `--hgrm` file, if any.
    pub hgrm: Option<PathBuf>,
    /// `--plot` file, if any.
    pub plot: Option<PathBuf>,
}

/// The `settings` object of a run of `cfg` with `wire_bytes` per message on the wire.
/// Durations are in seconds (`_s`), `--shard` as `I/N`, `--start-at` as Unix seconds.
pub(crate) fn to_json(cfg: &RunConfig, wire_bytes: Option<usize>, outputs: &Outputs) -> Value {
    json!({
        "target": cfg.target,
        "protocol": cfg.protocol,
        "connections": cfg.connections,
        "size": cfg.size,
        "wire_bytes": wire_bytes,
        "pipeline": cfg.pipeline,
        "duration_s": cfg.duration.as_secs_f64(),
        "warmup_s": cfg.warmup.as_secs_f64(),
        "rate": cfg.rate,
        "threads": cfg.threads,
        "connect_rate": cfg.connect_rate,
        "bind": cfg.bind,
        "framed": cfg.framed,
        "udp_timeout_s": cfg.udp_timeout.as_secs_f64(),
        "max_loss": cfg.max_loss,
        "udp_batch": cfg.udp_batch,
        "connect_timeout_s": cfg.connect_timeout.as_secs_f64(),
        "drain_timeout_s": cfg.drain_timeout.as_secs_f64(),
        "reconnect_after": cfg.reconnect_after,
        "json": outputs.json,
        "quiet": !cfg.progress,
        "hgrm": outputs.hgrm,
        "hlog": cfg.hlog,
        "plot": outputs.plot,
        "shard": cfg.shard.to_string(),
        "start_at": cfg.start_at.map(crate::start::unix_secs),
    })
}
