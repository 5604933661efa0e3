//! Value literals: command-line words turned into values for a format, as
//! the client takes them (`echoplex client binary://… 'I 2s f' 1 ab 2.5`).

use super::codec::{check_int, CodecError, Value};
use super::floats::{f64_to_f16, f64_to_f32_bits};
use super::layout::{Format, Item, Kind};

impl Format {
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
