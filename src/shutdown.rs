//! Asking a running server to stop, from another thread.
//!
//! The reactor sleeps in `poll`, so setting a flag is not enough: the handle
//! also fires a mio `Waker`, which makes `poll` return with the `WAKER` token.
//! Signals (SIGINT, SIGTERM) take another route to the same place: the
//! first reactor registers them with signal-hook-mio under the `SIGNALS`
//! token, and passes a shutdown on to the others through this handle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use mio::Waker;

/// Requests a graceful shutdown of the server it came from. Cheap to clone,
/// `Send` and `Sync`; calling it more than once, or after the server stopped,
/// is harmless.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    /// One waker per reactor (`--reactors`), each registered under `WAKER`
    /// in its reactor's poll.
    wakers: Arc<[Waker]>,
    /// Set once a graceful shutdown was asked for.
    requested: Arc<AtomicBool>,
    /// Set by a second signal, or when a reactor fails: every reactor
    /// returns at once.
    abort: Arc<AtomicBool>,
    /// Reactors still running. The first reactor owns the signal handlers
    /// and keeps them (and so a second Ctrl-C working) until it is the last.
    running: Arc<AtomicUsize>,
}

impl ShutdownHandle {
    /// A handle on the reactors whose wakers these are, all running.
    pub(crate) fn new(wakers: Vec<Waker>) -> ShutdownHandle {
        let running = wakers.len();
        ShutdownHandle {
            wakers: wakers.into(),
            requested: Arc::new(AtomicBool::new(false)),
            abort: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicUsize::new(running)),
        }
    }

    /// Stops accepting, lets connections flush for up to the drain timeout,
    /// then makes `Server::run` return.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::Release);
        self.wake_all();
    }

    /// Makes every reactor return now, without draining.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        self.shutdown();
    }

    fn wake_all(&self) {
        for waker in self.wakers.iter() {
            if let Err(e) = waker.wake() {
                log::warn!("shutdown: cannot wake a reactor error={e}");
            }
        }
    }

    /// A reactor has returned: count it, and wake the first reactor, which
    /// may be waiting for the others before it lets go of the signals.
    pub(crate) fn reactor_done(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        if let Some(first) = self.wakers.first() {
            if let Err(e) = first.wake() {
                log::warn!("shutdown: cannot wake the first reactor error={e}");
            }
        }
    }

    /// True while some reactor other than the caller is still running.
    pub(crate) fn others_running(&self) -> bool {
        self.running.load(Ordering::Acquire) > 1
    }

    /// True once `shutdown` was called.
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// True once `abort` was called.
    pub(crate) fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }
}
