//! Starting the successor: fork and exec of the executable on disk with
//! every recorded socket as `LISTEN_FDS` (see the parent module).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use log::{info, warn};
use socket2::Type;

use super::{Inventory, UPGRADE_NOTIFY};
use crate::daemon::activation::FIRST_FD;
use crate::daemon::notify;
use crate::sock::Local;
use crate::sys::process;

/// The executable on disk: `/proc/self/exe` resolved to its path. When
/// the file was replaced since we started (a new build, a package
/// upgrade), the link reads `PATH (deleted)`; the path is what we want.
pub fn executable() -> io::Result<PathBuf> {
    let link = std::fs::read_link("/proc/self/exe")?;
    let bytes = link.as_os_str().as_bytes();
    let path = match bytes.strip_suffix(b" (deleted)") {
        Some(path) => PathBuf::from(OsStr::from_bytes(path)),
        None => link,
    };
    std::fs::metadata(&path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    Ok(path)
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or variable holds a NUL byte",
        )
    })
}

/// A started successor.
#[derive(Debug)]
pub struct Successor {
    /// Its process id.
    pub pid: libc::pid_t,
    /// A descriptor that turns readable when it exits (Linux 5.3+).
    pub pidfd: Option<OwnedFd>,
    /// The executable it runs.
    pub exe: PathBuf,
    /// Sockets handed over.
    pub sockets: usize,
}

/// Starts the executable on disk with our arguments and every recorded
/// socket, telling it to report readiness to `notify_addr` (`@name`).
pub fn spawn_successor(
    notify_addr: &str,
    inventory: &Inventory,
    extra_env: &[(String, String)],
) -> io::Result<Successor> {
    let exe = executable()?;
    let exe_c = cstring(exe.as_os_str().as_bytes())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|arg| cstring(arg.as_bytes()))
        .collect::<io::Result<_>>()?;

    let inventory = inventory.lock();
    let entries = inventory.as_deref().unwrap_or_default();
    let count = entries.len();
    let first_free = FIRST_FD + count as RawFd;
    // Above every target number, so no dup2 in the child overwrites a
    // descriptor it has yet to move; close-on-exec in the parent's copy.
    let high: Vec<OwnedFd> = entries
        .iter()
        .map(|entry| process::dup_at_least(entry.fd.as_raw_fd(), first_free))
        .collect::<io::Result<_>>()?;
    let keep: Vec<String> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.keep_file && matches!(entry.local, Local::Path(_)))
        .map(|(index, _)| index.to_string())
        .collect();
    let names: Vec<&str> = entries
        .iter()
        .map(|entry| entry.name.as_deref().unwrap_or("unknown"))
        .collect();
    for entry in entries {
        let ty = if entry.ty == Type::STREAM {
            "stream"
        } else {
            "datagram"
        };
        log::debug!(
            "handing over {ty} {} as '{}'",
            entry.local,
            entry.name.as_deref().unwrap_or("unknown")
        );
    }

    let mut env: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        let key = key.as_bytes();
        if matches!(
            key,
            b"LISTEN_PID"
                | b"LISTEN_FDS"
                | b"LISTEN_FDNAMES"
                | b"ECHOPLEX_UPGRADE_NOTIFY"
                | b"ECHOPLEX_KEEP_FILES"
        ) || extra_env.iter().any(|(name, _)| name.as_bytes() == key)
        {
            continue;
        }
        let mut pair = key.to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        env.push(cstring(&pair)?);
    }
    for (name, value) in extra_env {
        env.push(cstring(format!("{name}={value}").as_bytes())?);
    }
    env.push(cstring(format!("LISTEN_FDS={count}").as_bytes())?);
    env.push(cstring(
        format!("LISTEN_FDNAMES={}", names.join(":")).as_bytes(),
    )?);
    env.push(cstring(
        format!("{UPGRADE_NOTIFY}={notify_addr}").as_bytes(),
    )?);
    env.push(cstring(
        format!(
            "{}={}",
            crate::daemon::activation::KEEP_FILES,
            keep.join(",")
        )
        .as_bytes(),
    )?);
    // LISTEN_PID must be the child's pid, known only after fork: the child
    // writes it between fork and exec.
    let sources: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let pid = process::fork_exec_with_fds(&exe_c, &args, &env, &sources, FIRST_FD, "LISTEN_PID")?;
    drop(high);
    drop(inventory);
    let pidfd = process::pidfd_open(pid);
    Ok(Successor {
        pid,
        pidfd,
        exe,
        sockets: count,
    })
}

/// Tells whoever waits that this process serves: the process it replaces
/// (on the upgrade's notify socket), else the service manager.
pub fn announce_ready(status: &str) {
    let Ok(address) = std::env::var(UPGRADE_NOTIFY) else {
        notify::ready(status);
        return;
    };
    let message = format!("READY=1\nMAINPID={}", std::process::id());
    match notify::Notifier::new(&address).and_then(|to| to.send(&message)) {
        Ok(()) => info!("told the process we replace that we are ready"),
        Err(err) => warn!(
            "could not tell the process we replace that we are ready ({address}: {err}); it will give up on us"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_a_real_file() {
        let exe = executable().expect("exe");
        assert!(exe.is_file(), "{}", exe.display());
        assert!(!exe.to_string_lossy().ends_with("(deleted)"));
    }
}
