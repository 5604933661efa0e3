//! The terminal's size, for `status --watch` and the bench's progress line.

use std::os::fd::RawFd;

/// Rows of the terminal on stdout, if it is one and says.
pub fn stdout_rows() -> Option<usize> {
    let (rows, _) = size(libc::STDOUT_FILENO)?;
    (rows > 0).then_some(usize::from(rows))
}

/// Columns of the terminal on stderr, if it is one and says.
pub fn stderr_columns() -> Option<u16> {
    let (_, columns) = size(libc::STDERR_FILENO)?;
    (columns > 0).then_some(columns)
}

/// (rows, columns) of the terminal on `fd`, if it is one.
fn size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes at most a winsize into the one we own; a
    // descriptor that is no terminal (or no descriptor) makes it fail.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) };
    (rc == 0).then_some((size.ws_row, size.ws_col))
}
