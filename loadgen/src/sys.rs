//! The syscalls loadgen needs that std, mio and socket2 do not wrap: asking the kernel to
//! choose a bound socket's port at `connect()` rather than at `bind()`, and raising the
//! open-files limit. Each is a thin checked wrapper; the unsafe code stays in this file
//! (and the timerfd in `timer.rs`).

use std::io;

/// `IP_BIND_ADDRESS_NO_PORT`: a later `bind(ip, 0)` fixes only the address; the port is
/// chosen by `connect()`, unique per (source, destination) 4-tuple instead of per address
/// (see `source.rs` for why that matters). Linux only; elsewhere a no-op.
#[cfg(target_os = "linux")]
pub fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid descriptor, and a pointer to a c_int with its exact size: what this
    // option reads. Works on AF_INET6 sockets too (the option is read by inet6_bind).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Not Linux: the port is chosen at `bind()`, as usual.
#[cfg(not(target_os = "linux"))]
pub fn bind_address_no_port(_socket: &socket2::Socket) -> io::Result<()> {
    Ok(())
}

/// The soft and hard open-files limits (`RLIMIT_NOFILE`), `u64::MAX` for unlimited.
// rlim_t is u64 on Linux but not everywhere: the casts are for those platforms.
#[allow(clippy::unnecessary_cast)]
fn nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer; its result is checked.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let value = |v: libc::rlim_t| match v {
        libc::RLIM_INFINITY => u64::MAX,
        v => v as u64,
    };
    Some((value(lim.rlim_cur), value(lim.rlim_max)))
}

/// The soft open-files limit: how many descriptors this process may hold now.
pub fn open_files_limit() -> Option<u64> {
    nofile().map(|(soft, _)| soft)
}

/// Raises the soft open-files limit to the hard one (no privilege needed) and returns the
/// new soft limit: each connection needs a descriptor, and the usual soft limit (1024) is
/// far below what a run at a server's scale opens.
pub fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = nofile()?;
    if soft < hard && hard != u64::MAX {
        let raised = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer; checked.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(hard);
        }
    }
    Some(soft)
}
