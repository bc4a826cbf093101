//! The real echoloop server, in-process on 127.0.0.1 port 0.

use std::net::SocketAddr;
use std::thread::JoinHandle;

/// A running echoloop; shut down and joined on drop (or by [`Echoloop::stop`]).
pub struct Echoloop {
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    /// The server's live counters.
    pub stats: echoloop::Stats,
    handle: echoloop::ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Echoloop {
    /// Shuts the server down now: it stops accepting and closes every connection once
    /// what it owes is flushed.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Echoloop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts echoloop in `mode`, TCP and UDP on 127.0.0.1 port 0, with `max_conns` at least
/// `max_conns` (within the open-files limit, which the caller raises first if needed).
pub fn start_with(mode: echoloop::Mode, max_conns: usize) -> Echoloop {
    super::init_logging();
    let defaults = echoloop::Config::default();
    let cfg = echoloop::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: Some("127.0.0.1:0".parse().unwrap()),
        mode,
        max_conns: defaults.max_conns.max(max_conns),
        ..defaults
    };
    let server = echoloop::Server::bind(cfg).unwrap();
    let (tcp, udp) = (server.tcp_addr(), server.udp_addr().unwrap());
    let handle = server.shutdown_handle();
    let stats = server.stats();
    let thread = std::thread::spawn(move || {
        server.run().unwrap();
    });
    Echoloop {
        tcp,
        udp,
        stats,
        handle,
        thread: Some(thread),
    }
}

/// Starts echoloop in `mode` with its default limits.
pub fn start(mode: echoloop::Mode) -> Echoloop {
    start_with(mode, 0)
}
