//! Python's text rules: `repr()` of str, bytes, float, list and tuple, and
//! the `str` predicates that decide them. One home for both users: the
//! `struct` codec prints unpacked tuples with them, `net` prints the
//! resolver's answers with them.

use std::fmt::Write as _;

/// The quoting both `str` and `bytes` reprs share: single quotes unless the
/// text holds a `'` and no `"`; the backslash, the quote in use, `\t \n \r`
/// escaped; printable ASCII as is. Every other character goes to `other`,
/// where the two types differ.
fn quoted<I>(prefix: &str, text: I, other: impl Fn(&mut String, char)) -> String
where
    I: Iterator<Item = char> + Clone,
{
    let has = |q: char| text.clone().any(|c| c == q);
    let quote = if has('\'') && !has('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(prefix.len() + text.size_hint().0 + 2);
    out.push_str(prefix);
    out.push(quote);
    for c in text {
        match c {
            '\\' => out.push_str("\\\\"),
            _ if c == quote => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            _ => other(&mut out, c),
        }
    }
    out.push(quote);
    out
}

/// `repr()` of a str: `'localhost'`, `"it's"`, `'bücher\xa0\u200b'`.
pub fn str_repr(s: &str) -> String {
    quoted("", s.chars(), |out, c| {
        let code = u32::from(c);
        let _ = match code {
            // ASCII controls and DEL.
            0..=0x7f => write!(out, "\\x{code:02x}"),
            _ if isprintable(c) => write!(out, "{c}"),
            0x80..=0xff => write!(out, "\\x{code:02x}"),
            0x100..=0xffff => write!(out, "\\u{code:04x}"),
            _ => write!(out, "\\U{code:08x}"),
        };
    })
}

/// `repr()` of a bytes object: `b'ab\x00'`, or `b"it's"`.
pub fn bytes_repr(bytes: &[u8]) -> String {
    // Bytes as Latin-1 code points, so the shared rule sees the same values.
    quoted("b", bytes.iter().map(|&b| char::from(b)), |out, c| {
        let _ = write!(out, "\\x{:02x}", u32::from(c));
    })
}

/// `repr()` of a list whose items are already repr'd: `['a', 'b']`.
pub fn list(items: impl IntoIterator<Item = String>) -> String {
    let (mut out, _) = joined('[', items);
    out.push(']');
    out
}

/// `repr()` of a tuple whose items are already repr'd: `(1, 2)`, `(5,)`,
/// `()`.
pub fn tuple(items: impl IntoIterator<Item = String>) -> String {
    let (mut out, count) = joined('(', items);
    if count == 1 {
        out.push(',');
    }
    out.push(')');
    out
}

/// `open`, then the items separated by ", " (one string, no list of them:
/// the binary service reprs every record it logs); and how many there were.
fn joined(open: char, items: impl IntoIterator<Item = String>) -> (String, usize) {
    let mut out = String::from(open);
    let mut count = 0;
    for item in items {
        if count > 0 {
            out.push_str(", ");
        }
        out.push_str(&item);
        count += 1;
    }
    (out, count)
}

/// `str.isspace()`: Unicode whitespace plus the ASCII separators
/// U+001C..U+001F, which Python counts and Rust does not.
pub fn isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Approximates `str.isprintable()` for non-ASCII characters: controls,
/// separators, the common format characters and private use are not
/// printable. std has no general-category table, so unassigned code points
/// slip through; resolver names are ASCII in practice.
fn isprintable(c: char) -> bool {
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}'
            | '\u{f0000}'..))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_repr_matches_python() {
        assert_eq!(str_repr("localhost"), "'localhost'");
        assert_eq!(str_repr(""), "''");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("'\""), "'\\'\"'");
        assert_eq!(str_repr("a\\b\tc\n\x01\x7f"), "'a\\\\b\\tc\\n\\x01\\x7f'");
        assert_eq!(str_repr("bücher\u{a0}\u{200b}"), "'bücher\\xa0\\u200b'");
        assert_eq!(str_repr("\u{e000}\u{f0000}"), "'\\ue000\\U000f0000'");
    }

    #[test]
    fn containers_match_python() {
        assert_eq!(tuple(Vec::new()), "()");
        assert_eq!(tuple(["5".to_owned()]), "(5,)");
        assert_eq!(tuple(["1".to_owned(), "b'ab'".to_owned()]), "(1, b'ab')");
        assert_eq!(list(Vec::new()), "[]");
        assert_eq!(list(["'a'".to_owned(), "'b'".to_owned()]), "['a', 'b']");
    }

    #[test]
    fn isspace_counts_python_separators() {
        assert_eq!(" \t\x1cvm\x1f\u{3000}".trim_matches(isspace), "vm");
    }
}
