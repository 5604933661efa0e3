//! `serve --pid-file PATH`: the pid of the process that holds the sockets.
//!
//! Written atomically (a temporary file renamed over PATH), so a reader
//! never sees it half written. After an upgrade the new process rewrites
//! it; the old one removes the file on exit only if it still holds the old
//! pid, so it never deletes its successor's.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The pid file this process keeps, for `reclaim`.
static OURS: Mutex<Option<PathBuf>> = Mutex::new(None);

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
        *OURS.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.to_path_buf());
        Ok(PidFile {
            path: path.to_path_buf(),
            pid: std::process::id(),
        })
    }
}

/// Writes our pid to the pid file again: after an upgrade that failed, the
/// new process may have written (and, exiting, removed) its own, while we
/// still hold the sockets.
pub fn reclaim() {
    let Some(path) = OURS.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
        return;
    };
    if read(&path) != Some(std::process::id()) {
        match write_pid(&path) {
            Ok(()) => log::info!("{} names us again", path.display()),
            Err(err) => log::warn!("could not rewrite {}: {err}", path.display()),
        }
    }
}

/// Writes this process's pid to `path`, atomically.
fn write_pid(path: &Path) -> io::Result<()> {
    let pid = std::process::id();
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file name", path.display()),
        )
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{pid}.tmp"));
    let temp = path.with_file_name(temp_name);
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        writeln!(file, "{pid}")?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    Ok(())
}

/// The pid a pid file holds, if it holds one.
pub fn read(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
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
