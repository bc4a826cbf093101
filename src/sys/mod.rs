//! The crate's one home for `unsafe`: the few system calls that std, mio
//! and socket2 do not wrap. The crate root denies `unsafe_code`; only this
//! module (and its child `linux`) is allowed it, so every `unsafe` block in
//! echoloop is in these two files, each with a `SAFETY:` comment
//! (`clippy::undocumented_unsafe_blocks` is on) and every return value
//! checked.
//!
//! Here: the open-files limit (every Unix). In `linux.rs`: batched UDP
//! (`recvmmsg`/`sendmmsg`), `sendfile`, the socket queue ioctls, when a
//! socket last sent data (`TCP_INFO`), and the thread's timer slack.

use std::io;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::{
    queued_input_bytes, sendfile, since_data_sent, unacked_bytes, Mmsg, PreciseTimers,
};

/// Elsewhere the timer slack stays as it is: `--udp-coalesce` only acts
/// with batches, which are Linux-only.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) struct PreciseTimers;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl PreciseTimers {
    pub(crate) fn new() -> io::Result<PreciseTimers> {
        Ok(PreciseTimers)
    }
}

/// The process's `RLIMIT_NOFILE`: soft and hard limit, `None` meaning
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FdLimit {
    pub(crate) soft: Option<u64>,
    pub(crate) hard: Option<u64>,
}

/// Reads `RLIMIT_NOFILE`.
// rlim_t is u64 on Linux but not on every platform: the casts are for those.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn fd_limit() -> io::Result<FdLimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which is valid and
    // properly aligned for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v as u64);
    Ok(FdLimit {
        soft: finite(rl.rlim_cur),
        hard: finite(rl.rlim_max),
    })
}

/// Sets `RLIMIT_NOFILE` to `limit`. Raising the soft limit up to the hard
/// one needs no privilege; raising the hard one does.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn set_fd_limit(limit: FdLimit) -> io::Result<()> {
    let raw = |v: Option<u64>| v.map_or(libc::RLIM_INFINITY, |v| v as libc::rlim_t);
    let want = libc::rlimit {
        rlim_cur: raw(limit.soft),
        rlim_max: raw(limit.hard),
    };
    // SAFETY: setrlimit only reads the struct we pass, which lives for the
    // duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Setting the limit to what it is succeeds and changes nothing
    /// (the check of setrlimit's result is exercised, not skipped).
    #[test]
    fn reads_and_rewrites_the_fd_limit() {
        let before = fd_limit().unwrap();
        if let (Some(soft), Some(hard)) = (before.soft, before.hard) {
            assert!(soft <= hard);
        }
        set_fd_limit(before).unwrap();
        assert_eq!(fd_limit().unwrap(), before);
    }
}
