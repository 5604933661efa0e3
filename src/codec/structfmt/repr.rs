//! Python's text of unpacked values: the tuple `struct.unpack` returns, and
//! the hex of a record.

use std::fmt;

use super::codec::Value;
use crate::codec::pyrepr;

/// Python's `repr` of the tuple `struct.unpack` returns: `(1, b'ab', 2.5)`,
/// `(5,)`, `()`.
pub fn repr(values: &[Value]) -> String {
    pyrepr::tuple(values.iter().map(Value::to_string))
}

impl fmt::Display for Value {
    /// Python's `repr` of the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Float(x) => f.write_str(&pyrepr::float_repr(*x)),
            Value::Bytes(b) => f.write_str(&pyrepr::bytes_repr(b)),
            Value::Char(c) => f.write_str(&pyrepr::bytes_repr(&[*c])),
        }
    }
}

/// Lowercase hex of `bytes`, no separators: `0100000061620000cdcc2c40`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}
