//! `serve --pid-file PATH`: the pid of the process that holds the sockets.
//!
//! Written through `safe_file::replace` (an unpredictable temporary made
//! with `O_EXCL|O_NOFOLLOW`, renamed over PATH), so a reader never sees it
//! half written and root never writes through a symlink or blocks on a
//! FIFO a local user planted; a symlink, FIFO or device at PATH is refused.
//! After an upgrade the new process rewrites it; the old one removes the
//! file on exit only if it still holds the old pid, so it never deletes its
//! successor's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::safe_file;

/// A pid file holds a number and a newline: anything longer is not ours.
const MAX_LEN: usize = 32;

/// A pid file this process wrote; removed again when dropped, if it is
/// still ours.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `path`.
    pub fn write(path: &Path) -> io::Result<PidFile> {
        write_pid(path)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid: std::process::id(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes our pid to the pid file at `path` again: after an upgrade that
/// failed, the new process may have written (and, exiting, removed) its
/// own, while we still hold the sockets.
pub fn reclaim(path: &Path) {
    if read(path) != Some(std::process::id()) {
        match write_pid(path) {
            Ok(()) => log::info!("{} names us again", path.display()),
            Err(err) => log::warn!("could not rewrite {}: {err}", path.display()),
        }
    }
}

fn write_pid(path: &Path) -> io::Result<()> {
    safe_file::replace(path, format!("{}\n", std::process::id()).as_bytes(), 0o644)
}

/// The pid a pid file holds, if it is a regular file that holds one.
pub fn read(path: &Path) -> Option<u32> {
    let bytes = safe_file::read_small(path, MAX_LEN).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path) != Some(self.pid) {
            return; // a successor's (or someone else's) by now: keep it
        }
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {err}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed_only_while_ours() {
        let dir = std::env::temp_dir().join(format!("echoplex-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("echoplex.pid");
        let file = PidFile::write(&path).expect("write");
        assert_eq!(read(&path), Some(std::process::id()));
        drop(file);
        assert!(!path.exists(), "our own pid file is removed");

        let file = PidFile::write(&path).expect("write");
        fs::write(&path, "1\n").expect("successor");
        drop(file);
        assert_eq!(read(&path), Some(1), "a successor's pid file is kept");
        assert!(PidFile::write(&dir.join("missing/dir.pid")).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
