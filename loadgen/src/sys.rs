//! The syscalls loadgen needs that std, mio and socket2 do not wrap: asking the kernel to
//! choose a bound socket's port at `connect()` rather than at `bind()`, raising the
//! open-files limit, and moving many datagrams per call on a connected UDP socket
//! (`sendmmsg`/`recvmmsg`, Linux, for `udp_batch.rs`). Each is a thin checked wrapper.
//! This is the one module of the crate allowed `unsafe` (the crate root denies it); every
//! block carries a `SAFETY:` comment (clippy's `undocumented_unsafe_blocks` checks), and
//! every syscall's result is checked. The timerfd and timer slack go through rustix.
//!
//! (nix wraps `sendmmsg`/`recvmmsg` too, but its result iterators read address storage a
//! connected socket never fills; the server's `src/sys.rs` made the same choice.)

use std::io;

/// `IP_BIND_ADDRESS_NO_PORT`: a later `bind(ip, 0)` fixes only the address; the port is
/// chosen by `connect()`, unique per (source, destination) 4-tuple instead of per address
/// (see `source.rs` for why that matters). Linux only; elsewhere a no-op.
#[cfg(target_os = "linux")]
pub(crate) fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
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
pub(crate) fn bind_address_no_port(_socket: &socket2::Socket) -> io::Result<()> {
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
pub(crate) fn open_files_limit() -> Option<u64> {
    nofile().map(|(soft, _)| soft)
}

/// Raises the soft open-files limit to the hard one (no privilege needed) and returns the
/// new soft limit: each connection needs a descriptor, and the usual soft limit (1024) is
/// far below what a run at a server's scale opens.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
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

/// Header storage for batches of up to `capacity` datagrams on a *connected* UDP socket:
/// no addresses, one buffer per datagram.
///
/// The `mmsghdr` and `iovec` arrays hold raw pointers into the buffers of one call; every
/// call rebuilds them from the borrows it is given, so no pointer outlives its call.
#[cfg(target_os = "linux")]
pub(crate) struct Mmsg {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

#[cfg(target_os = "linux")]
impl Mmsg {
    /// Room for batches of up to `capacity` (at least 1) datagrams.
    pub(crate) fn new(capacity: usize) -> Mmsg {
        let capacity = capacity.max(1);
        Mmsg {
            hdrs: Vec::with_capacity(capacity),
            iovs: Vec::with_capacity(capacity),
        }
    }

    /// Most datagrams one call moves.
    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.capacity()
    }

    /// One `sendmmsg` of the datagrams `datagrams.chunks(len)` (at most `capacity` of
    /// them). Returns how many the kernel took, at least one: none is an error
    /// (`WouldBlock` with the send buffer full). An error met after the first datagram
    /// ends the batch early and is reported by the next call on the socket.
    pub(crate) fn send(
        &mut self,
        socket: &impl std::os::fd::AsRawFd,
        datagrams: &[u8],
        len: usize,
    ) -> io::Result<usize> {
        if len == 0 || datagrams.is_empty() {
            return Ok(0);
        }
        let cap = self.capacity();
        self.iovs.clear();
        for d in datagrams.chunks(len).take(cap) {
            self.iovs.push(libc::iovec {
                // sendmmsg only reads through it; the type is shared with recvmmsg.
                iov_base: d.as_ptr().cast_mut().cast(),
                iov_len: d.len(),
            });
        }
        self.point_headers();
        // SAFETY: `hdrs` holds one initialised header per iovec, each pointing at its own
        // element of `iovs`, which describes a live slice of `datagrams` (only read). No
        // address (connected socket), no control data. Neither vector is resized during
        // the call.
        let rc = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                0,
            )
        };
        checked(rc)
    }

    /// One `recvmmsg`: datagram `i` into `bufs[i * slot..][..slot]`, at most `capacity`
    /// and `lens.len()` of them, its *full* length into `lens[i]` (`MSG_TRUNC`: larger
    /// than `slot` when the datagram did not fit, and was cut). Returns how many arrived,
    /// at least one: none is `WouldBlock`. Non-blocking: the socket is.
    pub(crate) fn recv(
        &mut self,
        socket: &impl std::os::fd::AsRawFd,
        bufs: &mut [u8],
        slot: usize,
        lens: &mut [usize],
    ) -> io::Result<usize> {
        if slot == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let want = self.capacity().min(lens.len()).min(bufs.len() / slot);
        self.iovs.clear();
        for chunk in bufs.chunks_mut(slot).take(want) {
            self.iovs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        self.point_headers();
        // SAFETY: `hdrs` holds `want` initialised headers, each pointing at its own
        // element of `iovs`, which describes a distinct, live, writable chunk of `bufs`.
        // No address buffer (msg_name null: the kernel then writes none), no control
        // buffer. Neither vector is resized during the call; a null timeout is allowed.
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        let got = checked(rc)?;
        for (len, h) in lens.iter_mut().zip(&self.hdrs).take(got) {
            *len = h.msg_len as usize;
        }
        Ok(got)
    }

    /// One header per iovec, in order, each with one buffer and nothing else.
    fn point_headers(&mut self) {
        self.hdrs.clear();
        for iov in self.iovs.iter_mut() {
            // SAFETY: msghdr is a plain C struct (pointers and integers; on some targets
            // with private padding fields), for which all zeroes is valid.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov;
            msg.msg_iovlen = 1;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
    }
}

/// A count returned by a syscall, or its errno.
#[cfg(target_os = "linux")]
fn checked(rc: libc::c_int) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// A connected pair on loopback, port 0, the receiver non-blocking.
    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
        a.connect(b.local_addr().expect("addr b"))
            .expect("connect a");
        b.connect(a.local_addr().expect("addr a"))
            .expect("connect b");
        b.set_nonblocking(true).expect("non-blocking");
        (a, b)
    }

    /// Polls `recv` until `n` datagrams came or two seconds passed (loopback delivers at
    /// once, but the test must not hang if it does not).
    fn recv_n(m: &mut Mmsg, b: &UdpSocket, bufs: &mut [u8], slot: usize, n: usize) -> Vec<usize> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut lens = vec![0; m.capacity()];
        let mut all = Vec::new();
        while all.len() < n && Instant::now() < deadline {
            match m.recv(b, bufs, slot, &mut lens) {
                Ok(got) => all.extend_from_slice(&lens[..got]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        all
    }

    /// Five datagrams go in one `sendmmsg` and come back in one `recvmmsg`, each into its
    /// own slot, in order, byte for byte.
    #[test]
    fn a_batch_goes_and_comes_in_one_call_each() {
        let (a, b) = pair();
        let mut m = Mmsg::new(8);
        let out: Vec<u8> = (0..5u8).flat_map(|i| [i; 10]).collect();
        assert_eq!(m.send(&a, &out, 10).expect("sendmmsg"), 5);
        let mut bufs = vec![0u8; 8 * 16];
        let lens = recv_n(&mut m, &b, &mut bufs, 16, 5);
        assert_eq!(lens, vec![10; 5]);
        for i in 0..5 {
            assert_eq!(bufs[i * 16..][..10], [i as u8; 10]);
        }
    }

    /// A datagram longer than its slot is cut to the slot, and its full length reported;
    /// an empty socket says `WouldBlock`.
    #[test]
    fn an_oversized_datagram_reports_its_full_length() {
        let (a, b) = pair();
        let mut m = Mmsg::new(4);
        let mut bufs = vec![0u8; 4 * 8];
        let mut lens = [0; 4];
        let empty = m
            .recv(&b, &mut bufs, 8, &mut lens)
            .expect_err("empty socket");
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        a.send(&[7u8; 100]).expect("send");
        assert_eq!(recv_n(&mut m, &b, &mut bufs, 8, 1), vec![100]);
        assert_eq!(bufs[..8], [7u8; 8]);
    }
}
