//! Batched datagram I/O: `recvmmsg`/`sendmmsg` behind a small safe type.
//!
//! One `recvmmsg` fetches up to [`BATCH`] datagrams, one `sendmmsg` answers
//! them: two syscalls per batch instead of two per datagram. A lone
//! datagram goes through the same type by `recvfrom` (`Batch::recv_one`)
//! and a lone reply by `sendto`: what a plain loop pays for one. Linux only,
//! like the whole crate (see the gate in `lib.rs`): there is no fallback.
//! Sockets whose addresses are not IP addresses (Unix datagrams) take the
//! one-datagram-per-syscall path of `DatagramService` instead.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// Datagrams per syscall.
pub const BATCH: usize = 32;

/// Room for the largest datagram (a UDP payload is at most 65,507 bytes).
const SLOT: usize = 65_536;

/// Room for a sender's address.
const ADDR_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// A sender, as much as the source guard's common case needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// Its port.
    pub port: u16,
    /// From 127/8 or ::1.
    pub loopback: bool,
}

/// Receive buffers, addresses and headers for one batch. The buffers are
/// allocated zeroed and lazily by the OS: only pages a datagram touched
/// become resident.
pub struct Batch {
    arena: Box<[u8]>,
    iovs: Box<[libc::iovec; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    received: usize,
    /// Headers and iovecs for `sendmmsg`: what to send where.
    out_hdrs: Box<[libc::mmsghdr; BATCH]>,
    out_iovs: Box<[libc::iovec; BATCH]>,
    queued: usize,
}

/// `BATCH` zeroed `T`s; fixed-size arrays, so that an index checked once
/// against `BATCH` needs no further bounds checks.
///
/// # Safety
/// All-zero bytes must be a valid `T`: true of the plain C structs used
/// here (iovec, sockaddr_storage, mmsghdr), not of types in general.
unsafe fn zeroed<T>() -> Box<[T; BATCH]> {
    // SAFETY: the caller guarantees all-zero bytes are a valid T.
    let all: Box<[T]> = (0..BATCH)
        .map(|_| unsafe { MaybeUninit::<T>::zeroed().assume_init() })
        .collect();
    match all.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("exactly BATCH elements were collected"),
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch (2 MiB of address space, resident only as used).
    pub fn new() -> Self {
        // SAFETY: iovec, sockaddr_storage and mmsghdr are plain C structs
        // (integers and raw pointers): all-zero is a valid value of each.
        let mut batch = unsafe {
            Batch {
                arena: vec![0u8; BATCH * SLOT].into_boxed_slice(),
                iovs: zeroed(),
                addrs: zeroed(),
                hdrs: zeroed(),
                received: 0,
                out_hdrs: zeroed(),
                out_iovs: zeroed(),
                queued: 0,
            }
        };
        // The headers point into the boxed slices once and for all: a boxed
        // slice's heap block never moves, even when the Batch does. So a
        // receive resets only what the kernel wrote (the address lengths of
        // the datagrams it filled), not 32 headers, and an answer sets only
        // its buffer and address.
        let arena = batch.arena.as_mut_ptr();
        for i in 0..BATCH {
            batch.iovs[i] = libc::iovec {
                // SAFETY: i * SLOT + SLOT <= arena.len().
                iov_base: unsafe { arena.add(i * SLOT) }.cast(),
                iov_len: SLOT,
            };
            let hdr = &mut batch.hdrs[i].msg_hdr;
            hdr.msg_name = ptr::addr_of_mut!(batch.addrs[i]).cast();
            hdr.msg_namelen = ADDR_LEN;
            hdr.msg_iov = ptr::addr_of_mut!(batch.iovs[i]);
            hdr.msg_iovlen = 1;
            let out = &mut batch.out_hdrs[i].msg_hdr;
            out.msg_iov = ptr::addr_of_mut!(batch.out_iovs[i]);
            out.msg_iovlen = 1;
        }
        batch
    }

    /// Receives up to [`BATCH`] datagrams from the non-blocking socket `fd`;
    /// returns how many (an error of `WouldBlock` when there were none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // recvmmsg rewrote the address length of each datagram it filled.
        for hdr in &mut self.hdrs[..self.received] {
            hdr.msg_hdr.msg_namelen = ADDR_LEN;
        }
        self.received = 0;
        self.queued = 0;
        // SAFETY: every header points at live buffers owned by self, sized
        // as declared; the kernel writes at most that much.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Receives one datagram from the non-blocking socket `fd` with
    /// `recvfrom`, as datagram 0 of the batch: what a lone datagram costs
    /// in a plain loop, without the batch's bookkeeping in the kernel.
    /// An error of `WouldBlock` when there was none.
    pub fn recv_one(&mut self, fd: RawFd) -> io::Result<usize> {
        for hdr in &mut self.hdrs[..self.received] {
            hdr.msg_hdr.msg_namelen = ADDR_LEN;
        }
        self.received = 0;
        self.queued = 0;
        let mut namelen = ADDR_LEN;
        // SAFETY: slot 0 of the arena and addrs[0] are live buffers owned
        // by self, of the sizes passed; the kernel writes at most that much.
        let n = unsafe {
            libc::recvfrom(
                fd,
                self.iovs[0].iov_base,
                SLOT,
                0,
                ptr::addr_of_mut!(self.addrs[0]).cast(),
                &mut namelen,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // As recvmmsg would have filled the header.
        self.hdrs[0].msg_len = n as libc::c_uint;
        self.hdrs[0].msg_hdr.msg_namelen = namelen;
        self.received = 1;
        Ok(1)
    }

    /// The `i`th datagram and its sender (None for an address that is not IP).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        debug_assert!(i < self.received, "datagram {i} was not received");
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(SLOT);
        let data = &self.arena[i * SLOT..i * SLOT + len];
        (
            data,
            to_socket_addr(&self.addrs[i], hdr.msg_hdr.msg_namelen),
        )
    }

    /// The length of the `i`th datagram and what the source guard needs
    /// to know of its sender without building a `SocketAddr`: None for an
    /// address that is not IP.
    pub fn peek(&self, i: usize) -> (usize, Option<Source>) {
        debug_assert!(i < self.received, "datagram {i} was not received");
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(SLOT);
        let storage = &self.addrs[i];
        let namelen = hdr.msg_hdr.msg_namelen as usize;
        let source = match libc::c_int::from(storage.ss_family) {
            libc::AF_INET if namelen >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says sockaddr_in, and storage is large and aligned enough.
                let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
                Some(Source {
                    port: u16::from_be(sin.sin_port),
                    loopback: u32::from_be(sin.sin_addr.s_addr) >> 24 == 127,
                })
            }
            libc::AF_INET6 if namelen >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
                Some(Source {
                    port: u16::from_be(sin6.sin6_port),
                    loopback: Ipv6Addr::from(sin6.sin6_addr.s6_addr).is_loopback(),
                })
            }
            _ => None,
        };
        (len, source)
    }

    /// Queues an answer to datagram `i`: `reply` (or the datagram itself
    /// when None) to its sender.
    pub fn answer(&mut self, i: usize, reply: Option<&'static [u8]>) {
        let k = self.queued;
        if i >= self.received.min(BATCH) || k >= BATCH {
            debug_assert!(false, "answer {k} to datagram {i} of {}", self.received);
            return;
        }
        let (base, len) = match reply {
            Some(bytes) => (bytes.as_ptr() as *mut libc::c_void, bytes.len()),
            None => (self.iovs[i].iov_base, self.hdrs[i].msg_len as usize),
        };
        self.out_iovs[k] = libc::iovec {
            iov_base: base,
            iov_len: len,
        };
        let hdr = &mut self.out_hdrs[k].msg_hdr;
        hdr.msg_name = ptr::addr_of_mut!(self.addrs[i]).cast();
        hdr.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
        self.queued += 1;
    }

    /// Answers queued so far.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Sends queued answers starting at `from`; returns how many went out
    /// (an error only if the first one failed).
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        if from >= self.queued {
            return Ok(0);
        }
        if from + 1 == self.queued {
            // One reply: sendto, cheaper in the kernel than a sendmmsg of one.
            let iov = &self.out_iovs[from];
            let hdr = &self.out_hdrs[from].msg_hdr;
            // SAFETY: as below, for the one header `answer` set.
            let n = unsafe {
                libc::sendto(
                    fd,
                    iov.iov_base,
                    iov.iov_len,
                    0,
                    hdr.msg_name.cast(),
                    hdr.msg_namelen,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(1);
        }
        // SAFETY: out_hdrs[from..queued] point at addrs/out_iovs owned by
        // self and at datagram bytes in the arena or 'static replies.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.out_hdrs.as_mut_ptr().add(from),
                (self.queued - from) as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The length of queued answer `k`.
    pub fn queued_len(&self, k: usize) -> usize {
        self.out_iovs[k].iov_len
    }

    /// The bytes and destination of queued answer `k` (to queue it when
    /// the socket is full).
    pub fn queued_answer(&self, k: usize) -> (&[u8], Option<SocketAddr>) {
        let iov = &self.out_iovs[k];
        // SAFETY: set by `answer` to a live slice of the arena or a 'static reply.
        let data = unsafe { std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len) };
        let hdr = &self.out_hdrs[k];
        // SAFETY: `answer` pointed msg_name at one of self.addrs.
        let storage = unsafe { &*(hdr.msg_hdr.msg_name as *const libc::sockaddr_storage) };
        (data, to_socket_addr(storage, hdr.msg_hdr.msg_namelen))
    }
}

/// An IPv4 or IPv6 address as the kernel wrote it; None for other families.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says sockaddr_in, and storage is large and aligned enough.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_and_echoes_it_in_one_call() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_nonblocking(true).expect("nonblocking");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let to = server.local_addr().expect("addr");
        for i in 0..5u8 {
            client.send_to(&[i; 10], to).expect("send");
        }
        let mut batch = Batch::new();
        let mut got = 0;
        // Loopback delivery is immediate, but be patient with a busy box.
        for _ in 0..100 {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (data, from) = batch.get(i);
                        assert_eq!(data, &[(got + i) as u8; 10]);
                        assert_eq!(from, Some(client.local_addr().expect("addr")));
                        batch.answer(i, None);
                    }
                    got += n;
                    assert_eq!(batch.send(server.as_raw_fd(), 0).expect("send"), n);
                    if got == 5 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        assert_eq!(got, 5);
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            let (n, _) = client.recv_from(&mut buf).expect("echo");
            assert_eq!(&buf[..n], &[i; 10]);
        }
        // A lone datagram by recvfrom into the same batch, its reply by sendto.
        client.send_to(b"lone", to).expect("send");
        let mut lone = 0;
        for _ in 0..100 {
            match batch.recv_one(server.as_raw_fd()) {
                Ok(n) => {
                    lone = n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("recvfrom: {e}"),
            }
        }
        assert_eq!(lone, 1);
        let (data, from) = batch.get(0);
        assert_eq!(data, b"lone");
        assert_eq!(from, Some(client.local_addr().expect("addr")));
        assert_eq!(batch.peek(0).0, 4);
        batch.answer(0, None);
        assert_eq!(batch.send(server.as_raw_fd(), 0).expect("sendto"), 1);
        let (n, _) = client.recv_from(&mut buf).expect("echo");
        assert_eq!(&buf[..n], b"lone");
        // The next recvmmsg sees fresh address lengths.
        for i in 0..3u8 {
            client.send_to(&[i; 3], to).expect("send");
        }
        let mut got = 0;
        for _ in 0..100 {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        assert_eq!(batch.get(i).1, Some(client.local_addr().expect("addr")));
                        batch.answer(i, Some(b"ok"));
                    }
                    assert_eq!(batch.send(server.as_raw_fd(), 0).expect("send"), n);
                    got += n;
                    if got == 3 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        assert_eq!(got, 3);
        for _ in 0..3 {
            let (n, _) = client.recv_from(&mut buf).expect("reply");
            assert_eq!(&buf[..n], b"ok");
        }
    }
}
