//! Socket calls std and socket2 lack: the process umask around a bind,
//! and a Unix peer's credentials.

use std::io;

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
