//! Q4_1: 32 elements as an f16 scale `d`, an f16 minimum `m` and 32 4-bit quants;
//! value = d * q + m.
//!
//! Nibble order as Q4_0. Quantize: `d = (max - min) / 15`, `q = min(15, trunc((x - min) / d + 0.5))`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_qkx_quants, to_f16};
use super::q4_k::WEIGHTED_GRID;
use super::{f16_to_f32, f32_to_f16, inv_or_zero, Block, QuantizeBlock, QuantizeWeighted};
use crate::GgmlType;

/// Elements per block.
pub const QK4_1: usize = 32;

/// One Q4_1 block (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of q = 0).
    pub m: f16,
    /// Nibbles: low = elements 0..16, high = elements 16..32.
    pub qs: [u8; QK4_1 / 2],
}

const _: () = assert!(size_of::<BlockQ4_1>() == 20);

impl Block<QK4_1> for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;

    fn dequantize(&self, out: &mut [f32; QK4_1]) {
        let d = f16_to_f32(self.d);
        let m = f16_to_f32(self.m);
        for (j, &q) in self.qs.iter().enumerate() {
            out[j] = d * f32::from(q & 0x0f) + m;
            out[j + QK4_1 / 2] = d * f32::from(q >> 4) + m;
        }
    }
}

impl QuantizeBlock<QK4_1> for BlockQ4_1 {
    fn quantize(x: &[f32; QK4_1]) -> Self {
        let (min, max) = super::min_max(x);
        let d = (max - min) / 15.0;
        let id = inv_or_zero(d);
        let q = |v: f32| (((v - min) * id + 0.5).trunc() as u8).min(15);
        let mut qs = [0u8; QK4_1 / 2];
        for (j, b) in qs.iter_mut().enumerate() {
            *b = q(x[j]) | (q(x[j + QK4_1 / 2]) << 4);
        }
        Self {
            d: f32_to_f16(d),
            m: f32_to_f16(min),
            qs,
        }
    }
}

impl QuantizeWeighted<QK4_1> for BlockQ4_1 {
    /// llama.cpp's `quantize_q4_1` with an importance matrix (`quantize_row_q4_1_impl`).
    fn quantize_weighted(x: &[f32; QK4_1], qw: &[f32; QK4_1], row_sigma2: f32) -> Self {
        let mut weight = [0f32; QK4_1];
        importance(qw, x, row_sigma2, &mut weight);
        let (mut l, mut aux) = ([0u8; QK4_1], [0u8; QK4_1]);
        let (d, the_min) = make_qkx_quants(15, x, &weight, &mut l, &mut aux, WEIGHTED_GRID);
        Self {
            d: to_f16(d),
            m: to_f16(-the_min),
            qs: std::array::from_fn(|j| l[j] | (l[j + QK4_1 / 2] << 4)),
        }
    }
}
