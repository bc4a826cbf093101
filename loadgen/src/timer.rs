//! A precise wake-up for the open-loop schedule.
//!
//! `epoll_wait` takes its timeout in milliseconds, and mio rounds a shorter wait up to a whole
//! millisecond. Sending on that clock would add up to 1 ms of loadgen's own lateness to every
//! open-loop latency, which on loopback is 30x the server's real answer time. A `timerfd`
//! registered with the same `Poll` wakes the reactor at nanosecond resolution instead, and
//! setting the thread's timer slack to 1 ns stops the kernel from batching that wake-up with
//! others. Other platforms fall back to the poll timeout (millisecond resolution).
//!
//! Re-arming a timerfd resets its expiry count, and every expiry is a fresh edge for epoll,
//! so the fd is never read: one `timerfd_settime` per new deadline is the whole cost.

use mio::{Registry, Token};

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};

    /// A timerfd registered for READABLE on the worker's Poll.
    #[derive(Debug)]
    pub struct WakeTimer {
        fd: OwnedFd,
        /// The deadline (ns on the worker clock) currently armed; `None` once it fired.
        armed: Option<u64>,
    }

    impl WakeTimer {
        pub fn new(registry: &Registry, token: Token) -> io::Result<Self> {
            // SAFETY: plain syscalls; the returned fd is checked and then owned.
            let raw = unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
            Ok(WakeTimer { fd, armed: None })
        }

        /// Fires at `due_ns`, given the clock reads `now_ns`; no syscall if already armed so.
        pub fn arm(&mut self, due_ns: u64, now_ns: u64) {
            if self.armed == Some(due_ns) {
                return;
            }
            let after = due_ns.saturating_sub(now_ns).max(1);
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: (after / 1_000_000_000) as libc::time_t,
                    tv_nsec: (after % 1_000_000_000) as libc::c_long,
                },
            };
            // SAFETY: valid fd and a fully initialised itimerspec; old value not wanted.
            let rc = unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            if rc == 0 {
                self.armed = Some(due_ns);
            } else {
                log::warn!("timerfd_settime failed: {}", io::Error::last_os_error());
            }
        }

        /// The timer's event arrived: the next `arm` must really re-arm.
        pub fn fired(&mut self) {
            self.armed = None;
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    use mio::{Registry, Token};

    /// No precise timer here: the poll timeout (milliseconds) does the waking.
    #[derive(Debug)]
    pub struct WakeTimer;

    impl WakeTimer {
        pub fn new(_registry: &Registry, _token: Token) -> io::Result<Self> {
            Ok(WakeTimer)
        }
        pub fn arm(&mut self, _due_ns: u64, _now_ns: u64) {}
        pub fn fired(&mut self) {}
    }
}

pub(crate) use imp::WakeTimer;

/// Creates the timer only when a schedule needs one (closed loop never does).
pub(crate) fn for_schedule(
    open_loop: bool,
    registry: &Registry,
    token: Token,
) -> std::io::Result<Option<WakeTimer>> {
    if open_loop {
        WakeTimer::new(registry, token).map(Some)
    } else {
        Ok(None)
    }
}
