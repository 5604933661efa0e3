//! The format grammar and record layout: byte-order prefix, codes, repeat
//! counts, sizes and alignment, as CPython's `struct` computes them.

use std::fmt;
use std::mem::{align_of, size_of};
use std::os::raw::{c_double, c_float, c_int, c_long, c_longlong, c_short};

/// Largest record, in bytes, that a [`Format`] may describe.
pub const MAX_RECORD_SIZE: usize = 1 << 20;

/// Byte order, size and alignment mode chosen by the format's first character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
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

    pub(super) fn big_endian(self) -> bool {
        match self {
            Mode::Native | Mode::NativeStandard => cfg!(target_endian = "big"),
            Mode::Little => false,
            Mode::Big => true,
        }
    }
}

/// How one format code is stored and what value it maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct Item {
    pub(super) code: char,
    pub(super) kind: Kind,
    /// Repeat count; for `s`/`p` the string length.
    pub(super) count: usize,
    /// Size of one element in bytes.
    pub(super) size: usize,
    /// Byte offset of the first element, after alignment.
    pub(super) offset: usize,
}

impl Item {
    /// Number of values this item takes or yields.
    pub(super) fn values(&self) -> usize {
        match self.kind {
            Kind::Pad => 0,
            Kind::Str | Kind::Pascal => 1,
            _ => self.count,
        }
    }

    /// Inclusive value range of an integer item.
    pub(super) fn int_range(&self) -> (i128, i128) {
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
    pub(super) mode: Mode,
    pub(super) items: Vec<Item>,
    pub(super) size: usize,
    pub(super) values: usize,
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
