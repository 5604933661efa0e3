//! Error text for people: one line, no "(os error N)" noise.

use std::io;

/// The message of an I/O error without the trailing `(os error N)`.
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_os_error_suffix() {
        let err = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(describe(&err), "Address already in use");
        let custom = io::Error::other("plain words");
        assert_eq!(describe(&custom), "plain words");
    }
}
