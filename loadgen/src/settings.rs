//! The settings a run used, as its report echoes them: every flag's value (JSON
//! `settings`), so a result file says how it was made.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::{Protocol, RunConfig};

/// The settings a run used, as echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Target address.
    pub target: SocketAddr,
    /// tcp or udp.
    pub protocol: Protocol,
    /// Connections or sockets.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Bytes per message on the wire (with the framed prefix).
    pub wire_bytes: usize,
    /// Closed-loop messages in flight per connection.
    pub pipeline: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Open-loop total rate, if any.
    pub rate: Option<f64>,
    /// Reactor threads.
    pub threads: usize,
    /// Ramp-up connects per second, if limited.
    pub connect_rate: Option<f64>,
    /// Source addresses.
    pub bind: Vec<IpAddr>,
    /// Framed mode.
    pub framed: bool,
    /// UDP loss deadline, seconds.
    pub udp_timeout_s: f64,
    /// UDP loss limit (fraction), if any.
    pub max_loss: Option<f64>,
    /// UDP: datagrams per `sendmmsg`/`recvmmsg` as asked (`--udp-batch`; 1 is one
    /// `send`/`recv` per datagram, as on every platform but Linux).
    pub udp_batch: usize,
    /// A TCP connect still pending after this many seconds failed.
    pub connect_timeout_s: f64,
    /// TCP echoes still owed this many seconds after the measured time count missing.
    pub drain_timeout_s: f64,
    /// `--reconnect-after`: messages per connection before it reconnects, if set.
    pub reconnect_after: Option<u64>,
    /// `--json`: the report was JSON.
    pub json: bool,
    /// `--quiet`: no progress lines.
    pub quiet: bool,
    /// `--hgrm` file, if any.
    pub hgrm: Option<PathBuf>,
    /// `--hlog` file, if any.
    pub hlog: Option<PathBuf>,
    /// `--plot` file, if any.
    pub plot: Option<PathBuf>,
    /// `--shard`, as `I/N` (`0/1` unsharded).
    pub shard: String,
    /// `--start-at`, Unix seconds, if set.
    pub start_at: Option<f64>,
}

impl Settings {
    /// The settings of `cfg`; the report's own outputs (`--json`, `--hgrm`, `--plot`)
    /// are the command line's, set with [`Settings::outputs`].
    pub fn of(cfg: &RunConfig, wire_bytes: usize) -> Self {
        Settings {
            target: cfg.target,
            protocol: cfg.protocol,
            connections: cfg.connections,
            size: cfg.size,
            wire_bytes,
            pipeline: cfg.pipeline,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            rate: cfg.rate,
            threads: cfg.threads,
            connect_rate: cfg.connect_rate,
            bind: cfg.bind.clone(),
            framed: cfg.framed,
            udp_timeout_s: cfg.udp_timeout.as_secs_f64(),
            max_loss: cfg.max_loss,
            udp_batch: cfg.udp_batch,
            connect_timeout_s: cfg.connect_timeout.as_secs_f64(),
            drain_timeout_s: cfg.drain_timeout.as_secs_f64(),
            reconnect_after: cfg.reconnect_after,
            json: false,
            quiet: !cfg.progress,
            hgrm: None,
            hlog: cfg.hlog.clone(),
            plot: None,
            shard: cfg.shard.to_string(),
            start_at: cfg.start_at.map(crate::start::unix_secs),
        }
    }

    /// Records where the report itself went.
    pub fn outputs(&mut self, json: bool, hgrm: Option<PathBuf>, plot: Option<PathBuf>) {
        (self.json, self.hgrm, self.plot) = (json, hgrm, plot);
    }
}
