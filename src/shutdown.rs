//! Asking a running server to stop, from another thread.
//!
//! The reactor sleeps in `poll`, so setting a flag is not enough: the handle
//! also fires a mio `Waker`, which makes `poll` return with the `WAKER` token.
//! Signals (SIGINT, SIGTERM) take another route to the same place: the
//! reactor registers them with signal-hook-mio under the `SIGNALS` token.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

/// Requests a graceful shutdown of the server it came from. Cheap to clone,
/// `Send` and `Sync`; calling it more than once, or after the server stopped,
/// is harmless.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) waker: Arc<Waker>,
    pub(crate) requested: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Stops accepting, lets connections flush for up to the drain timeout,
    /// then makes `Server::run` return.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::Release);
        if let Err(e) = self.wake() {
            log::warn!("shutdown: cannot wake the reactor: {e}");
        }
    }

    fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }

    /// True once `shutdown` was called.
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}
