//! Writing and reading small files as root in a directory others may write
//! to (`/tmp`, `/run/x` with loose modes): `--pid-file` now, any file the
//! daemon writes for its operator later (a certificate it generated).
//!
//! The classic holes, each closed here:
//! - a temporary with a guessable name, opened without `O_EXCL`: a local
//!   user plants a symlink there and root writes through it into any file.
//!   Ours has 64 unpredictable bits in its name and is created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` (so nothing that exists, a symlink
//!   least of all, is ever opened), then checked to be the regular file
//!   with one link we just made;
//! - a FIFO or device planted at a name: opening it blocks (a FIFO with no
//!   reader) or talks to hardware. `O_EXCL` never opens what exists, and
//!   reads use `O_NONBLOCK` and refuse anything but a regular file;
//! - the target itself a symlink, FIFO or device: refused before anything
//!   is written (a rename would replace a symlink, not follow it, but an
//!   operator who put one there meant something else: say so);
//! - the temporary swapped between write and rename: after the rename the
//!   target must be the very inode we wrote, else it is an error.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Attempts at a fresh temporary name before giving up (a name taken by
/// chance, or by someone planting names: 64 random bits make this moot).
const NAME_ATTEMPTS: usize = 16;

/// What a path holds, in words, when it is not a regular file.
fn not_regular(meta: &fs::Metadata) -> Option<&'static str> {
    let ty = meta.file_type();
    if ty.is_file() {
        None
    } else if ty.is_symlink() {
        Some("a symbolic link")
    } else if ty.is_fifo() {
        Some("a FIFO")
    } else if ty.is_char_device() || ty.is_block_device() {
        Some("a device")
    } else if ty.is_socket() {
        Some("a socket")
    } else if ty.is_dir() {
        Some("a directory")
    } else {
        Some("not a regular file")
    }
}

fn refused(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {what}, not a regular file", path.display()),
    )
}

/// Fails unless `path` is missing or a regular file (never followed).
pub fn check_target(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) => match not_regular(&meta) {
            Some(what) => Err(refused(path, what)),
            None => Ok(()),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// 64 bits no other local user can predict: std seeds `RandomState` from
/// the kernel's random source, once per process, then varies it per call.
fn unpredictable() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

/// `.NAME.<16 hex digits>.tmp` beside `path`.
fn temp_beside(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file name", path.display()),
        )
    })?;
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".{:016x}.tmp", unpredictable()));
    Ok(path.with_file_name(temp))
}

/// True if `path` (not followed) is the inode `meta` describes.
fn is_same(path: &Path, meta: &fs::Metadata) -> bool {
    fs::symlink_metadata(path).is_ok_and(|now| (now.dev(), now.ino()) == (meta.dev(), meta.ino()))
}

/// Replaces `path` with a new regular file holding `contents` (mode
/// `mode`, less the umask), atomically: a reader sees the old file or the
/// new one, never half of it, and nothing but the directory entry `path`
/// is ever changed. Never follows a symlink, never opens a file it did not
/// create, never blocks on what it finds (see the module's comment).
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    check_target(path)?;
    let (temp, mut file) = create_temp(path, mode)?;
    let written = (|| -> io::Result<fs::Metadata> {
        let meta = file.metadata()?;
        // O_EXCL made it; a regular file with one link, ours, is what it
        // must still be (a filesystem that ignores O_EXCL is refused).
        if !meta.is_file() || meta.nlink() != 1 {
            return Err(refused(&temp, "not the file just created"));
        }
        file.write_all(contents)?;
        file.sync_all()?;
        check_target(path)?;
        fs::rename(&temp, path)?;
        if !is_same(path, &meta) {
            return Err(io::Error::other(format!(
                "{} was replaced while it was written",
                path.display()
            )));
        }
        Ok(meta)
    })();
    if let Err(err) = written {
        // Only ours is removed: a name swapped under us stays.
        if file.metadata().is_ok_and(|meta| is_same(&temp, &meta)) {
            let _ = fs::remove_file(&temp);
        }
        return Err(err);
    }
    Ok(())
}

/// Creates a fresh temporary beside `path`: `O_CREAT|O_EXCL|O_NOFOLLOW`
/// (std adds `O_CLOEXEC`), under a name nobody could guess.
fn create_temp(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let temp = temp_beside(path)?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
}

/// Reads at most `limit` bytes of the regular file at `path`; never follows
/// a symlink, never blocks on a FIFO or device (they are refused).
pub fn read_small(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            // O_NOFOLLOW's answer for a symlink.
            Some(libc::ELOOP) => refused(path, "a symbolic link"),
            _ => err,
        })?;
    let meta = file.metadata()?;
    if let Some(what) = not_regular(&meta) {
        return Err(refused(path, what));
    }
    let mut bytes = Vec::new();
    file.take(limit as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("echoplex-safe-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn replaces_a_regular_file_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let path = dir.join("x.pid");
        replace(&path, b"1\n", 0o644).expect("new");
        replace(&path, b"22\n", 0o644).expect("again");
        assert_eq!(fs::read(&path).expect("read"), b"22\n");
        assert_eq!(read_small(&path, 64).expect("read"), b"22\n");
        assert_eq!(
            fs::read_dir(&dir).expect("dir").count(),
            1,
            "a temporary left"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_or_fifo_at_the_target_is_refused_untouched() {
        let dir = scratch("refuse");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").expect("victim");
        let link = dir.join("link.pid");
        symlink(&victim, &link).expect("symlink");
        let err = replace(&link, b"1\n", 0o644).expect_err("symlink");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(read_small(&link, 64).is_err());
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        let fifo = dir.join("fifo.pid");
        // mkfifo(1), not libc: unsafe lives under src/sys only.
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let err = replace(&fifo, b"1\n", 0o644).expect_err("fifo");
        assert!(err.to_string().contains("FIFO"), "{err}");
        // Would block for good without O_NONBLOCK.
        assert!(read_small(&fifo, 64).is_err());
        // A device is refused the same way; not tried on /dev/null here:
        // a test run as root must never risk replacing it.
        assert_eq!(
            fs::read_dir(&dir).expect("dir").count(),
            3,
            "a temporary left"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temporary_names_differ_every_time() {
        let path = Path::new("/run/x.pid");
        let a = temp_beside(path).expect("a");
        let b = temp_beside(path).expect("b");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().starts_with("/run/.x.pid."));
    }
}
