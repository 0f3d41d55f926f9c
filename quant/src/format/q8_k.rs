//! Q8_K: the 8-bit activation block of the K-quants: 256 elements as an f32 scale, 256 i8 quants
//! and the sums of each group of 16 quants (used by the K-quant dot products); value = d * q.
//!
//! Quantize (llama.cpp's `quantize_row_q8_K_ref`): `max` is the first element of largest
//! magnitude with its sign, `iscale = -127 / max`, `q = min(127, nearest_int(iscale * x))`
//! (round half to even), `d = 1 / iscale`. An all-zero block is all zeros (bsums included).

use bytemuck::{Pod, Zeroable};

use super::{Block, QuantizeBlock};
use crate::{GgmlType, QK_K};

/// One Q8_K block (292 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8K {
    /// Scale.
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sum of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// Round to nearest, ties to even, as llama.cpp's `nearest_int` (exact for |x| < 2^22).
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0; // 1.5 * 2^23: the sum's ulp is 1, so the FPU rounds for us
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

impl Block<QK_K> for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = self.d * f32::from(q);
        }
    }
}

impl QuantizeBlock<QK_K> for BlockQ8K {
    fn quantize(x: &[f32; QK_K]) -> Self {
        let mut amax = 0f32;
        let mut max = 0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return Self::zeroed();
        }
        let iscale = -127.0 / max;
        let qs: [i8; QK_K] = std::array::from_fn(|j| nearest_int(iscale * x[j]).min(127) as i8);
        let bsums =
            std::array::from_fn(|g| qs[16 * g..16 * g + 16].iter().map(|&q| i16::from(q)).sum());
        Self {
            d: 1.0 / iscale,
            qs,
            bsums,
        }
    }
}
