//! Packing and unpacking: the values `struct` deals in, their errors, and
//! the byte-level encode/decode of each code.

use std::fmt;

use super::floats::{f16_to_f64, f32_bits_to_f64, f64_to_f16, f64_to_f32_bits};
use super::layout::{Format, Item, Kind};

impl Format {
    /// Unpacks a record of exactly [`Format::size`] bytes, like `struct.unpack`.
    pub fn decode(&self, record: &[u8]) -> Result<Vec<Value>, CodecError> {
        if record.len() != self.size {
            return Err(CodecError::RecordLength {
                expected: self.size,
                actual: record.len(),
            });
        }
        let big = self.mode.big_endian();
        let mut out = Vec::with_capacity(self.values);
        for item in &self.items {
            // In bounds: parse laid every item out inside `size`.
            let field = &record[item.offset..item.offset + item.count * item.size];
            match item.kind {
                Kind::Pad => {}
                Kind::Str => out.push(Value::Bytes(field.to_vec())),
                Kind::Pascal => {
                    // The length byte is trusted only up to the field's capacity.
                    let data = match field.split_first() {
                        Some((&len, rest)) => &rest[..usize::from(len).min(rest.len())],
                        None => &[][..],
                    };
                    out.push(Value::Bytes(data.to_vec()));
                }
                _ => {
                    for chunk in field.chunks_exact(item.size) {
                        out.push(decode_one(item.kind, chunk, big));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Packs values into a record, like `struct.pack`.
    pub fn encode(&self, values: &[Value]) -> Result<Vec<u8>, CodecError> {
        if values.len() != self.values {
            return Err(CodecError::ValueCount {
                expected: self.values,
                actual: values.len(),
            });
        }
        let big = self.mode.big_endian();
        // Zero-filled, as Python pads and aligns with zero bytes.
        let mut out = vec![0u8; self.size];
        let mut index = 0;
        for item in &self.items {
            let field = &mut out[item.offset..item.offset + item.count * item.size];
            match item.kind {
                Kind::Pad => {}
                Kind::Str => {
                    let data = bytes_arg(item.code, &values[index], index)?;
                    let n = data.len().min(field.len());
                    field[..n].copy_from_slice(&data[..n]);
                }
                Kind::Pascal => {
                    let data = bytes_arg(item.code, &values[index], index)?;
                    if let Some((len, rest)) = field.split_first_mut() {
                        // Python copies up to count-1 bytes but the length
                        // byte saturates at 255.
                        let n = data.len().min(rest.len());
                        rest[..n].copy_from_slice(&data[..n]);
                        *len = n.min(255) as u8;
                    }
                }
                _ => {
                    for (i, chunk) in field.chunks_exact_mut(item.size).enumerate() {
                        encode_one(item, &values[index + i], index + i, chunk, big)?;
                    }
                }
            }
            index += item.values();
        }
        Ok(out)
    }
}

/// One packed or unpacked value, mirroring the Python objects `struct` uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `b B h H i I l L q Q n N P`.
    Int(i128),
    /// `?`.
    Bool(bool),
    /// `e f d`.
    Float(f64),
    /// `s p`: one value per run, whatever the count.
    Bytes(Vec<u8>),
    /// `c`: a 1-byte bytes object in Python.
    Char(u8),
}

impl Value {
    /// Python type name, for error messages.
    pub(super) fn type_name(&self) -> String {
        match self {
            Value::Int(_) => "int".into(),
            Value::Bool(_) => "bool".into(),
            Value::Float(_) => "float".into(),
            Value::Bytes(b) => format!("bytes of length {}", b.len()),
            Value::Char(_) => "bytes of length 1".into(),
        }
    }

    /// Python truthiness, which is what `?` packs.
    fn truthy(&self) -> bool {
        match self {
            Value::Int(i) => *i != 0,
            Value::Bool(b) => *b,
            // NaN is truthy in Python, and NaN != 0.0.
            Value::Float(x) => *x != 0.0,
            Value::Bytes(b) => !b.is_empty(),
            Value::Char(_) => true,
        }
    }
}

/// Error from [`Format::decode`], [`Format::encode`] or
/// [`Format::parse_values`]. Indexes are 0-based; messages number values
/// from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The record is not exactly [`Format::size`] bytes.
    RecordLength {
        /// Bytes the format needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// `encode` got the wrong number of values.
    ValueCount {
        /// Values the format needs.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// `parse_values` got the wrong number of words.
    WordCount {
        /// Values the format needs.
        expected: usize,
        /// Words given.
        actual: usize,
    },
    /// An integer outside the range of its code.
    IntRange {
        /// Which value.
        index: usize,
        /// Format code.
        code: char,
        /// Smallest allowed value.
        min: i128,
        /// Largest allowed value.
        max: i128,
        /// The rejected number, as given.
        got: String,
    },
    /// A float that rounds to infinity in the code's precision.
    FloatTooLarge {
        /// Which value.
        index: usize,
        /// Format code (`e` or `f`).
        code: char,
    },
    /// A value of the wrong type for its code.
    WrongType {
        /// Which value.
        index: usize,
        /// Format code.
        code: char,
        /// What the code accepts.
        expected: &'static str,
        /// Python type of what was given.
        got: String,
    },
    /// A command-line word that does not parse for its code.
    BadWord {
        /// Which value.
        index: usize,
        /// Format code.
        code: char,
        /// The word.
        word: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::RecordLength { expected, actual } => {
                write!(
                    f,
                    "unpack requires a buffer of {expected} bytes (got {actual})"
                )
            }
            CodecError::ValueCount { expected, actual } => {
                write!(
                    f,
                    "pack expected {expected} items for packing (got {actual})"
                )
            }
            CodecError::WordCount { expected, actual } => {
                write!(f, "format takes {expected} values (got {actual})")
            }
            CodecError::IntRange {
                index,
                code,
                min,
                max,
                got,
            } => write!(
                f,
                "value {}: '{code}' format requires {min} <= number <= {max} (got {got})",
                index + 1
            ),
            CodecError::FloatTooLarge { index, code } => {
                write!(
                    f,
                    "value {}: float too large to pack with {code} format",
                    index + 1
                )
            }
            CodecError::WrongType {
                index,
                code,
                expected,
                got,
            } => write!(
                f,
                "value {}: '{code}' format requires {expected}, not {got}",
                index + 1
            ),
            CodecError::BadWord {
                index,
                code,
                word,
                reason,
            } => write!(f, "value {} ({word:?}) for '{code}': {reason}", index + 1),
        }
    }
}

impl std::error::Error for CodecError {}

/// Reads an integer of `bytes.len()` (at most 16) bytes.
fn read_uint(bytes: &[u8], big: bool) -> u128 {
    let fold = |acc: u128, &b: &u8| (acc << 8) | u128::from(b);
    if big {
        bytes.iter().fold(0, fold)
    } else {
        bytes.iter().rev().fold(0, fold)
    }
}

/// Writes the low `out.len()` bytes of `v` in two's complement.
fn write_int(out: &mut [u8], v: i128, big: bool) {
    let le = v.to_le_bytes();
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        *b = if big { le[n - 1 - i] } else { le[i] };
    }
}

fn decode_one(kind: Kind, chunk: &[u8], big: bool) -> Value {
    let raw = read_uint(chunk, big);
    match kind {
        Kind::Char => Value::Char(chunk[0]),
        Kind::Bool => Value::Bool(raw != 0),
        Kind::Int { signed: true } => {
            // Sign-extend from the field width.
            let shift = 128 - 8 * chunk.len() as u32;
            Value::Int(((raw << shift) as i128) >> shift)
        }
        Kind::Half => Value::Float(f16_to_f64(raw as u16)),
        Kind::Single => Value::Float(f32_bits_to_f64(raw as u32)),
        Kind::Double => Value::Float(f64::from_bits(raw as u64)),
        // Unsigned fields are at most 8 bytes, so they fit in i128.
        _ => Value::Int(raw as i128),
    }
}

fn bytes_arg(code: char, value: &Value, index: usize) -> Result<&[u8], CodecError> {
    match value {
        Value::Bytes(b) => Ok(b),
        Value::Char(c) => Ok(std::slice::from_ref(c)),
        other => Err(CodecError::WrongType {
            index,
            code,
            expected: "bytes",
            got: other.type_name(),
        }),
    }
}

fn encode_one(
    item: &Item,
    value: &Value,
    index: usize,
    out: &mut [u8],
    big: bool,
) -> Result<(), CodecError> {
    let wrong = |expected| CodecError::WrongType {
        index,
        code: item.code,
        expected,
        got: value.type_name(),
    };
    let too_large = CodecError::FloatTooLarge {
        index,
        code: item.code,
    };
    let float = || match value {
        Value::Float(x) => Ok(*x),
        // Python packs ints (and bools, which are ints) via float().
        Value::Int(i) => Ok(*i as f64),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        _ => Err(wrong("a float")),
    };
    match item.kind {
        Kind::Char => match value {
            Value::Char(c) => out[0] = *c,
            Value::Bytes(b) if b.len() == 1 => out[0] = b[0],
            _ => return Err(wrong("a bytes object of length 1")),
        },
        Kind::Bool => out[0] = u8::from(value.truthy()),
        Kind::Int { .. } | Kind::Pointer => {
            let v = match value {
                Value::Int(i) => *i,
                Value::Bool(b) => i128::from(*b),
                _ => return Err(wrong("an integer")),
            };
            check_int(item, v, index, || v.to_string())?;
            write_int(out, v, big);
        }
        Kind::Half => {
            let bits = f64_to_f16(float()?).ok_or(too_large)?;
            write_int(out, i128::from(bits), big);
        }
        Kind::Single => {
            let bits = f64_to_f32_bits(float()?).ok_or(too_large)?;
            write_int(out, i128::from(bits), big);
        }
        Kind::Double => write_int(out, i128::from(float()?.to_bits()), big),
        Kind::Pad | Kind::Str | Kind::Pascal => {}
    }
    Ok(())
}

pub(super) fn check_int(
    item: &Item,
    v: i128,
    index: usize,
    got: impl FnOnce() -> String,
) -> Result<(), CodecError> {
    let (min, max) = item.int_range();
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(CodecError::IntRange {
            index,
            code: item.code,
            min,
            max,
            got: got(),
        })
    }
}
