//! Binary record codecs, and Python's text rules they print with.

pub mod pyrepr;
pub mod structfmt;
