//! SIGINT and SIGTERM, when `Config::handle_signals` asks for them.
//!
//! The first signal starts a graceful shutdown: it reaches the reactor as an
//! event (signal-hook-mio writes to a pipe registered under the `SIGNALS`
//! token), like any other readiness. The second must work even when the
//! reactor is not looking: a turn stuck in a slow disk read, or two signals
//! arriving together, which the pipe would fold into one event. So it is
//! not an event at all: the signal handler itself ends the process, as if
//! the signal had never been handled (the default action: exit status
//! 128 + n in a shell, 130 for SIGINT, 143 for SIGTERM). Output still owed
//! is lost, and no final counters are logged.
//!
//! The handler only reads an atomic flag, armed by the first signal (or by a
//! shutdown that began through a `ShutdownHandle`), and re-raises the
//! signal: both async-signal-safe (signal-hook's
//! `register_conditional_default`). Every handler is removed again when the
//! server or reactor holding it is dropped, so an embedder that runs a server
//! and carries on never finds its Ctrl-C turned into an instant exit.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::SigId;
use signal_hook_mio::v1_0::Signals;

/// The termination signals a server handles.
const HANDLED: [i32; 2] = [SIGINT, SIGTERM];

/// SIGINT and SIGTERM, registered with a poller.
pub(crate) struct SignalSet {
    /// The first signal's route into the loop.
    events: Signals,
    /// Set once shutdown began: from then on a signal ends the process.
    armed: Arc<AtomicBool>,
    /// Our handler registrations, removed on drop.
    ids: Vec<SigId>,
}

impl SignalSet {
    /// Installs the handlers and registers their events under `token`.
    pub(crate) fn install(registry: &Registry, token: Token) -> io::Result<SignalSet> {
        let armed = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::with_capacity(2 * HANDLED.len());
        let mut set_up = || -> io::Result<Signals> {
            for sig in HANDLED {
                // Order matters: the exit check runs before the flag is set,
                // so the first signal only arms it.
                ids.push(signal_hook::flag::register_conditional_default(
                    sig,
                    Arc::clone(&armed),
                )?);
                ids.push(signal_hook::flag::register(sig, Arc::clone(&armed))?);
            }
            let mut events = Signals::new(HANDLED)?;
            registry.register(&mut events, token, Interest::READABLE)?;
            Ok(events)
        };
        match set_up() {
            Ok(events) => Ok(SignalSet { events, armed, ids }),
            Err(e) => {
                unregister(&ids);
                Err(e)
            }
        }
    }

    /// True if a signal arrived since the last call (reads the pipe dry).
    pub(crate) fn arrived(&mut self) -> bool {
        self.events.pending().count() > 0
    }

    /// Shutdown began without a signal: the next signal exits at once.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl Drop for SignalSet {
    fn drop(&mut self) {
        unregister(&self.ids);
    }
}

fn unregister(ids: &[SigId]) {
    for &id in ids {
        signal_hook::low_level::unregister(id);
    }
}

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSet")
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
