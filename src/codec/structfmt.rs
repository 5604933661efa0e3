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

use std::fmt;
use std::mem::{align_of, size_of};
use std::os::raw::{c_double, c_float, c_int, c_long, c_longlong, c_short};

/// Largest record, in bytes, that a [`Format`] may describe.
pub const MAX_RECORD_SIZE: usize = 1 << 20;

/// Byte order, size and alignment mode chosen by the format's first character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `@` or no prefix: native order, native sizes, native alignment.
    Native,
    /// `=`: native order, standard sizes, no alignment.
    NativeStandard,
    /// `<`: little-endian, standard sizes, no alignment.
    Little,
    /// `>` and `!`: big-endian, standard sizes, no alignment.
    Big,
}

impl Mode {
    fn from_prefix(c: char) -> Option<Mode> {
        match c {
            '@' => Some(Mode::Native),
            '=' => Some(Mode::NativeStandard),
            '<' => Some(Mode::Little),
            '>' | '!' => Some(Mode::Big),
            _ => None,
        }
    }

    fn big_endian(self) -> bool {
        match self {
            Mode::Native | Mode::NativeStandard => cfg!(target_endian = "big"),
            Mode::Little => false,
            Mode::Big => true,
        }
    }
}

/// How one format code is stored and what value it maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pad,
    Char,
    Int {
        signed: bool,
    },
    /// `P`: unsigned on decode, but like CPython accepts negative addresses.
    Pointer,
    Bool,
    Half,
    Single,
    Double,
    Str,
    Pascal,
}

/// Kind, element size and alignment of `code`, or `None` if the code is not
/// valid in this mode.
fn layout(code: char, native: bool) -> Option<(Kind, usize, usize)> {
    // Native sizes come from the C types CPython itself uses, so `@` matches
    // the platform's C compiler rather than a hard-coded LP64 table.
    fn sized<T>(native: bool, standard: usize) -> (usize, usize) {
        if native {
            (size_of::<T>(), align_of::<T>())
        } else {
            (standard, 1)
        }
    }
    let signed = Kind::Int { signed: true };
    let unsigned = Kind::Int { signed: false };
    let (kind, (size, align)) = match code {
        'x' => (Kind::Pad, (1, 1)),
        'c' => (Kind::Char, (1, 1)),
        'b' => (signed, (1, 1)),
        'B' => (unsigned, (1, 1)),
        '?' => (Kind::Bool, sized::<bool>(native, 1)),
        'h' => (signed, sized::<c_short>(native, 2)),
        'H' => (unsigned, sized::<c_short>(native, 2)),
        'i' => (signed, sized::<c_int>(native, 4)),
        'I' => (unsigned, sized::<c_int>(native, 4)),
        'l' => (signed, sized::<c_long>(native, 4)),
        'L' => (unsigned, sized::<c_long>(native, 4)),
        'q' => (signed, sized::<c_longlong>(native, 8)),
        'Q' => (unsigned, sized::<c_longlong>(native, 8)),
        'n' if native => (signed, sized::<isize>(true, 0)),
        'N' if native => (unsigned, sized::<usize>(true, 0)),
        'P' if native => (Kind::Pointer, sized::<*const u8>(true, 0)),
        // CPython stores half floats in a C short.
        'e' => (Kind::Half, sized::<c_short>(native, 2)),
        'f' => (Kind::Single, sized::<c_float>(native, 4)),
        'd' => (Kind::Double, sized::<c_double>(native, 8)),
        's' => (Kind::Str, (1, 1)),
        'p' => (Kind::Pascal, (1, 1)),
        _ => return None,
    };
    Some((kind, size, align))
}

/// Python's `Py_ISSPACE`: ASCII whitespace including vertical tab.
fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// One run of a code in a parsed format.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    code: char,
    kind: Kind,
    /// Repeat count; for `s`/`p` the string length.
    count: usize,
    /// Size of one element in bytes.
    size: usize,
    /// Byte offset of the first element, after alignment.
    offset: usize,
}

impl Item {
    /// Number of values this item takes or yields.
    fn values(&self) -> usize {
        match self.kind {
            Kind::Pad => 0,
            Kind::Str | Kind::Pascal => 1,
            _ => self.count,
        }
    }

    /// Inclusive value range of an integer item.
    fn int_range(&self) -> (i128, i128) {
        let bits = 8 * self.size as u32;
        match self.kind {
            Kind::Int { signed: true } => (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1),
            Kind::Pointer => (-(1i128 << (bits - 1)), (1i128 << bits) - 1),
            _ => (0, (1i128 << bits) - 1),
        }
    }
}

/// A parsed Python `struct` format string.
///
/// ```
/// use echoplex::codec::structfmt::{Format, Value};
/// let f = Format::parse("I 2s f").unwrap();
/// assert_eq!(f.size(), 12);
/// let rec = f.encode(&[Value::Int(1), Value::Bytes(b"ab".to_vec()), Value::Float(2.7)]).unwrap();
/// assert_eq!(echoplex::codec::structfmt::to_hex(&rec), "0100000061620000cdcc2c40");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    text: String,
    mode: Mode,
    items: Vec<Item>,
    size: usize,
    values: usize,
}

/// What is wrong with a format string; see [`FormatError`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatErrorKind {
    /// A character that is not a format code.
    UnknownCode(char),
    /// A byte-order prefix (`@ = < > !`) that is not the first character.
    MisplacedPrefix(char),
    /// `n`, `N` or `P` outside native (`@`) mode.
    NativeOnly(char),
    /// Digits followed by whitespace or the end of the text.
    CountWithoutCode,
    /// A repeat count above [`MAX_RECORD_SIZE`].
    CountTooLarge,
    /// The record would grow beyond [`MAX_RECORD_SIZE`] bytes.
    RecordTooLarge,
}

/// Error from [`Format::parse`], pointing at the offending character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    text: String,
    position: usize,
    kind: FormatErrorKind,
}

impl FormatError {
    /// 0-based position, in characters, of the offending character (for
    /// count errors, of the count's first digit).
    pub fn position(&self) -> usize {
        self.position
    }

    /// What went wrong.
    pub fn kind(&self) -> &FormatErrorKind {
        &self.kind
    }

    /// The format text that failed to parse.
    pub fn format_text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.position;
        write!(f, "bad format '{}': ", self.text.escape_debug())?;
        match self.kind {
            FormatErrorKind::UnknownCode(c) => {
                write!(f, "unknown code '{}' at position {p}", c.escape_debug())
            }
            FormatErrorKind::MisplacedPrefix(c) => write!(
                f,
                "byte-order prefix '{c}' at position {p} must be the first character"
            ),
            FormatErrorKind::NativeOnly(c) => write!(
                f,
                "code '{c}' at position {p} is only allowed in native mode ('@' or no prefix)"
            ),
            FormatErrorKind::CountWithoutCode => {
                write!(
                    f,
                    "repeat count at position {p} is not directly followed by a code"
                )
            }
            FormatErrorKind::CountTooLarge => write!(
                f,
                "repeat count at position {p} exceeds the limit of {MAX_RECORD_SIZE}"
            ),
            FormatErrorKind::RecordTooLarge => write!(
                f,
                "item at position {p} makes the record larger than {MAX_RECORD_SIZE} bytes"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

impl Format {
    /// Parses a Python `struct` format string such as `"I 2s f"` or `"<3hq"`.
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        let err = |position, kind| FormatError {
            text: text.to_owned(),
            position,
            kind,
        };
        let mut chars = text.chars().enumerate().peekable();
        let mut mode = Mode::Native;
        if let Some(m) = chars.peek().and_then(|&(_, c)| Mode::from_prefix(c)) {
            mode = m;
            chars.next();
        }
        let native = mode == Mode::Native;
        let mut items = Vec::new();
        let mut size = 0usize;
        let mut values = 0usize;
        while let Some((start, c)) = chars.next() {
            if is_py_space(c) {
                continue;
            }
            let (count, code_pos, code) = match c.to_digit(10) {
                Some(first) => {
                    // Saturate rather than overflow: anything past the cap is rejected anyway.
                    let mut count = first as usize;
                    while let Some(d) = chars.peek().and_then(|&(_, c)| c.to_digit(10)) {
                        count = count.saturating_mul(10).saturating_add(d as usize);
                        chars.next();
                    }
                    if count > MAX_RECORD_SIZE {
                        return Err(err(start, FormatErrorKind::CountTooLarge));
                    }
                    // Python takes the very next character as the code, so
                    // "3 h" is an error, not three shorts.
                    match chars.next() {
                        Some((pos, code)) if !is_py_space(code) => (count, pos, code),
                        _ => return Err(err(start, FormatErrorKind::CountWithoutCode)),
                    }
                }
                None => (1, start, c),
            };
            let Some((kind, elem, align)) = layout(code, native) else {
                let kind = if Mode::from_prefix(code).is_some() {
                    FormatErrorKind::MisplacedPrefix(code)
                } else if matches!(code, 'n' | 'N' | 'P') {
                    FormatErrorKind::NativeOnly(code)
                } else {
                    FormatErrorKind::UnknownCode(code)
                };
                return Err(err(code_pos, kind));
            };
            // Python aligns even for a zero count: "b0i" is 4 bytes.
            let offset = if native {
                size.next_multiple_of(align)
            } else {
                size
            };
            let end = count.checked_mul(elem).and_then(|n| n.checked_add(offset));
            match end {
                Some(end) if end <= MAX_RECORD_SIZE => size = end,
                _ => return Err(err(start, FormatErrorKind::RecordTooLarge)),
            }
            let item = Item {
                code,
                kind,
                count,
                size: elem,
                offset,
            };
            values += item.values();
            // Padding and empty runs add nothing to encode or decode.
            if kind != Kind::Pad && (count > 0 || item.values() > 0) {
                items.push(item);
            }
        }
        Ok(Format {
            text: text.to_owned(),
            mode,
            items,
            size,
            values,
        })
    }

    /// Record size in bytes, like Python's `struct.calcsize`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of values [`Format::encode`] takes and [`Format::decode`] yields.
    pub fn value_count(&self) -> usize {
        self.values
    }

    /// The format text as given to [`Format::parse`].
    pub fn as_str(&self) -> &str {
        &self.text
    }

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

    /// Turns command-line words into values for this format, one word per
    /// value in order.
    ///
    /// * integers: decimal, or `0x`/`0o`/`0b` prefixed, optional sign,
    ///   `_` between digits as in Python;
    /// * `e f d`: Python `float()` syntax, including `inf`, `-inf`, `nan`;
    /// * `?`: `true`/`false` (any case), `1`/`0`;
    /// * `s p c`: the word's UTF-8 bytes with Python bytes-literal escapes
    ///   (`\\ \' \" \a \b \f \n \r \t \v \xHH \ooo`); an unknown escape keeps
    ///   its backslash, as in Python. `c` needs exactly one byte.
    ///
    /// Integers and floats are range-checked here so the error names the word.
    pub fn parse_values(&self, words: &[String]) -> Result<Vec<Value>, CodecError> {
        if words.len() != self.values {
            return Err(CodecError::WordCount {
                expected: self.values,
                actual: words.len(),
            });
        }
        let mut words = words.iter().enumerate();
        let mut out = Vec::with_capacity(self.values);
        for item in &self.items {
            for _ in 0..item.values() {
                let Some((index, word)) = words.next() else {
                    break;
                };
                out.push(parse_word(item, word, index)?);
            }
        }
        Ok(out)
    }
}

impl std::str::FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Format, FormatError> {
        Format::parse(s)
    }
}

impl fmt::Display for Format {
    /// Shows the original format text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
    fn type_name(&self) -> String {
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

impl fmt::Display for Value {
    /// Python's `repr` of the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Float(x) => f.write_str(&float_repr(*x)),
            Value::Bytes(b) => f.write_str(&bytes_repr(b)),
            Value::Char(c) => f.write_str(&bytes_repr(&[*c])),
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

fn check_int(
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

/// `f32` NaN → `f64`, done by hand so the payload handling is the same on
/// every target (quiet bit set, payload shifted up, as x86 and ARM do).
fn f32_bits_to_f64(bits: u32) -> f64 {
    let y = f32::from_bits(bits);
    if y.is_nan() {
        let sign = u64::from(bits >> 31) << 63;
        let payload = u64::from(bits & 0x007f_ffff) << 29;
        f64::from_bits(sign | 0x7ff8_0000_0000_0000 | payload)
    } else {
        f64::from(y)
    }
}

/// `f64` → `f32` bits rounding to nearest-even, `None` if a finite value
/// overflows (Python: "float too large to pack with f format").
fn f64_to_f32_bits(x: f64) -> Option<u32> {
    if x.is_nan() {
        let bits = x.to_bits();
        let sign = ((bits >> 63) as u32) << 31;
        return Some(sign | 0x7fc0_0000 | ((bits >> 29) as u32 & 0x003f_ffff));
    }
    let y = x as f32;
    if y.is_infinite() && x.is_finite() {
        None
    } else {
        Some(y.to_bits())
    }
}

/// `f64` → IEEE half bits rounding to nearest-even, `None` if a finite value
/// overflows. NaN becomes the quiet NaN `0x7e00` with its sign, as in CPython.
fn f64_to_f16(x: f64) -> Option<u16> {
    let bits = x.to_bits();
    let sign = ((bits >> 63) as u16) << 15;
    if x.is_nan() {
        return Some(sign | 0x7e00);
    }
    if x.is_infinite() {
        return Some(sign | 0x7c00);
    }
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Zero or an f64 subnormal, far below half of the smallest half subnormal.
        return Some(sign);
    }
    let e = biased - 1023;
    if e >= 16 {
        return None;
    }
    // |x| = man * 2^(e-52) with the implicit bit set.
    let man = (bits & ((1 << 52) - 1)) | (1 << 52);
    // Normal halves keep 11 significant bits; subnormals count in units of 2^-24.
    let shift: u32 = if e >= -14 { 42 } else { (28 - e) as u32 };
    if shift >= 64 {
        return Some(sign);
    }
    let mut r = man >> shift;
    let rem = man & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && r & 1 == 1) {
        r += 1;
    }
    // r includes the implicit bit (1024) for normals, so a carry out of the
    // fraction bumps the exponent by itself.
    let magnitude = if e >= -14 {
        (((e + 14) as u64) << 10) + r
    } else {
        r
    };
    if magnitude >= 0x7c00 {
        None
    } else {
        Some(sign | magnitude as u16)
    }
}

/// IEEE half bits → `f64` (exact). NaN keeps only its sign, as in CPython.
fn f16_to_f64(h: u16) -> f64 {
    let negative = h & 0x8000 != 0;
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    let magnitude = match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1024.0 + frac) * 2f64.powi(exp - 25),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

fn parse_word(item: &Item, word: &str, index: usize) -> Result<Value, CodecError> {
    let bad = |reason: &str| CodecError::BadWord {
        index,
        code: item.code,
        word: word.to_owned(),
        reason: reason.to_owned(),
    };
    let too_large = CodecError::FloatTooLarge {
        index,
        code: item.code,
    };
    match item.kind {
        Kind::Str | Kind::Pascal => Ok(Value::Bytes(unescape(word).map_err(bad)?)),
        Kind::Char => match unescape(word).map_err(bad)?.as_slice() {
            [c] => Ok(Value::Char(*c)),
            _ => Err(bad("needs exactly one byte")),
        },
        Kind::Bool => match word.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad("expected true, false, 1 or 0")),
        },
        Kind::Int { .. } | Kind::Pointer => {
            // A syntactically valid but huge number is a range error, not a
            // syntax error, so it gets Python's range message.
            let v = match parse_int(word) {
                Ok(v) => v,
                Err(IntWordError::Invalid) => return Err(bad("not an integer")),
                Err(IntWordError::Overflow(negative)) => {
                    if negative {
                        i128::MIN
                    } else {
                        i128::MAX
                    }
                }
            };
            check_int(item, v, index, || word.trim().to_owned())?;
            Ok(Value::Int(v))
        }
        Kind::Half | Kind::Single | Kind::Double => {
            let x = parse_float(word).ok_or_else(|| bad("not a float"))?;
            let fits = match item.kind {
                Kind::Half => f64_to_f16(x).is_some(),
                Kind::Single => f64_to_f32_bits(x).is_some(),
                _ => true,
            };
            if fits {
                Ok(Value::Float(x))
            } else {
                Err(too_large)
            }
        }
        Kind::Pad => Err(bad("padding takes no value")),
    }
}

enum IntWordError {
    Invalid,
    /// Does not fit in i128; carries the sign.
    Overflow(bool),
}

/// Removes `_` separators, which Python allows only between two digits
/// (of the given radix). `None` if one is misplaced.
fn strip_underscores(s: &str, radix: u32) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let digit = |j: Option<usize>| {
                j.and_then(|j| b.get(j))
                    .is_some_and(|&d| char::from(d).is_digit(radix))
            };
            if !digit(i.checked_sub(1)) || !digit(Some(i + 1)) {
                return None;
            }
        } else {
            out.push(char::from(c));
        }
    }
    Some(out)
}

/// Python `int(word, 0)`-like parsing, but leading zeros are plain decimal.
fn parse_int(word: &str) -> Result<i128, IntWordError> {
    let s = word.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = s.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &s[2..]),
        Some("0o") => (8, &s[2..]),
        Some("0b") => (2, &s[2..]),
        _ => (10, s),
    };
    // Python allows one underscore right after the base prefix ("0x_ff").
    let digits = match digits.strip_prefix('_') {
        Some(rest) if radix != 10 => rest,
        _ => digits,
    };
    let digits = strip_underscores(digits, radix).ok_or(IntWordError::Invalid)?;
    // from_str_radix would accept a sign here; we handled it already.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(IntWordError::Invalid);
    }
    let magnitude =
        u128::from_str_radix(&digits, radix).map_err(|_| IntWordError::Overflow(negative))?;
    let v = if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    };
    v.ok_or(IntWordError::Overflow(negative))
}

/// Python `float(word)`: decimal with optional exponent, `inf`, `infinity`,
/// `nan` in any case, optional sign, `_` between digits.
fn parse_float(word: &str) -> Option<f64> {
    let s = word.trim();
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let special = body.to_ascii_lowercase();
    if matches!(special.as_str(), "inf" | "infinity" | "nan") {
        return s.parse().ok();
    }
    // Rust's parser would also take "infinity"-like words; only digits here.
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
    {
        return None;
    }
    strip_underscores(s, 10)?.parse().ok()
}

/// Decodes Python bytes-literal escapes; non-escaped text is kept as UTF-8.
fn unescape(word: &str) -> Result<Vec<u8>, &'static str> {
    let b = word.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c != b'\\' || i == b.len() {
            out.push(c);
            continue;
        }
        let e = b[i];
        i += 1;
        let simple = match e {
            b'\\' => Some(b'\\'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
        } else if e == b'x' {
            let hex = b.get(i..i + 2).ok_or("truncated \\xHH escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "invalid \\xHH escape")?;
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("invalid \\xHH escape");
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid \\xHH escape")?);
            i += 2;
        } else if (b'0'..=b'7').contains(&e) {
            let mut v = u32::from(e - b'0');
            for _ in 0..2 {
                match b.get(i) {
                    Some(&d @ b'0'..=b'7') => {
                        v = v * 8 + u32::from(d - b'0');
                        i += 1;
                    }
                    _ => break,
                }
            }
            out.push(u8::try_from(v).map_err(|_| "octal escape above \\377")?);
        } else {
            // Python keeps unknown escapes verbatim.
            out.push(b'\\');
            out.push(e);
        }
    }
    Ok(out)
}

/// Python's `repr` of the tuple `struct.unpack` returns: `(1, b'ab', 2.5)`,
/// `(5,)`, `()`.
pub fn repr(values: &[Value]) -> String {
    let mut s = String::from("(");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&v.to_string());
    }
    if values.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// Python's `repr` of a float: shortest round-trip digits, scientific
/// notation when the decimal exponent is below -4 or at least 16.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits, laid out as "-1.2345e-5"
    // or "0e0". When two digit strings of that length both round-trip and
    // the value lies exactly halfway, Rust picks the upper one but Python's
    // dtoa picks the even one; exact-precision formatting rounds half-even,
    // so prefer it whenever it still round-trips.
    let shortest = format!("{x:e}");
    let digits = shortest
        .split('e')
        .next()
        .map_or(0, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let nearest = format!("{x:.*e}", digits.saturating_sub(1));
    let sci = if nearest.parse::<f64>() == Ok(x) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let Ok(exp) = exp.parse::<i32>() else {
        return format!("{x:?}");
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    // Python's decpt: the value is 0.<digits> * 10^decpt.
    let decpt = exp + 1;
    let body = if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{first}{dot}{rest}e{esign}{:02}", exp.unsigned_abs())
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat(decpt.unsigned_abs() as usize))
    } else {
        let point = decpt as usize;
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// Python's `repr` of a bytes object: `b'ab\x00'`, or `b"it's"`.
pub fn bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut s = String::with_capacity(bytes.len() + 3);
    s.push('b');
    s.push(char::from(quote));
    for &c in bytes {
        match c {
            b'\\' => s.push_str("\\\\"),
            _ if c == quote => {
                s.push('\\');
                s.push(char::from(c));
            }
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(char::from(c)),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(char::from(quote));
    s
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

#[cfg(test)]
mod tests {
    //! Expected bytes and reprs were computed with CPython 3.11's `struct`.

    use super::*;
    use proptest::prelude::*;

    type Row = (&'static str, Vec<Value>, &'static str, &'static str);

    fn i(v: i128) -> Value {
        Value::Int(v)
    }
    fn t(v: bool) -> Value {
        Value::Bool(v)
    }
    fn f(v: f64) -> Value {
        Value::Float(v)
    }
    fn s(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len() / 2)
            .map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).unwrap())
            .collect()
    }
    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }
    fn format_err(text: &str) -> String {
        Format::parse(text).unwrap_err().to_string()
    }
    fn encode_err(text: &str, values: &[Value]) -> String {
        Format::parse(text)
            .unwrap()
            .encode(values)
            .unwrap_err()
            .to_string()
    }
    fn words_err(text: &str, ws: &[&str]) -> String {
        Format::parse(text)
            .unwrap()
            .parse_values(&words(ws))
            .unwrap_err()
            .to_string()
    }
    /// Value equality with floats compared bit for bit, so NaN equals itself.
    fn same(a: &[Value], b: &[Value]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Value::Float(p), Value::Float(q)) => p.to_bits() == q.to_bits(),
                _ => x == y,
            })
    }

    fn check_rows(rows: Vec<Row>) {
        for (text, values, hex, py_repr) in rows {
            let fmt = Format::parse(text).unwrap();
            assert_eq!(fmt.size(), hex.len() / 2, "size of {text:?}");
            assert_eq!(fmt.value_count(), values.len(), "value count of {text:?}");
            let packed = fmt.encode(&values).unwrap();
            assert_eq!(to_hex(&packed), hex, "pack {text:?}");
            let unpacked = fmt.decode(&packed).unwrap();
            assert_eq!(repr(&unpacked), py_repr, "unpack {text:?}");
            assert_eq!(
                to_hex(&fmt.encode(&unpacked).unwrap()),
                hex,
                "repack {text:?}"
            );
        }
    }

    #[test]
    fn standard_modes_match_python() {
        let rows: Vec<Row> = vec![
        ("<xcbB?hHiIlLqQefd3s3p", vec![s(b"\x7a"), i(-128), i(255), t(true), i(-32768), i(65535), i(-2147483648), i(4294967295), i(-2147483648), i(4294967295), i(-9223372036854775808), i(18446744073709551615), f(1.5), f(2.7), f(std::f64::consts::PI), s(b"\x61\x62\x63"), s(b"\x68\x69")], "007a80ff010080ffff00000080ffffffff00000080ffffffff0000000000000080ffffffffffffffff003ecdcc2c40182d4454fb210940616263026869", "(b'z', -128, 255, True, -32768, 65535, -2147483648, 4294967295, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, 2.700000047683716, 3.141592653589793, b'abc', b'hi')"),
        ("<bBhHiIlLqQ", vec![i(127), i(0), i(32767), i(0), i(2147483647), i(0), i(2147483647), i(0), i(9223372036854775807), i(0)], "7f00ff7f0000ffffff7f00000000ffffff7f00000000ffffffffffffff7f0000000000000000", "(127, 0, 32767, 0, 2147483647, 0, 2147483647, 0, 9223372036854775807, 0)"),
        ("<I 2s f", vec![i(1), s(b"\x61\x62"), f(2.7)], "010000006162cdcc2c40", "(1, b'ab', 2.700000047683716)"),
        ("<2xh3x?", vec![i(-2), t(false)], "0000feff00000000", "(-2, False)"),
        ("<3h0q2c", vec![i(1), i(-1), i(300), s(b"\x61"), s(b"\x00")], "0100ffff2c016100", "(1, -1, 300, b'a', b'\\x00')"),
        ("<e", vec![f(1.0)], "003c", "(1.0,)"),
        (">xcbB?hHiIlLqQefd3s3p", vec![s(b"\x7a"), i(-128), i(255), t(true), i(-32768), i(65535), i(-2147483648), i(4294967295), i(-2147483648), i(4294967295), i(-9223372036854775808), i(18446744073709551615), f(1.5), f(2.7), f(std::f64::consts::PI), s(b"\x61\x62\x63"), s(b"\x68\x69")], "007a80ff018000ffff80000000ffffffff80000000ffffffff8000000000000000ffffffffffffffff3e00402ccccd400921fb54442d18616263026869", "(b'z', -128, 255, True, -32768, 65535, -2147483648, 4294967295, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, 2.700000047683716, 3.141592653589793, b'abc', b'hi')"),
        (">bBhHiIlLqQ", vec![i(127), i(0), i(32767), i(0), i(2147483647), i(0), i(2147483647), i(0), i(9223372036854775807), i(0)], "7f007fff00007fffffff000000007fffffff000000007fffffffffffffff0000000000000000", "(127, 0, 32767, 0, 2147483647, 0, 2147483647, 0, 9223372036854775807, 0)"),
        (">I 2s f", vec![i(1), s(b"\x61\x62"), f(2.7)], "000000016162402ccccd", "(1, b'ab', 2.700000047683716)"),
        (">2xh3x?", vec![i(-2), t(false)], "0000fffe00000000", "(-2, False)"),
        (">3h0q2c", vec![i(1), i(-1), i(300), s(b"\x61"), s(b"\x00")], "0001ffff012c6100", "(1, -1, 300, b'a', b'\\x00')"),
        (">e", vec![f(1.0)], "3c00", "(1.0,)"),
        ("=xcbB?hHiIlLqQefd3s3p", vec![s(b"\x7a"), i(-128), i(255), t(true), i(-32768), i(65535), i(-2147483648), i(4294967295), i(-2147483648), i(4294967295), i(-9223372036854775808), i(18446744073709551615), f(1.5), f(2.7), f(std::f64::consts::PI), s(b"\x61\x62\x63"), s(b"\x68\x69")], "007a80ff010080ffff00000080ffffffff00000080ffffffff0000000000000080ffffffffffffffff003ecdcc2c40182d4454fb210940616263026869", "(b'z', -128, 255, True, -32768, 65535, -2147483648, 4294967295, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, 2.700000047683716, 3.141592653589793, b'abc', b'hi')"),
        ("=bBhHiIlLqQ", vec![i(127), i(0), i(32767), i(0), i(2147483647), i(0), i(2147483647), i(0), i(9223372036854775807), i(0)], "7f00ff7f0000ffffff7f00000000ffffff7f00000000ffffffffffffff7f0000000000000000", "(127, 0, 32767, 0, 2147483647, 0, 2147483647, 0, 9223372036854775807, 0)"),
        ("=I 2s f", vec![i(1), s(b"\x61\x62"), f(2.7)], "010000006162cdcc2c40", "(1, b'ab', 2.700000047683716)"),
        ("=2xh3x?", vec![i(-2), t(false)], "0000feff00000000", "(-2, False)"),
        ("=3h0q2c", vec![i(1), i(-1), i(300), s(b"\x61"), s(b"\x00")], "0100ffff2c016100", "(1, -1, 300, b'a', b'\\x00')"),
        ("=e", vec![f(1.0)], "003c", "(1.0,)"),
        ("!xcbB?hHiIlLqQefd3s3p", vec![s(b"\x7a"), i(-128), i(255), t(true), i(-32768), i(65535), i(-2147483648), i(4294967295), i(-2147483648), i(4294967295), i(-9223372036854775808), i(18446744073709551615), f(1.5), f(2.7), f(std::f64::consts::PI), s(b"\x61\x62\x63"), s(b"\x68\x69")], "007a80ff018000ffff80000000ffffffff80000000ffffffff8000000000000000ffffffffffffffff3e00402ccccd400921fb54442d18616263026869", "(b'z', -128, 255, True, -32768, 65535, -2147483648, 4294967295, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, 2.700000047683716, 3.141592653589793, b'abc', b'hi')"),
        ("!bBhHiIlLqQ", vec![i(127), i(0), i(32767), i(0), i(2147483647), i(0), i(2147483647), i(0), i(9223372036854775807), i(0)], "7f007fff00007fffffff000000007fffffff000000007fffffffffffffff0000000000000000", "(127, 0, 32767, 0, 2147483647, 0, 2147483647, 0, 9223372036854775807, 0)"),
        ("!I 2s f", vec![i(1), s(b"\x61\x62"), f(2.7)], "000000016162402ccccd", "(1, b'ab', 2.700000047683716)"),
        ("!2xh3x?", vec![i(-2), t(false)], "0000fffe00000000", "(-2, False)"),
        ("!3h0q2c", vec![i(1), i(-1), i(300), s(b"\x61"), s(b"\x00")], "0001ffff012c6100", "(1, -1, 300, b'a', b'\\x00')"),
        ("!e", vec![f(1.0)], "3c00", "(1.0,)"),
        ("<e", vec![f(65504.0)], "ff7b", "(65504.0,)"),
        ("<e", vec![f(-65504.0)], "fffb", "(-65504.0,)"),
        ("<e", vec![f(65519.99)], "ff7b", "(65504.0,)"),
        ("<e", vec![f(6.1e-05)], "ff03", "(6.097555160522461e-05,)"),
        ("<e", vec![f(6.103515625e-05)], "0004", "(6.103515625e-05,)"),
        ("<e", vec![f(5.960464477539063e-08)], "0100", "(5.960464477539063e-08,)"),
        ("<e", vec![f(2.9802322387695312e-08)], "0000", "(0.0,)"),
        ("<e", vec![f(4.470348358154297e-08)], "0100", "(5.960464477539063e-08,)"),
        ("<e", vec![f(8.940696716308594e-08)], "0200", "(1.1920928955078125e-07,)"),
        ("<e", vec![f(1.4901161193847656e-07)], "0200", "(1.1920928955078125e-07,)"),
        ("<e", vec![f(6.097555160522461e-05)], "ff03", "(6.097555160522461e-05,)"),
        ("<e", vec![f(6.1005353927612305e-05)], "0004", "(6.103515625e-05,)"),
        ("<e", vec![f(f64::INFINITY)], "007c", "(inf,)"),
        ("<e", vec![f(f64::NEG_INFINITY)], "00fc", "(-inf,)"),
        ("<e", vec![f(-0.0)], "0080", "(-0.0,)"),
        ("<e", vec![f(0.1)], "662e", "(0.0999755859375,)"),
        ("<e", vec![f(1.0009765625)], "013c", "(1.0009765625,)"),
        ("<e", vec![f(1.00048828125)], "003c", "(1.0,)"),
        ("<e", vec![f(1.00146484375)], "023c", "(1.001953125,)"),
        ("<e", vec![f(2049.0)], "0068", "(2048.0,)"),
        ("<e", vec![f(2051.0)], "0268", "(2052.0,)"),
        ("<e", vec![f(1e-300)], "0000", "(0.0,)"),
        ("<e", vec![f(5e-324)], "0000", "(0.0,)"),
        (">e", vec![f(-2.0)], "c000", "(-2.0,)"),
        ("<f", vec![f(1.0)], "0000803f", "(1.0,)"),
        ("<f", vec![f(3.4028234663852886e+38)], "ffff7f7f", "(3.4028234663852886e+38,)"),
        ("<f", vec![f(1e-45)], "01000000", "(1.401298464324817e-45,)"),
        ("<f", vec![f(0.1)], "cdcccc3d", "(0.10000000149011612,)"),
        ("<f", vec![f(-0.0)], "00000080", "(-0.0,)"),
        ("<f", vec![f(f64::INFINITY)], "0000807f", "(inf,)"),
        (">f", vec![f(16777217.0)], "4b800000", "(16777216.0,)"),
        ("<d", vec![f(5e-324)], "0100000000000000", "(5e-324,)"),
        (">d", vec![f(-1.7976931348623157e+308)], "ffefffffffffffff", "(-1.7976931348623157e+308,)"),
        ("<d", vec![f(f64::NEG_INFINITY)], "000000000000f0ff", "(-inf,)"),
        ("<5p", vec![s(b"\x61\x62\x63")], "0361626300", "(b'abc',)"),
        ("<3p", vec![s(b"\x61\x62\x63\x64\x65\x66")], "026162", "(b'ab',)"),
        ("<1p", vec![s(b"\x61\x62\x63")], "00", "(b'',)"),
        ("<2p", vec![s(b"")], "0000", "(b'',)"),
        ("<5s", vec![s(b"\x61\x62")], "6162000000", "(b'ab\\x00\\x00\\x00',)"),
        ("<2s", vec![s(b"\x61\x62\x63\x64")], "6162", "(b'ab',)"),
        ("<0s", vec![s(b"")], "", "(b'',)"),
        ("<s", vec![s(b"\xff")], "ff", "(b'\\xff',)"),
        ("<0s3s", vec![s(b"\x78"), s(b"\x79\x7a")], "797a00", "(b'', b'yz\\x00')"),
        ("<?", vec![i(5)], "01", "(True,)"),
        ("<?", vec![s(b"")], "00", "(False,)"),
        ("<?", vec![f(0.0)], "00", "(False,)"),
        ("<i", vec![t(true)], "01000000", "(1,)"),
        ("<f", vec![i(5)], "0000a040", "(5.0,)"),
        ("<d", vec![i(-3)], "00000000000008c0", "(-3.0,)"),
        ("<c", vec![s(b"\x0a")], "0a", "(b'\\n',)"),
        ("<", vec![], "", "()"),
        ("", vec![], "", "()"),
        ("<  I\t2s\nf ", vec![i(7), s(b"\x71"), f(0.5)], "0700000071000000003f", "(7, b'q\\x00', 0.5)"),
        ];
        check_rows(rows);
    }

    #[cfg(all(
        target_os = "linux",
        target_pointer_width = "64",
        target_endian = "little"
    ))]
    #[test]
    fn native_mode_matches_python_on_lp64() {
        let rows: Vec<Row> = vec![
        ("I 2s f", vec![i(1), s(b"\x61\x62"), f(2.7)], "0100000061620000cdcc2c40", "(1, b'ab', 2.700000047683716)"),
        ("@I 2s f", vec![i(1), s(b"\x61\x62"), f(2.7)], "0100000061620000cdcc2c40", "(1, b'ab', 2.700000047683716)"),
        ("@bi", vec![i(1), i(2)], "0100000002000000", "(1, 2)"),
        ("@ib", vec![i(1), i(2)], "0100000002", "(1, 2)"),
        ("@hq", vec![i(-1), i(-2)], "ffff000000000000feffffffffffffff", "(-1, -2)"),
        ("@ci?d", vec![s(b"\x63"), i(3), t(true), f(2.5)], "630000000300000001000000000000000000000000000440", "(b'c', 3, True, 2.5)"),
        ("@b0i", vec![i(1)], "01000000", "(1,)"),
        ("@bnNP", vec![i(-1), i(-9223372036854775808), i(18446744073709551615), i(3735928559)], "ff000000000000000000000000000080ffffffffffffffffefbeadde00000000", "(-1, -9223372036854775808, 18446744073709551615, 3735928559)"),
        ("@bl", vec![i(1), i(-1)], "0100000000000000ffffffffffffffff", "(1, -1)"),
        ("@?e", vec![t(true), f(1.0)], "0100003c", "(True, 1.0)"),
        ("@3sd", vec![s(b"\x61\x62"), f(1.0)], "6162000000000000000000000000f03f", "(b'ab\\x00', 1.0)"),
        ("@bhbibqbebfbd", vec![i(1), i(2), i(3), i(4), i(5), i(6), i(7), f(1.0), i(8), f(2.0), i(9), f(3.0)], "0100020003000000040000000500000006000000000000000700003c0800000000000040090000000000000000000840", "(1, 2, 3, 4, 5, 6, 7, 1.0, 8, 2.0, 9, 3.0)"),
        ("@xi", vec![i(1)], "0000000001000000", "(1,)"),
        ("@ix", vec![i(1)], "0100000000", "(1,)"),
        ("@bP", vec![i(1), i(18446744073709551615)], "0100000000000000ffffffffffffffff", "(1, 18446744073709551615)"),
        ("@cl3p", vec![s(b"\x61"), i(9223372036854775807), s(b"\x61\x62\x63\x64")], "6100000000000000ffffffffffffff7f026162", "(b'a', 9223372036854775807, b'ab')"),
        ];
        check_rows(rows);
    }

    #[test]
    fn decode_normalises_like_python() {
        // (format, record, Python's unpack repr, Python's repack of that tuple)
        let rows = [
            ("<e", "0100", "(5.960464477539063e-08,)", "0100"),
            ("<e", "ff03", "(6.097555160522461e-05,)", "ff03"),
            ("<e", "0004", "(6.103515625e-05,)", "0004"),
            ("<e", "007c", "(inf,)", "007c"),
            ("<e", "00fc", "(-inf,)", "00fc"),
            ("<e", "017c", "(nan,)", "007e"),
            ("<e", "ffff", "(nan,)", "00fe"),
            ("<e", "0080", "(-0.0,)", "0080"),
            ("<?", "05", "(True,)", "01"),
            ("<?", "ff", "(True,)", "01"),
            ("<4p", "09616263", "(b'abc',)", "03616263"),
            ("<4p", "00616263", "(b'',)", "00000000"),
            ("<f", "0100807f", "(nan,)", "0100c07f"),
            ("<f", "ffffffff", "(nan,)", "ffffffff"),
            ("<3?", "000180", "(False, True, True)", "000101"),
            ("<2xb", "ffff80", "(-128,)", "000080"),
            (
                ">Q",
                "ffffffffffffffff",
                "(18446744073709551615,)",
                "ffffffffffffffff",
            ),
            (
                ">q",
                "8000000000000000",
                "(-9223372036854775808,)",
                "8000000000000000",
            ),
            ("<1p", "07", "(b'',)", "00"),
        ];
        for (text, hex, py_repr, repacked) in rows {
            let fmt = Format::parse(text).unwrap();
            let values = fmt.decode(&unhex(hex)).unwrap();
            assert_eq!(repr(&values), py_repr, "{text} {hex}");
            assert_eq!(
                to_hex(&fmt.encode(&values).unwrap()),
                repacked,
                "{text} {hex}"
            );
        }
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn calcsize_matches_python() {
        let sizes = [
            ("", 0),
            ("<", 0),
            ("x", 1),
            ("c", 1),
            ("b", 1),
            ("?", 1),
            ("h", 2),
            ("i", 4),
            ("l", 8),
            ("q", 8),
            ("n", 8),
            ("N", 8),
            ("P", 8),
            ("e", 2),
            ("f", 4),
            ("d", 8),
            ("s", 1),
            ("p", 1),
            ("10s", 10),
            ("10p", 10),
            ("0s", 0),
            ("3x", 3),
            ("<l", 4),
            (">L", 4),
            ("=l", 4),
            ("!q", 8),
            ("@l", 8),
            ("I 2s f", 12),
            ("@I 2s f", 12),
            ("@ib", 5),
            ("@bi", 8),
            ("@hq", 16),
            ("@ci?d", 24),
            ("@b0i", 4),
            ("@b0l", 8),
            ("=b0l", 1),
            ("<bi", 5),
            ("@bq3x", 19),
            ("@q3xd", 24),
            ("@ei", 8),
            ("@3s0q", 8),
            ("@?d", 16),
            ("@lbhe", 14),
            ("@100x5l", 144),
            ("<100x5l", 120),
            (" I ", 4),
            ("@ P", 8),
        ];
        for (text, size) in sizes {
            assert_eq!(Format::parse(text).unwrap().size(), size, "{text:?}");
        }
    }

    #[test]
    fn default_format_example() {
        let fmt: Format = "I 2s f".parse().unwrap();
        assert_eq!(fmt.as_str(), "I 2s f");
        assert_eq!(fmt.to_string(), "I 2s f");
        let values = fmt.parse_values(&words(&["1", "ab", "2.7"])).unwrap();
        let record = fmt.encode(&values).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(to_hex(&record), "0100000061620000cdcc2c40");
        }
        assert_eq!(
            repr(&fmt.decode(&record).unwrap()),
            "(1, b'ab', 2.700000047683716)"
        );
    }

    #[test]
    fn long_pascal_string_caps_length_byte_at_255() {
        // Python copies count-1 bytes but the length byte saturates.
        let fmt = Format::parse("<300p").unwrap();
        let packed = fmt.encode(&[s(&[b'a'; 300])]).unwrap();
        assert_eq!(to_hex(&packed), format!("ff{}", "61".repeat(299)));
        assert_eq!(fmt.decode(&packed).unwrap(), vec![s(&[b'a'; 255])]);
    }

    #[test]
    fn zero_length_pascal_string_is_empty() {
        // CPython fails here ("Negative size"); we pack nothing and unpack b''.
        let fmt = Format::parse("<0pB").unwrap();
        assert_eq!(fmt.size(), 1);
        assert_eq!(fmt.encode(&[s(b"abc"), i(7)]).unwrap(), vec![7]);
        assert_eq!(fmt.decode(&[7]).unwrap(), vec![s(b""), i(7)]);
    }

    #[test]
    fn format_errors_point_at_the_character() {
        let cases = [
            ("I 2y", "bad format 'I 2y': unknown code 'y' at position 3"),
            ("<Iz", "bad format '<Iz': unknown code 'z' at position 2"),
            (" <I", "bad format ' <I': byte-order prefix '<' at position 1 must be the first character"),
            ("I<", "bad format 'I<': byte-order prefix '<' at position 1 must be the first character"),
            ("<!", "bad format '<!': byte-order prefix '!' at position 1 must be the first character"),
            ("<n", "bad format '<n': code 'n' at position 1 is only allowed in native mode ('@' or no prefix)"),
            ("=2N", "bad format '=2N': code 'N' at position 2 is only allowed in native mode ('@' or no prefix)"),
            ("!bP", "bad format '!bP': code 'P' at position 2 is only allowed in native mode ('@' or no prefix)"),
            ("3", "bad format '3': repeat count at position 0 is not directly followed by a code"),
            ("<i 12", "bad format '<i 12': repeat count at position 3 is not directly followed by a code"),
            ("3 h", "bad format '3 h': repeat count at position 0 is not directly followed by a code"),
            ("2000000x", "bad format '2000000x': repeat count at position 0 exceeds the limit of 1048576"),
            ("99999999999999999999999999999s", "bad format '99999999999999999999999999999s': repeat count at position 0 exceeds the limit of 1048576"),
            ("<i600000s600000s", "bad format '<i600000s600000s': item at position 9 makes the record larger than 1048576 bytes"),
            ("@b1048576q", "bad format '@b1048576q': item at position 2 makes the record larger than 1048576 bytes"),
            ("\u{e9}I", "bad format '\u{e9}I': unknown code '\u{e9}' at position 0"),
            ("I\0", "bad format 'I\\0': unknown code '\\0' at position 1"),
        ];
        for (text, message) in cases {
            assert_eq!(format_err(text), message);
        }
        let err = Format::parse("I 2y").unwrap_err();
        assert_eq!(err.position(), 3);
        assert_eq!(err.kind(), &FormatErrorKind::UnknownCode('y'));
        assert_eq!(err.format_text(), "I 2y");
        let _: &dyn std::error::Error = &err;
    }

    #[test]
    fn record_size_cap_is_inclusive() {
        assert_eq!(Format::parse("1048576x").unwrap().size(), MAX_RECORD_SIZE);
        assert_eq!(Format::parse("<131072q").unwrap().size(), MAX_RECORD_SIZE);
        assert!(Format::parse("<131072qx").is_err());
    }

    #[test]
    fn encode_errors_match_python_wording() {
        assert_eq!(
            encode_err("<ii", &[i(1)]),
            "pack expected 2 items for packing (got 1)"
        );
        assert_eq!(
            encode_err("<bI", &[i(0), i(4294967296)]),
            "value 2: 'I' format requires 0 <= number <= 4294967295 (got 4294967296)"
        );
        let ranges = [
            ("<b", -128, 127),
            ("<B", 0, 255),
            ("<h", -32768, 32767),
            ("<H", 0, 65535),
            ("<i", -2147483648, 2147483647),
            ("<I", 0, 4294967295),
            ("<l", -2147483648, 2147483647),
            ("<L", 0, 4294967295),
            ("<q", i128::from(i64::MIN), i128::from(i64::MAX)),
            ("<Q", 0, i128::from(u64::MAX)),
        ];
        for (text, min, max) in ranges {
            let fmt = Format::parse(text).unwrap();
            assert!(fmt.encode(&[i(min)]).is_ok() && fmt.encode(&[i(max)]).is_ok());
            for bad in [min - 1, max + 1] {
                let message = format!(
                    "value 1: '{}' format requires {min} <= number <= {max} (got {bad})",
                    &text[1..]
                );
                assert_eq!(encode_err(text, &[i(bad)]), message);
            }
        }
        assert_eq!(
            encode_err("<f", &[f(1e39)]),
            "value 1: float too large to pack with f format"
        );
        assert_eq!(
            encode_err("<f", &[f(3.4028235677973366e38)]),
            "value 1: float too large to pack with f format"
        );
        assert_eq!(
            encode_err("<e", &[f(65520.0)]),
            "value 1: float too large to pack with e format"
        );
        assert!(Format::parse("<f")
            .unwrap()
            .encode(&[f(3.4028235677973362e38)])
            .is_ok());
        assert_eq!(
            encode_err("<i", &[f(2.0)]),
            "value 1: 'i' format requires an integer, not float"
        );
        assert_eq!(
            encode_err("<d", &[s(b"x")]),
            "value 1: 'd' format requires a float, not bytes of length 1"
        );
        assert_eq!(
            encode_err("<3s", &[i(5)]),
            "value 1: 's' format requires bytes, not int"
        );
        assert_eq!(
            encode_err("<c", &[s(b"ab")]),
            "value 1: 'c' format requires a bytes object of length 1, not bytes of length 2"
        );
        assert_eq!(
            Format::parse("<i")
                .unwrap()
                .decode(b"abc")
                .unwrap_err()
                .to_string(),
            "unpack requires a buffer of 4 bytes (got 3)"
        );
        assert_eq!(
            Format::parse("<c")
                .unwrap()
                .encode(&[Value::Char(b'x')])
                .unwrap(),
            b"x"
        );
    }

    #[test]
    fn parse_values_words() {
        let fmt = Format::parse("<bHq?c4s2pfde").unwrap();
        let ws = [
            "-0x10", "0b1_0", "-1_000", "True", r"\x00", r"a\tb\'", "xyz", "-inf", "1e-5", "nan",
        ];
        let values = fmt.parse_values(&words(&ws)).unwrap();
        assert_eq!(
            repr(&values),
            r#"(-16, 2, -1000, True, b'\x00', b"a\tb'", b'xyz', -inf, 1e-05, nan)"#
        );
        assert_eq!(
            to_hex(&fmt.encode(&values).unwrap()),
            "f0020018fcffffffffffff0100610962270178000080fff168e388b5f8e43e007e"
        );
        let fmt = Format::parse("<?????").unwrap();
        let values = fmt
            .parse_values(&words(&["true", "FALSE", "1", "0", "False"]))
            .unwrap();
        assert_eq!(values, vec![t(true), t(false), t(true), t(false), t(false)]);
        let fmt = Format::parse("<3s").unwrap();
        for (word, bytes) in [
            (r"\101\7\n", &b"A\x07\n"[..]),
            (r"\q\\", b"\\q\\"),
            ("trail\\", b"tra"),
            ("\u{e9}", b"\xc3\xa9\x00"),
        ] {
            let values = fmt.parse_values(&words(&[word])).unwrap();
            assert_eq!(fmt.encode(&values).unwrap(), bytes, "{word:?}");
        }
        let d = Format::parse("<d").unwrap();
        for (word, x) in [
            ("1_0.5", 10.5),
            ("+.5", 0.5),
            ("5.", 5.0),
            ("Infinity", f64::INFINITY),
            ("7", 7.0),
        ] {
            assert_eq!(
                d.parse_values(&words(&[word])).unwrap(),
                vec![f(x)],
                "{word:?}"
            );
        }
    }

    #[test]
    fn parse_values_errors_name_the_value() {
        assert_eq!(
            words_err("I 2s f", &["1", "ab"]),
            "format takes 3 values (got 2)"
        );
        assert_eq!(
            words_err("I 2s f", &["1", "ab", "x"]),
            r#"value 3 ("x") for 'f': not a float"#
        );
        assert_eq!(
            words_err("<ii", &["1", "2.0"]),
            r#"value 2 ("2.0") for 'i': not an integer"#
        );
        for bad in [
            "", "0x", "1__0", "_1", "1_", "0x+5", "--1", "1e3", "infinity",
        ] {
            assert!(
                words_err("<q", &[bad]).contains("not an integer"),
                "{bad:?}"
            );
        }
        for bad in ["", "1_", "_1", "1__0", "0x10", "in", "1e", "1.5.2", "nan_"] {
            assert!(words_err("<d", &[bad]).contains("not a float"), "{bad:?}");
        }
        assert_eq!(
            words_err("<B", &["256"]),
            "value 1: 'B' format requires 0 <= number <= 255 (got 256)"
        );
        assert_eq!(
            words_err("<Q", &["99999999999999999999999999999999999999999"]),
            "value 1: 'Q' format requires 0 <= number <= 18446744073709551615 \
             (got 99999999999999999999999999999999999999999)"
        );
        assert_eq!(
            words_err("<e", &["1e5"]),
            "value 1: float too large to pack with e format"
        );
        assert_eq!(
            words_err("<?", &["yes"]),
            r#"value 1 ("yes") for '?': expected true, false, 1 or 0"#
        );
        assert_eq!(
            words_err("<c", &["ab"]),
            r#"value 1 ("ab") for 'c': needs exactly one byte"#
        );
        assert_eq!(
            words_err("<s", &[r"\xZZ"]),
            r#"value 1 ("\\xZZ") for 's': invalid \xHH escape"#
        );
        assert_eq!(
            words_err("<s", &[r"\x4"]),
            r#"value 1 ("\\x4") for 's': truncated \xHH escape"#
        );
        assert_eq!(
            words_err("<s", &[r"\400"]),
            r#"value 1 ("\\400") for 's': octal escape above \377"#
        );
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (1e-7, "1e-07"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (2.0, "2.0"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (f64::from(2.7f32), "2.700000047683716"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            // Exactly halfway between two shortest candidates: Python rounds to even.
            (f64::from_bits(0x4301bbe21334983a), "623956782912263.2"),
            (f64::from_bits(0xc2ea97257f2320b4), "-233891771783429.62"),
        ];
        for (x, py) in cases {
            assert_eq!(float_repr(x), py, "{x:e}");
        }
    }

    #[test]
    fn bytes_and_tuple_repr_match_python() {
        assert_eq!(bytes_repr(b"a'b"), r#"b"a'b""#);
        assert_eq!(bytes_repr(b"a\"b"), r#"b'a"b'"#);
        assert_eq!(bytes_repr(b"a'b\"c"), r#"b'a\'b"c'"#);
        assert_eq!(bytes_repr(b""), "b''");
        let all: Vec<u8> = (0..=255).collect();
        let expected = concat!(
            r"b'\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13",
            r"\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f !",
            r##""#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"##,
            r"abcdefghijklmnopqrstuvwxyz{|}~\x7f\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89",
            r"\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c",
            r"\x9d\x9e\x9f\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf",
            r"\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe\xbf\xc0\xc1\xc2",
            r"\xc3\xc4\xc5\xc6\xc7\xc8\xc9\xca\xcb\xcc\xcd\xce\xcf\xd0\xd1\xd2\xd3\xd4\xd5",
            r"\xd6\xd7\xd8\xd9\xda\xdb\xdc\xdd\xde\xdf\xe0\xe1\xe2\xe3\xe4\xe5\xe6\xe7\xe8",
            r"\xe9\xea\xeb\xec\xed\xee\xef\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xfb",
            r"\xfc\xfd\xfe\xff'",
        );
        assert_eq!(bytes_repr(&all), expected);
        assert_eq!(repr(&[]), "()");
        assert_eq!(repr(&[i(5)]), "(5,)");
        assert_eq!(
            repr(&[i(1), s(b"ab"), f(2.7), t(true), t(false), Value::Char(b'a')]),
            "(1, b'ab', 2.7, True, False, b'a')"
        );
        assert_eq!(to_hex(&[0x01, 0xab, 0x00, 0xff]), "01ab00ff");
    }

    #[test]
    fn half_float_conversion_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let x = f16_to_f64(h);
            if x.is_nan() {
                assert_eq!(f64_to_f16(x), Some((h & 0x8000) | 0x7e00));
            } else {
                assert_eq!(f64_to_f16(x), Some(h), "{h:#06x}");
            }
        }
    }

    /// Valid formats: prefix, then runs of codes with optional counts and spaces.
    fn arb_format() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "@", "=", "<", ">", "!"]).prop_flat_map(|prefix| {
            let native = prefix.is_empty() || prefix == "@";
            let alphabet = if native {
                "xcbB?hHiIlLqQnNefdspP"
            } else {
                "xcbB?hHiIlLqQefdsp"
            };
            let item = (
                prop::option::of(0usize..6),
                prop::sample::select(alphabet.chars().collect::<Vec<_>>()),
                prop::sample::select(vec!["", " ", "\t"]),
            )
                .prop_map(|(count, code, space)| {
                    format!(
                        "{}{code}{space}",
                        count.map(|n| n.to_string()).unwrap_or_default()
                    )
                });
            prop::collection::vec(item, 0..8)
                .prop_map(move |items| format!("{prefix}{}", items.concat()))
        })
    }

    fn arb_format_and_record() -> impl Strategy<Value = (String, Vec<u8>)> {
        arb_format().prop_flat_map(|text| {
            let size = Format::parse(&text).map(|f| f.size()).unwrap_or(0);
            // Bias towards bytes that make special floats (inf, NaN, subnormals).
            let byte = prop_oneof![
                any::<u8>(),
                prop::sample::select(vec![0u8, 1, 0x7c, 0x7f, 0x80, 0xfc, 0xff])
            ];
            (Just(text), prop::collection::vec(byte, size))
        })
    }

    proptest! {
        #[test]
        fn decode_encode_is_stable((text, record) in arb_format_and_record()) {
            let fmt = Format::parse(&text).unwrap();
            let first = fmt.decode(&record).unwrap();
            prop_assert_eq!(first.len(), fmt.value_count());
            let packed = fmt.encode(&first).unwrap();
            let second = fmt.decode(&packed).unwrap();
            prop_assert!(same(&first, &second), "{:?} vs {:?}", first, second);
            prop_assert_eq!(fmt.encode(&second).unwrap(), packed);
            prop_assert_eq!(repr(&first), repr(&second));
        }

        #[test]
        fn parse_never_panics(text in ".{0,24}", record in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(fmt) = Format::parse(&text) {
                let _ = fmt.decode(&record);
            }
        }

        #[test]
        fn parse_format_like_text_never_panics(
            text in "[0-9@=<>! xcbB?hHiIlLqQnNefdspPz]{0,16}",
            record in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            match Format::parse(&text) {
                Ok(fmt) => {
                    if let Ok(values) = fmt.decode(&record) {
                        prop_assert!(fmt.encode(&values).is_ok());
                    }
                }
                Err(err) => prop_assert!(err.to_string().starts_with("bad format '")),
            }
        }

        #[test]
        fn parse_values_never_panics(
            text in arb_format(),
            ws in prop::collection::vec(
                prop_oneof![
                    ".{0,6}",
                    prop::sample::select(vec![
                        "0", "1", "-1", "255", "0x10", "1.5", "inf", "-nan", "true", "ab",
                        r"\x00", "", "1e400", "70000", "99999999999999999999999999999999999999999",
                    ]).prop_map(String::from),
                ],
                0..12,
            ),
        ) {
            let fmt = Format::parse(&text).unwrap();
            let _ = fmt.parse_values(&ws);
            // With exactly the right number of words, whatever parses must encode.
            let mut ws = ws;
            ws.resize(fmt.value_count(), "0".to_string());
            if let Ok(values) = fmt.parse_values(&ws) {
                let record = fmt.encode(&values).unwrap();
                prop_assert_eq!(record.len(), fmt.size());
            }
        }
    }
}
