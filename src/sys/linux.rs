//! The Linux syscalls that std, mio and socket2 do not wrap: `recvmmsg` and
//! `sendmmsg` (many datagrams per call, for `udp/batch.rs`), `sendfile`
//! (file bodies without a copy through user space, for `protocol/files.rs`),
//! the two ioctls that count a socket's queued bytes (for
//! `conn/socket.rs`), and the timer slack that decides how precisely a
//! short pause ends (for `--udp-coalesce`).
//!
//! Safe functions that take ordinary borrows; each `unsafe` block says why
//! it is sound in a `SAFETY:` comment, and every return value is checked
//! and turned into an `io::Result`. (The well-kept wrappers were weighed
//! first: `nix` has
//! `recvmmsg`/`sendmmsg`, but learning how many replies its `sendmmsg` sent
//! means iterating results that read address storage it never initialised;
//! quinn-udp sends to one address per call.)

use std::fs::File;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::ptr;

/// Header storage for batches of up to `capacity` datagrams.
///
/// The `mmsghdr` and `iovec` arrays hold raw pointers into the buffers of
/// one call; every call rebuilds them from the borrows it is given, so no
/// pointer is used after the call that set it. The address array outlives
/// calls on purpose: `recv` fills it with the senders and `send` answers to
/// them, so a reply's address is never converted on the fast path.
pub(crate) struct Mmsg {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    /// After `recv`: datagram `i`'s sender in `names[i]` (`name_lens[i]`
    /// bytes of it) and its length in `lens[i]`.
    names: Vec<libc::sockaddr_storage>,
    name_lens: Vec<libc::socklen_t>,
    lens: Vec<usize>,
    /// One `UDP_SEGMENT` control message per reply group (see `send`).
    cmsgs: Vec<[u64; GSO_CMSG_WORDS]>,
}

impl Mmsg {
    pub(crate) fn new(capacity: usize) -> Mmsg {
        // SAFETY: sockaddr_storage is a plain C struct of integers, for which
        // all zeroes is a valid value (family AF_UNSPEC).
        let empty: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Mmsg {
            hdrs: Vec::with_capacity(capacity),
            iovs: Vec::with_capacity(capacity),
            names: vec![empty; capacity],
            name_lens: vec![0; capacity],
            lens: vec![0; capacity],
            cmsgs: vec![[0; GSO_CMSG_WORDS]; capacity],
        }
    }

    /// One `recvmmsg`: up to `want` datagrams, datagram `i` into
    /// `bufs[i * slot..][..slot]`. Returns how many arrived (at least one;
    /// none is `WouldBlock`). Non-blocking: the socket is.
    pub(crate) fn recv(
        &mut self,
        socket: &impl AsRawFd,
        bufs: &mut [u8],
        slot: usize,
        want: usize,
    ) -> io::Result<usize> {
        let want = want.min(self.names.len()).min(bufs.len() / slot);
        self.iovs.clear();
        for chunk in bufs.chunks_mut(slot).take(want) {
            self.iovs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        self.hdrs.clear();
        for i in 0..want {
            let name = ptr::addr_of_mut!(self.names[i]).cast();
            let iov = ptr::addr_of_mut!(self.iovs[i]);
            self.hdrs.push(mmsghdr(name, size_of_storage(), iov));
        }
        // SAFETY: `hdrs` holds `want` initialised headers; each points at one
        // iovec of `iovs` (a distinct, live, writable chunk of `bufs`) and at
        // one element of `names` with its full size. All three vectors are
        // borrowed mutably for this call and not resized during it. A null
        // timeout is allowed.
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                want as libc::c_uint,
                0,
                ptr::null_mut(),
            )
        };
        let got = checked(rc)?;
        for (i, h) in self.hdrs.iter().take(got).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.name_lens[i] = h.msg_hdr.msg_namelen;
        }
        Ok(got)
    }

    /// Length of datagram `i` of the last `recv`.
    pub(crate) fn len(&self, i: usize) -> usize {
        self.lens[i]
    }

    /// Sender of datagram `i` of the last `recv`, as a std address; `None`
    /// for an address family other than IPv4 and IPv6.
    pub(crate) fn addr(&self, i: usize) -> Option<SocketAddr> {
        to_socket_addr(&self.names[i], self.name_lens[i])
    }

    /// True when datagrams `i` and `j` of the last `recv` came from the
    /// same address (their replies may then share one GSO message).
    pub(crate) fn same_sender(&self, i: usize, j: usize) -> bool {
        self.name_lens[i] == self.name_lens[j] && self.addr(i) == self.addr(j)
    }

    /// One `sendmmsg` of reply groups. Each group is a run of datagrams of
    /// the last `recv` (reply `i` being `bufs[i * slot..][..len(i)]`) with
    /// one sender, sent back to it as one message. A run of more than one
    /// goes as a UDP GSO message: its replies are the message's segments
    /// (`UDP_SEGMENT` = the first one's length; all but the last of exactly
    /// that length), and the kernel splits it into datagrams again, having
    /// routed and built one packet instead of many. Returns how many groups
    /// the kernel took; an error concerns the first group.
    pub(crate) fn send(
        &mut self,
        socket: &impl AsRawFd,
        bufs: &[u8],
        slot: usize,
        groups: &[Range<usize>],
    ) -> io::Result<usize> {
        let groups = &groups[..groups.len().min(self.names.len())];
        self.iovs.clear();
        for i in groups.iter().flat_map(Clone::clone) {
            let reply = &bufs[i * slot..][..self.lens[i]];
            self.iovs.push(libc::iovec {
                // sendmmsg only reads through it; the type is shared with recv.
                iov_base: reply.as_ptr().cast_mut().cast(),
                iov_len: reply.len(),
            });
        }
        self.hdrs.clear();
        let mut first_iov = 0;
        for (g, group) in groups.iter().enumerate() {
            let i = group.start;
            let name = ptr::addr_of_mut!(self.names[i]).cast();
            let iov = ptr::addr_of_mut!(self.iovs[first_iov]);
            first_iov += group.len();
            let mut h = mmsghdr(name, self.name_lens[i], iov);
            h.msg_hdr.msg_iovlen = group.len() as _;
            if group.len() > 1 {
                let segment = u16::try_from(self.lens[i])
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                set_gso_segment(&mut h.msg_hdr, &mut self.cmsgs[g], segment);
            }
            self.hdrs.push(h);
        }
        // SAFETY: `hdrs` holds one initialised header per group; each points
        // at `group.len()` consecutive iovecs over live slices of `bufs`
        // (only read), at a sender address `recv` wrote with its length, and
        // for a run at its own control buffer in `cmsgs`. None of the vectors
        // is resized during the call.
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
}

/// Bytes of one `UDP_SEGMENT` control message, in `u64`s so it is aligned
/// for a `cmsghdr` (24 bytes on 64-bit Linux, 16 on 32-bit).
const GSO_CMSG_WORDS: usize = 4;

/// Attaches a `UDP_SEGMENT` control message to `msg`, stored in `buf`.
fn set_gso_segment(msg: &mut libc::msghdr, buf: &mut [u64; GSO_CMSG_WORDS], segment: u16) {
    *buf = [0; GSO_CMSG_WORDS];
    // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(mem::size_of::<u16>() as libc::c_uint),
            libc::CMSG_LEN(mem::size_of::<u16>() as libc::c_uint),
        )
    };
    assert!(
        space as usize <= mem::size_of_val(buf),
        "cmsg buffer too small"
    );
    msg.msg_control = buf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `buf`, aligned for cmsghdr and at least
    // CMSG_SPACE(2) bytes (checked above), so CMSG_FIRSTHDR returns a
    // non-null pointer to a header inside it, and CMSG_DATA points at the
    // two bytes after that header, still inside `buf`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = len as _;
        ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
    }
}

/// A header for one datagram with one buffer and no control messages.
fn mmsghdr(
    name: *mut libc::c_void,
    namelen: libc::socklen_t,
    iov: *mut libc::iovec,
) -> libc::mmsghdr {
    // SAFETY: msghdr is a plain C struct (pointers and integers; on some
    // targets with private padding fields), for which all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = name;
    msg.msg_namelen = namelen;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    libc::mmsghdr {
        msg_hdr: msg,
        msg_len: 0,
    }
}

fn size_of_storage() -> libc::socklen_t {
    mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t
}

/// A count returned by a syscall, or its errno.
fn checked(rc: libc::c_int) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// Reads an IPv4 or IPv6 address the kernel wrote into `storage`.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: sockaddr_storage is at least as large and as aligned as
            // every socket address type, and the family says the kernel wrote
            // a sockaddr_in here.
            let a: &libc::sockaddr_in = unsafe { &*ptr::from_ref(storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*ptr::from_ref(storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// Bytes in `socket`'s send queue that the peer has not acknowledged
/// (`SIOCOUTQ`, which is `TIOCOUTQ`).
pub(crate) fn unacked_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    ioctl_count(socket, libc::TIOCOUTQ)
}

/// Bytes in `socket`'s receive queue, received but not read yet
/// (`SIOCINQ`, which is `FIONREAD`).
pub(crate) fn queued_input_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    ioctl_count(socket, libc::FIONREAD)
}

/// How long ago `socket` last sent its peer a segment carrying data
/// (`TCP_INFO`'s `tcpi_last_data_sent`, kept by the kernel in ms). Not a
/// window probe: a peer that reads nothing gets none. `None` while the
/// kernel is retransmitting: resending what the peer did not take is not
/// progress. `None` too for a socket that never sent data (no byte
/// acknowledged, none in flight): the kernel then reports the time since
/// the connection was set up, which is not traffic, and which made a
/// silent connection look active a few milliseconds past its accept.
pub(crate) fn since_data_sent(socket: &impl AsRawFd) -> io::Result<Option<std::time::Duration>> {
    // SAFETY: tcp_info is plain integers, for which all zeroes is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is
    // that long and lives for the call; the fd is open while we borrow it.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if info.tcpi_retransmits > 0 || (info.tcpi_bytes_acked == 0 && info.tcpi_unacked == 0) {
        return Ok(None);
    }
    let ms = u64::from(info.tcpi_last_data_sent);
    Ok(Some(std::time::Duration::from_millis(ms)))
}

/// An ioctl that reports a byte count through an `int`.
fn ioctl_count(socket: &impl AsRawFd, request: libc::Ioctl) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer, which points
    // at `n` for the duration of the call; the fd is open while we borrow
    // its owner.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut n) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// One `sendfile`: up to `count` bytes of `file` from `*offset` to
/// `socket`, advancing `*offset` by what was sent. The file's own position
/// is not used or moved. Returns the bytes sent; 0 means the file ended
/// before `*offset + 1`.
pub(crate) fn sendfile(
    socket: &impl AsRawFd,
    file: &File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut off =
        libc::off_t::try_from(*offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both descriptors are open for the call (borrowed), `off` is a
    // live off_t the kernel may update, and `count` bounds what it writes
    // to the socket; no user memory is read or written besides `off`.
    let rc = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    let n = usize::try_from(rc).map_err(|_| io::Error::last_os_error())?;
    *offset += n as u64;
    Ok(n)
}

/// This thread's timer slack, 1 µs while the value lives: the kernel then
/// ends the thread's sleeps and poll timeouts within 1 µs of the time asked
/// for. By default it may add up to 50 µs ("timer slack", so that wakeups
/// bunch together and save power), which would turn a 20 µs pause
/// (`--udp-coalesce`) into 70. The setting is per thread, and the thread
/// may be an embedder's (`Server::run` runs the first reactor on its
/// caller's): dropping the value gives the thread its old slack back.
pub(crate) struct PreciseTimers {
    /// The slack the thread had before, in nanoseconds.
    previous: libc::c_ulong,
}

impl PreciseTimers {
    /// Sets the calling thread's slack to 1 µs, remembering the old one.
    pub(crate) fn new() -> io::Result<PreciseTimers> {
        const PRECISE_NS: libc::c_ulong = 1_000;
        // SAFETY: PR_GET_TIMERSLACK reads no memory and returns the slack
        // (or -1 and errno); the unused arguments are zero as prctl(2) asks.
        let rc = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        // A slack past `c_int::MAX` comes back negative: leave it alone.
        let previous = libc::c_ulong::try_from(rc).map_err(|_| io::Error::last_os_error())?;
        set_timer_slack(PRECISE_NS)?;
        Ok(PreciseTimers { previous })
    }
}

impl Drop for PreciseTimers {
    fn drop(&mut self) {
        // Setting a value read from the kernel does not fail; if it did,
        // the thread would only wake more precisely than it asked for.
        let _ = set_timer_slack(self.previous);
    }
}

/// Sets the calling thread's timer slack to `ns` nanoseconds.
fn set_timer_slack(ns: libc::c_ulong) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes its value by integer and reads no
    // memory; the unused arguments are zero as prctl(2) asks.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A server socket that blocks for at most 5 s per datagram: a blocking
    /// `recvmmsg` then waits until exactly `want` datagrams arrived, however
    /// late a loaded machine delivers them, and fails instead of hanging.
    fn blocking_server(addr: &str) -> io::Result<UdpSocket> {
        let s = UdpSocket::bind(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    }

    /// A batch comes in with each sender's address, and each reply goes
    /// back to its own sender in one call.
    #[test]
    fn recv_and_send_a_batch_between_two_senders() {
        let server = blocking_server("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let to = server.local_addr().unwrap();
        a.send_to(b"one", to).unwrap();
        b.send_to(b"", to).unwrap();
        a.send_to(b"three", to).unwrap();
        let mut m = Mmsg::new(8);
        let mut bufs = vec![0u8; 8 * 16];
        assert_eq!(m.recv(&server, &mut bufs, 16, 3).unwrap(), 3);
        assert_eq!((m.len(0), m.len(1), m.len(2)), (3, 0, 5));
        assert_eq!(m.addr(0), Some(a.local_addr().unwrap()));
        assert_eq!(m.addr(1), Some(b.local_addr().unwrap()));
        assert_eq!(&bufs[32..37], b"three");
        // One message per datagram: three groups of one.
        assert_eq!(m.send(&server, &bufs, 16, &[0..1, 1..2, 2..3]).unwrap(), 3);
        let mut buf = [0u8; 16];
        assert_eq!(a.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(a.recv(&mut buf).unwrap(), 5);
        assert_eq!(b.recv(&mut buf).unwrap(), 0);
        server.set_nonblocking(true).unwrap();
        let e = m.recv(&server, &mut bufs, 16, 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    /// A run of replies to one sender goes as one GSO message, and arrives
    /// as separate datagrams, the last one shorter.
    #[test]
    fn a_run_goes_as_one_gso_message_and_arrives_split() {
        let server = blocking_server("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            c.send_to(&[i; 10], to).unwrap();
        }
        c.send_to(&[9; 4], to).unwrap();
        let mut m = Mmsg::new(8);
        let mut bufs = vec![0u8; 8 * 16];
        assert_eq!(m.recv(&server, &mut bufs, 16, 6).unwrap(), 6);
        assert!(m.same_sender(0, 5));
        let one_run = std::slice::from_ref(&(0..6));
        assert_eq!(m.send(&server, &bufs, 16, one_run).unwrap(), 1);
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            assert_eq!(c.recv(&mut buf).unwrap(), 10);
            assert_eq!(buf[..10], [i; 10]);
        }
        assert_eq!(c.recv(&mut buf).unwrap(), 4);
    }

    #[test]
    fn ipv6_addresses_convert() {
        let Ok(server) = blocking_server("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        let c = UdpSocket::bind("[::1]:0").unwrap();
        c.send_to(b"x", server.local_addr().unwrap()).unwrap();
        let mut m = Mmsg::new(2);
        let mut bufs = vec![0u8; 2 * 8];
        assert_eq!(m.recv(&server, &mut bufs, 8, 1).unwrap(), 1);
        assert_eq!(m.addr(0), Some(c.local_addr().unwrap()));
    }
}
