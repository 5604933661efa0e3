//! Python `struct` format strings: parse, encode, decode, repr.
//!
//! The semantics are CPython's `struct` module (checked against Python 3.11)
//! for a Linux LP64 target: the same format text gives the same record size,
//! the same bytes from `pack` and the same tuple from `unpack`, and [`repr`]
//! prints that tuple exactly as Python would. Deliberate differences:
//!
//! * Records are capped at [`MAX_RECORD_SIZE`] bytes so a hostile format
//!   cannot make the daemon allocate gigabytes.
//! * Integer range errors always use the standard-mode wording
//!   (`'I' format requires 0 <= number <= 4294967295`), also in native mode
//!   where CPython says `argument out of range` or `ushort format requires ...`.
//! * `0p` packs nothing and unpacks to `b''` (CPython writes a stray length
//!   byte and fails to unpack it).
//! * Error messages name the offending format character or value.
//!
//! One concern per file: `layout` (grammar, sizes, alignment), `codec`
//! (values, pack, unpack), `floats` (half/single conversions), `literal`
//! (command-line words to values), `repr` (Python's text of a tuple, on top
//! of [`crate::codec::pyrepr`], which `net` shares).

mod codec;
mod floats;
mod layout;
mod literal;
mod repr;
#[cfg(test)]
mod tests;

pub use self::codec::{CodecError, Value};
pub use self::layout::{Format, FormatError, FormatErrorKind, MAX_RECORD_SIZE};
pub use self::repr::{repr, to_hex};
pub use crate::codec::pyrepr::{bytes_repr, float_repr};
