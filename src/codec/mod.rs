//! Binary record codecs.

pub mod structfmt;
