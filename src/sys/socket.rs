//! Socket calls std and socket2 lack: the process umask around a bind,
//! and a Unix peer's credentials.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

/// Runs `f` with the process umask set to `mask`, then restores it: a
/// Unix socket file gets its mode from the umask at `bind`, from its first
/// instant. The mask is process-wide: call it only while no other thread
/// creates files.
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process mask; it cannot fail.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let result = f();
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    result
}

/// The user id of the process at the other end of a Unix stream
/// (`SO_PEERCRED`: the credentials it had when it connected).
pub fn peer_uid(socket: &impl std::os::fd::AsFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into the ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket.as_fd()),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Waits up to `ms` milliseconds for `events` on `fd` (poll(2) on one
/// descriptor); the events that came (0: none in time).
pub fn poll_one(fd: RawFd, events: libc::c_short, ms: libc::c_int) -> io::Result<libc::c_short> {
    let mut pollfd = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    match poll(&mut pollfd, ms)? {
        0 => Ok(0),
        _ => Ok(pollfd[0].revents),
    }
}

/// Waits up to `ms` milliseconds for any of `fds` (poll(2)): how many
/// have events, each in its `revents`. A negative `fd` is skipped.
pub fn poll(fds: &mut [libc::pollfd], ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fds` is a live slice of pollfds of the length passed; poll
    // writes only their `revents`.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    usize::try_from(ready).map_err(|_| io::Error::last_os_error())
}

/// Takes the next datagram on the Unix socket `fd` into `buf`: its real
/// size (MSG_TRUNC: more than `buf.len()` when the rest was cut off and
/// dropped) and the sender's address as the kernel wrote it.
pub fn recv_from_unix(
    fd: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: buf and addr are live buffers of the sizes passed; the
    // kernel writes at most that much into each.
    let size = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            std::ptr::addr_of_mut!(addr).cast(),
            &mut len,
        )
    };
    let size = usize::try_from(size).map_err(|_| io::Error::last_os_error())?;
    Ok((size, addr, len))
}

/// The size of the next datagram waiting on `fd`, without taking it (a
/// Unix datagram may exceed any buffer, and recv_from would truncate it).
pub fn next_datagram_size(fd: RawFd) -> io::Result<usize> {
    // SAFETY: a zero-length peek writes nothing; MSG_TRUNC makes it
    // return the size of the next datagram.
    let size = unsafe {
        libc::recv(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(size).map_err(|_| io::Error::last_os_error())
}

/// Bytes waiting to be read on `fd` (FIONREAD); 0 if it cannot say.
pub fn unread_bytes(fd: RawFd) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the variable we own.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) };
    if rc == 0 {
        usize::try_from(count).unwrap_or(0)
    } else {
        0
    }
}

/// What [`inspect_fd`] finds at a descriptor.
#[derive(Clone, Copy, Debug)]
pub struct FdInfo {
    /// It is a socket.
    pub is_socket: bool,
    /// Its close-on-exec flag is set.
    pub cloexec: bool,
}

/// Looks at descriptor `fd` without taking it: an error if it is not open.
pub fn inspect_fd(fd: RawFd) -> io::Result<FdInfo> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes into the buffer we own; a bad fd gives EBADF.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so the buffer is initialised.
    let mode = unsafe { stat.assume_init() }.st_mode;
    // SAFETY: F_GETFD reads the flags of a descriptor fstat found open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdInfo {
        is_socket: mode & libc::S_IFMT == libc::S_IFSOCK,
        cloexec: flags & libc::FD_CLOEXEC != 0,
    })
}

/// Takes ownership of descriptor `fd`, passed to this process by socket
/// activation (LISTEN_FDS: descriptors 3.. are ours): the caller has
/// looked at it ([`inspect_fd`]: an open socket, not one of ours) and
/// takes each exactly once.
pub fn take_passed_socket(fd: RawFd) -> socket2::Socket {
    // SAFETY: by the caller's checks, `fd` is an open socket passed to
    // this process and owned by nobody else.
    unsafe { socket2::Socket::from_raw_fd(fd) }
}

/// One datagram and the pid of the process that sent it (SCM_CREDENTIALS,
/// which the kernel fills in since SO_PASSCRED is on).
pub fn recv_with_sender(
    socket: &UnixDatagram,
    buf: &mut [u8],
) -> io::Result<(usize, Option<libc::pid_t>)> {
    // Room for one ucred control message, aligned as cmsg wants.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; we point it at buffers we own.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg writes at most the lengths given into our buffers.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sender = None;
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled,
    // within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
            {
                let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                sender = Some(cred.pid);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, sender))
}
