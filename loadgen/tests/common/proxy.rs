//! A relay between loadgen and an echo server that damages the echo stream of the first
//! connection once: bytes inserted at a stream offset, or bytes dropped there. What a
//! broken middlebox or server would do, to check how loadgen counts it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What happens to the first connection's echo stream.
#[derive(Clone, Debug)]
pub enum Fault {
    /// These bytes are inserted before stream offset `at`.
    Insert { at: u64, bytes: Vec<u8> },
    /// `len` bytes from stream offset `at` are dropped.
    Drop { at: u64, len: u64 },
}

/// A running relay on 127.0.0.1 port 0; stops accepting when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Relays every connection to `upstream`, applying `fault` to the first one's echoes.
pub fn proxy(upstream: SocketAddr, fault: Fault) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let count = AtomicUsize::new(0);
        for client in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                return;
            }
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(upstream)) else {
                continue;
            };
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            let fault = first.then(|| fault.clone());
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || copy(c2, s2, None));
            std::thread::spawn(move || copy(server, client, fault));
        }
    });
    Proxy {
        addr,
        stop,
        handle: Some(handle),
    }
}

/// Copies `from` to `to` until EOF, applying `fault` by stream offset, then passes the EOF.
fn copy(mut from: TcpStream, mut to: TcpStream, fault: Option<Fault>) {
    let _ = to.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (start, end) = (offset, offset + n as u64);
        offset = end;
        let out: Vec<u8> = match &fault {
            Some(Fault::Insert { at, bytes }) if (start..end).contains(at) => {
                let cut = (at - start) as usize;
                [&buf[..cut], bytes, &buf[cut..n]].concat()
            }
            Some(Fault::Drop { at, len }) => (start..end)
                .filter(|i| !(*at..at + len).contains(i))
                .map(|i| buf[(i - start) as usize])
                .collect(),
            _ => buf[..n].to_vec(),
        };
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
