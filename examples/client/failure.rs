//! Every way a run can fail, each with its own message, and the exit code
//! it maps to: 2 for a command line that cannot work, 1 for everything the
//! network or the server did.
//!
//! The tutorials' clients crash with a traceback on the first surprise, or
//! worse, carry on as if nothing happened (a half-read reply printed as the
//! answer, a truncated file saved as the download). Here each surprise is a
//! variant, so the message says which one happened.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A command line that cannot work (clap catches the rest).
    #[error("{0} (see --help)")]
    Usage(&'static str),

    /// The address did not resolve (a typo, or no DNS).
    #[error("cannot resolve {addr}: {}", plain(.source))]
    Resolve { addr: String, source: io::Error },

    /// Every address it resolved to refused or timed out.
    #[error("cannot connect to {addr}: {}; is the server running there?", plain(.source))]
    Connect { addr: String, source: io::Error },

    /// A UDP datagram was answered by ICMP "port unreachable": nothing
    /// listens there. (Only a connected UDP socket learns this.)
    #[error(
        "nothing is listening on UDP {addr} (the host answered port unreachable: {})",
        plain(.source)
    )]
    UdpRefused { addr: String, source: io::Error },

    /// The server went quiet in the middle of something.
    #[error(
        "no reply within {}: got {got} of the {want} bytes of {what}{}",
        secs(*.timeout),
        if *.got == 0 { " (is the server in this --mode?)" } else { "" }
    )]
    NoReply {
        what: &'static str,
        got: u64,
        want: u64,
        timeout: Duration,
    },

    /// The server closed (EOF) before sending all it owed.
    #[error("the server closed the connection after {got} of the {want} bytes of {what}")]
    Closed {
        what: &'static str,
        got: u64,
        want: u64,
    },

    /// After our half-close the server neither closed nor said anything.
    #[error("the server did not close the connection within {} of our end of input", secs(*.0))]
    NoClose(Duration),

    /// The server answered, with an error message.
    #[error("the server answered with an error: {0}")]
    Server(String),

    /// The server sent something the protocol does not allow.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),

    /// Some datagrams got no reply in time (lost, or the server is down), or
    /// some lines were too long to send as one.
    #[error("{}", datagrams(*.lost, *.sent, *.unsent, *.timeout))]
    Datagrams {
        lost: u64,
        sent: u64,
        unsent: u64,
        timeout: Duration,
    },

    /// Some downloads failed; each was reported as it happened.
    #[error("{failed} of {total} downloads failed")]
    Downloads { failed: usize, total: usize },

    /// A download could not be saved.
    #[error("cannot save {}: {}", .path.display(), plain(.source))]
    Save { path: PathBuf, source: io::Error },

    /// Any other I/O error, with what we were doing.
    #[error("{doing}: {}", plain(.source))]
    Io {
        doing: &'static str,
        source: io::Error,
    },
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Wraps an I/O error with what we were doing.
    pub fn io(doing: &'static str) -> impl FnOnce(io::Error) -> Failure {
        move |source| Failure::Io { doing, source }
    }
}

/// The summary of a UDP run that lost or skipped something.
fn datagrams(lost: u64, sent: u64, unsent: u64, timeout: Duration) -> String {
    let mut parts = Vec::new();
    if lost > 0 {
        parts.push(format!(
            "{lost} of {sent} datagrams got no reply within {}",
            secs(timeout)
        ));
    }
    if unsent > 0 {
        parts.push(format!("{unsent} lines were too long for one datagram"));
    }
    parts.join("; ")
}

/// "5 s", "0.5 s".
pub fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// An I/O error's text without the ` (os error N)` suffix Rust adds: the
/// words are for people, the number helps nobody reading a one-line error.
pub fn plain(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// True for the error a read or write timeout produces: `WouldBlock`
/// (EAGAIN) on Unix, `TimedOut` on Windows.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
