//! Float conversions between `f64` and the half and single precision
//! fields, bit-exact with CPython (rounding, overflow, NaN payloads).

/// `f32` NaN → `f64`, done by hand so the payload handling is the same on
/// every target (quiet bit set, payload shifted up, as x86 and ARM do).
pub(super) fn f32_bits_to_f64(bits: u32) -> f64 {
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
pub(super) fn f64_to_f32_bits(x: f64) -> Option<u32> {
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
pub(super) fn f64_to_f16(x: f64) -> Option<u16> {
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
pub(super) fn f16_to_f64(h: u16) -> f64 {
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
