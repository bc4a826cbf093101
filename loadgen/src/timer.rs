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
//! rustix wraps both syscalls safely, so this file has no `unsafe`.

use mio::{Registry, Token};

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::num::NonZeroU64;
    use std::os::fd::{AsRawFd, OwnedFd};

    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };

    /// A timerfd registered for READABLE on the worker's Poll.
    #[derive(Debug)]
    pub(crate) struct WakeTimer {
        fd: OwnedFd,
        /// The deadline (ns on the worker clock) currently armed; `None` once it fired.
        armed: Option<u64>,
    }

    impl WakeTimer {
        pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
            // 1 ns of slack for this thread's timers. Without it the wake-ups still come,
            // only up to the default 50 us late: worth a warning, not a failed run.
            if let Err(e) = rustix::thread::set_current_timer_slack(NonZeroU64::new(1)) {
                log::warn!("timer slack not set, open-loop sends may be up to 50 us late: {e}");
            }
            let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
            let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
            registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
            Ok(WakeTimer { fd, armed: None })
        }

        /// Fires at `due_ns`, given the clock reads `now_ns`; no syscall if already armed so.
        pub(crate) fn arm(&mut self, due_ns: u64, now_ns: u64) {
            if self.armed == Some(due_ns) {
                return;
            }
            let after = due_ns.saturating_sub(now_ns).max(1);
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: (after / 1_000_000_000) as _,
                    tv_nsec: (after % 1_000_000_000) as _,
                },
            };
            match timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec) {
                Ok(_) => self.armed = Some(due_ns),
                // The poll timeout still wakes the loop, a millisecond coarser.
                Err(e) => log::warn!("timerfd_settime failed: {e}"),
            }
        }

        /// The timer's event arrived: the next `arm` must really re-arm.
        pub(crate) fn fired(&mut self) {
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
    pub(crate) struct WakeTimer;

    impl WakeTimer {
        pub(crate) fn new(_registry: &Registry, _token: Token) -> io::Result<Self> {
            Ok(WakeTimer)
        }
        pub(crate) fn arm(&mut self, _due_ns: u64, _now_ns: u64) {}
        pub(crate) fn fired(&mut self) {}
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
