//! Q8_0: 32 elements as an f16 scale and 32 i8 quants; value = d * q.
//!
//! Quantize: `d = amax / 127`, `q = round(x / d)` rounding half away from zero (C `roundf`; the
//! gguf package's `np_roundf`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{f16_to_f32, f32_to_f16, inv_or_zero, Block, QuantizeBlock};
use crate::GgmlType;

/// Elements per block.
pub const QK8_0: usize = 32;

/// One Q8_0 block (34 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK8_0],
}

const _: () = assert!(size_of::<BlockQ8_0>() == 34);

impl Block<QK8_0> for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;

    fn dequantize(&self, out: &mut [f32; QK8_0]) {
        let d = f16_to_f32(self.d);
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = f32::from(q) * d;
        }
    }
}

impl QuantizeBlock<QK8_0> for BlockQ8_0 {
    fn quantize(x: &[f32; QK8_0]) -> Self {
        let amax = x
            .iter()
            .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        let d = amax / 127.0;
        let id = inv_or_zero(d);
        // `f32::round` is round-half-away-from-zero; `as i8` saturates (NaN -> 0).
        Self {
            d: f32_to_f16(d),
            qs: std::array::from_fn(|j| (x[j] * id).round() as i8),
        }
    }
}
