//! Setup errors: everything that can stop a server from starting or running.
//!
//! Per-connection trouble (a reset, a malformed frame) is never an `Error`: it
//! is logged, counted and closes that one connection, and `run()` carries on.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a server could not start, or why its event loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work; the message names the flag.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The TCP address could not be bound (in use, not local, no permission).
    #[error("cannot listen on tcp {addr}: {source}")]
    BindTcp { addr: SocketAddr, source: io::Error },
    /// The UDP address could not be bound.
    #[error("cannot bind udp {addr}: {source}")]
    BindUdp { addr: SocketAddr, source: io::Error },
    /// The `--metrics` address could not be bound.
    #[error("cannot listen on --metrics {addr}: {source}")]
    BindMetrics { addr: SocketAddr, source: io::Error },
    /// `--root` is missing, unreadable or not a directory.
    #[error("cannot serve files from --root {path}: {reason}")]
    Root { path: PathBuf, reason: String },
    /// The OS refused to create or wait on the poller, or to install signal handlers.
    #[error("event loop: {0}")]
    Poll(#[from] io::Error),
}
