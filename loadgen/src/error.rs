//! Why a run or merge could not produce a report, and the exit status each reason gives.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::hlog::HlogError;
use crate::io_text::io_text;

/// Why a run or merge could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is unusable; change the flag named. Exit status 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Not a single connection could be made: is the server running at that address?
    #[error("could not connect to {target}: {reason} ({})", connect_count(*failed, *asked))]
    Connect {
        /// The target.
        target: std::net::SocketAddr,
        /// How many connects failed.
        failed: u64,
        /// How many connections were asked for (more than failed: loadgen gave up on the
        /// rest, see [`crate::GIVE_UP_AFTER`]).
        asked: u64,
        /// Why the first connect failed.
        reason: ConnectFailure,
    },
    /// An output file could not be created or written; check the path and permissions.
    /// Every output path is opened before any traffic, so a bad one fails at once.
    #[error("cannot write {}: {}", path.display(), io_text(source))]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An input file (an `.hlog` given to `loadgen merge`) could not be read or parsed.
    #[error("cannot read {}: {source}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HlogError,
    },
    /// A worker's event poller (or its waker) could not be created: usually out of file
    /// descriptors; raise the open-files limit (`ulimit -n`) or lower `--threads`.
    #[error("cannot create an event poller: {}", io_text(source))]
    Poller {
        /// Why.
        source: std::io::Error,
    },
    /// A worker thread could not be started: the system is out of threads or memory;
    /// lower `--threads`.
    #[error("cannot start a worker thread: {}", io_text(source))]
    Spawn {
        /// Why.
        source: std::io::Error,
    },
    /// A worker's reactor failed while running (its timer or `poll` returned an error).
    #[error("worker {thread} failed: {}", io_text(source))]
    Reactor {
        /// Which worker thread.
        thread: usize,
        /// Why.
        source: std::io::Error,
    },
    /// A worker thread panicked: a bug in loadgen; please report it with the command line.
    #[error("worker {thread} panicked (a bug in loadgen: please report it)")]
    Panicked {
        /// Which worker thread.
        thread: usize,
    },
}

/// Why a connect failed: the reason an [`Error::Connect`] gives, and the report's
/// `conn_error` when some connects failed and others opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The system failed it: refused (nothing listens on that port), unreachable, out of
    /// ports or descriptors. `kind` is for matching; `text` is the OS's words.
    #[error("{text}")]
    Os {
        /// What kind of failure, as std classifies it.
        kind: std::io::ErrorKind,
        /// The OS's message, without the "(os error N)" suffix.
        text: String,
    },
    /// No answer within `--connect-timeout`: the server's accept queue stays full, or
    /// something drops the SYNs. Raise the timeout or find why the server does not accept.
    #[error("connect timed out after {0:?}")]
    TimedOut(std::time::Duration),
}

impl From<&std::io::Error> for ConnectFailure {
    fn from(e: &std::io::Error) -> Self {
        ConnectFailure::Os {
            kind: e.kind(),
            text: io_text(e),
        }
    }
}

/// "50 of 50 connections failed", or when loadgen gave up early, how many it tried.
fn connect_count(failed: u64, asked: u64) -> String {
    if failed >= asked {
        format!("{failed} of {asked} connections failed")
    } else {
        format!("the first {failed} of {asked} connections failed and none opened, so loadgen gave up on the rest")
    }
}

impl Error {
    /// The exit status the command line uses: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output error names the file and says why in the OS's words.
    #[test]
    fn output_error_text() {
        let out = Error::Output {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::EISDIR),
        };
        assert_eq!(out.to_string(), "cannot write /x: Is a directory");
    }
}
