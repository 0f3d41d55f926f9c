//! F16 (IEEE binary16) and BF16 (bfloat16) element conversions.
//!
//! The spec is the `gguf` Python package (numpy):
//! - f32 -> f16 is `astype(np.float16)`: round to nearest even, overflow to inf, and NaN payloads kept
//!   as numpy keeps them (the top 10 mantissa bits; a payload that would vanish becomes 1). The `half`
//!   crate quiets NaNs, so NaNs are handled here and everything else goes through `half`.
//! - f16 -> f32 is exact; numpy keeps NaN payloads (signaling NaNs stay signaling).
//! - f32 -> bf16 is `ggml_compute_fp32_to_bf16`: NaN -> upper half with the quiet bit set,
//!   otherwise round to nearest even on the dropped 16 bits.
//! - bf16 -> f32 is a 16-bit shift.

use half::f16;

/// f32 -> f16 bits, bit-identical to numpy's `astype(np.float16)`.
#[inline]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if (bits & 0x7fff_ffff) > 0x7f80_0000 {
        // NaN: sign, all-ones exponent, top 10 payload bits; never let it turn into inf.
        let sign = ((bits >> 16) & 0x8000) as u16;
        let payload = ((bits & 0x007f_ffff) >> 13) as u16;
        return sign | 0x7c00 | payload.max(1);
    }
    f16::from_f32(x).to_bits()
}

/// f16 bits -> f32, exact (NaN payloads kept, as numpy does).
#[inline]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    if (h & 0x7fff) > 0x7c00 {
        let sign = u32::from(h & 0x8000) << 16;
        let payload = u32::from(h & 0x03ff) << 13;
        return f32::from_bits(sign | 0x7f80_0000 | payload);
    }
    f16::from_bits(h).to_f32()
}

/// f32 -> f16 as a `half::f16` (see [`f32_to_f16_bits`]).
#[inline]
pub fn f32_to_f16(x: f32) -> f16 {
    f16::from_bits(f32_to_f16_bits(x))
}

/// `half::f16` -> f32 (see [`f16_bits_to_f32`]).
#[inline]
pub fn f16_to_f32(h: f16) -> f32 {
    f16_bits_to_f32(h.to_bits())
}

/// f32 -> bf16 bits: quiet NaNs, round to nearest even otherwise (ggml and the gguf package).
#[inline]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if (bits & 0x7fff_ffff) > 0x7f80_0000 {
        return ((bits >> 16) | 0x0040) as u16;
    }
    // No overflow: the largest non-NaN input, 0xff7f_ffff, plus 0x8000 still fits in u32.
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> f32 (exact).
#[inline]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_edges() {
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(
            f32_to_f16_bits(65520.0),
            0x7c00,
            "ties to even rounds up to inf"
        );
        assert_eq!(f32_to_f16_bits(f32::from_bits(0x7f80_0001)), 0x7c01);
        assert_eq!(f32_to_f16_bits(f32::from_bits(0x7fc1_2345)), 0x7e09);
        assert_eq!(f16_bits_to_f32(0x7c01).to_bits(), 0x7f80_2000);
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
    }

    #[test]
    fn bf16_edges() {
        assert_eq!(
            f32_to_bf16_bits(f32::from_bits(0x3f80_8000)),
            0x3f80,
            "tie to even"
        );
        assert_eq!(
            f32_to_bf16_bits(f32::from_bits(0x3f81_8000)),
            0x3f82,
            "tie to even"
        );
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7f80);
        assert_eq!(bf16_bits_to_f32(0x3f80), 1.0);
    }
}
