//! The terminal's size, for `status --watch`.

/// Rows of the terminal on stdout, if it is one and says.
pub fn stdout_rows() -> Option<usize> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: stdout is a valid descriptor; `size` is a valid winsize.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0).then_some(usize::from(size.ws_row))
}
