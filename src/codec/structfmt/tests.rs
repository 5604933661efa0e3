//! Expected bytes and reprs were computed with CPython 3.11's `struct`.

use super::floats::{f16_to_f64, f64_to_f16};
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
