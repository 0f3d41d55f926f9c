//! Q4_0: 32 elements as an f16 scale and 32 4-bit quants; value = d * (q - 8).
//!
//! Element `j` (0..16) is the low nibble of `qs[j]`, element `j + 16` the high nibble.
//! Quantize: `max` is the element of largest magnitude with its sign, `d = max / -8`,
//! `q = min(15, trunc(x / d + 8.5))`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_qx_quants, to_f16};
use super::{
    argmax_abs, f16_to_f32, f32_to_f16, inv_or_zero, Block, QuantizeBlock, QuantizeWeighted,
};
use crate::GgmlType;

/// Elements per block.
pub const QK4_0: usize = 32;

/// One Q4_0 block (18 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles: low = elements 0..16, high = elements 16..32.
    pub qs: [u8; QK4_0 / 2],
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);

impl Block<QK4_0> for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;

    fn dequantize(&self, out: &mut [f32; QK4_0]) {
        let d = f16_to_f32(self.d);
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = d * f32::from((q & 0x0f) as i8 - 8);
            out[j + QK4_0 / 2] = d * f32::from((q >> 4) as i8 - 8);
        }
    }
}

impl QuantizeBlock<QK4_0> for BlockQ4_0 {
    fn quantize(x: &[f32; QK4_0]) -> Self {
        let max = x[argmax_abs(x)];
        let d = max / -8.0;
        let id = inv_or_zero(d);
        // The reference truncates `x * id + 8.5`; `as u8` truncates toward zero and saturates
        // (negative and NaN -> 0) by itself, so no separate trunc (a libm call on baseline x86-64).
        let q = |v: f32| ((v * id + 8.5) as u8).min(15);
        let mut qs = [0u8; QK4_0 / 2];
        for (j, b) in qs.iter_mut().enumerate() {
            *b = q(x[j]) | (q(x[j + QK4_0 / 2]) << 4);
        }
        Self {
            d: f32_to_f16(d),
            qs,
        }
    }
}

impl QuantizeWeighted<QK4_0> for BlockQ4_0 {
    /// llama.cpp's `quantize_q4_0` with an importance matrix (`quantize_row_q4_0_impl`):
    /// weights `qw · sqrt(row_sigma2 + x²)`, the scale fitted by `make_qx_quants`.
    fn quantize_weighted(x: &[f32; QK4_0], qw: &[f32; QK4_0], row_sigma2: f32) -> Self {
        let mut weight = [0f32; QK4_0];
        importance(qw, x, row_sigma2, &mut weight);
        let mut l = [0i8; QK4_0];
        let d = make_qx_quants(8, x, &mut l, Some(&weight));
        Self {
            d: to_f16(d),
            qs: std::array::from_fn(|j| l[j] as u8 | ((l[j + QK4_0 / 2] as u8) << 4)),
        }
    }
}
