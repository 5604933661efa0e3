//! Starting and watching a child process the way the upgrade needs it:
//! descriptors moved to fixed numbers and the child's own pid in its
//! environment between fork and exec (async-signal-safe only there), a
//! pidfd to wait on, and reaping and signalling it.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A close-on-exec duplicate of `fd` numbered `min` or above.
pub fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl duplicates a descriptor the caller owns.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Starts `exe` with `args` and `env`, `sources` moved to descriptors
/// `first_fd`, `first_fd + 1`, ... and `PID_VAR=<the child's pid>` added
/// to its environment. Every `sources` entry must be at least `first_fd +
/// sources.len()` (see [`dup_at_least`]), so no move overwrites another.
pub fn fork_exec_with_fds(
    exe: &CString,
    args: &[CString],
    env: &[CString],
    sources: &[RawFd],
    first_fd: RawFd,
    pid_var: &str,
) -> io::Result<libc::pid_t> {
    let floor = first_fd + sources.len() as RawFd;
    if sources.iter().any(|&fd| fd < floor) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a descriptor to move is below the target numbers",
        ));
    }
    // The child writes its pid's digits into its copy of this buffer.
    let prefix = format!("{pid_var}=");
    let mut pid_entry = vec![0u8; prefix.len() + 24];
    pid_entry[..prefix.len()].copy_from_slice(prefix.as_bytes());
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|arg| arg.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|pair| pair.as_ptr()).collect();
    envp.push(pid_entry.as_ptr().cast());
    envp.push(std::ptr::null());
    let pid_digits = pid_entry[prefix.len()..].as_mut_ptr();
    // SAFETY: argv and envp point into `args`, `env` and `pid_entry`,
    // which outlive the call; both are NULL-terminated; `pid_digits` has 24
    // bytes of room; the sources were checked above.
    unsafe { fork_exec(exe, &argv, &envp, sources, first_fd, pid_digits) }
}

/// `fork`, then in the child: move `sources` to descriptors `first_fd`..,
/// write the child's pid at `pid_digits` (inside `envp`'s `NAME=`), reset
/// signal dispositions and the mask, `execve`.
///
/// # Safety
/// Every pointer must be valid and NUL-terminated as `execve` expects,
/// `pid_digits` must have room for 21 bytes, and every `sources` entry must
/// be at least `first_fd + sources.len()`.
unsafe fn fork_exec(
    exe: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    sources: &[RawFd],
    first_fd: RawFd,
    pid_digits: *mut u8,
) -> io::Result<libc::pid_t> {
    // Block every signal across fork: the child must not run our handlers
    // (they write to the parent's signal pipe) before exec resets them.
    let mut all: libc::sigset_t = std::mem::zeroed();
    let mut old: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    let pid = libc::fork();
    if pid != 0 {
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        return if pid < 0 { Err(err) } else { Ok(pid) };
    }
    // The child. Only async-signal-safe calls from here on: no allocation.
    for (index, &fd) in sources.iter().enumerate() {
        if libc::dup2(fd, first_fd + index as RawFd) < 0 {
            libc::_exit(126);
        }
    }
    let mut pid = libc::getpid() as u64;
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (pid % 10) as u8;
        len += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for i in 0..len {
        *pid_digits.add(i) = digits[len - 1 - i];
    }
    *pid_digits.add(len) = 0;
    let mut default: libc::sigaction = std::mem::zeroed();
    default.sa_sigaction = libc::SIG_DFL;
    for signal in 1..libc::SIGRTMIN() {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    }
    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
    libc::_exit(127)
}

/// A pidfd for `pid` (readable once it exits), if the kernel has them.
pub fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor (close-on-exec by definition of pidfd_open).
    (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) })
}

/// How our child `pid` ended, if it has (waitpid, non-blocking): its
/// exit code, or the signal that killed it.
pub fn reap(pid: libc::pid_t) -> Option<Ended> {
    let mut status = 0;
    // SAFETY: waitpid on our own child, non-blocking.
    let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if reaped != pid {
        return None;
    }
    Some(if libc::WIFEXITED(status) {
        Ended::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Ended::Killed(libc::WTERMSIG(status))
    } else {
        Ended::Other
    })
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
    /// Anything else waitpid reports.
    Other,
}

/// Sends `signal` to our own child `pid` (not yet reaped).
pub fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is our unreaped child.
    unsafe { libc::kill(pid, signal) };
}
