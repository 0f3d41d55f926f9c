//! Q5_1: 32 elements as an f16 scale `d`, an f16 minimum `m` and 32 5-bit quants;
//! value = d * q + m.
//!
//! Bit layout as Q5_0. Quantize: `d = (max - min) / 31`, `q = min(31, trunc((x - min) / d + 0.5))`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_qkx_quants, to_f16};
use super::q4_k::WEIGHTED_GRID;
use super::{f16_to_f32, f32_to_f16, inv_or_zero, Block, QuantizeBlock, QuantizeWeighted};
use crate::GgmlType;

/// Elements per block.
pub const QK5_1: usize = 32;

/// One Q5_1 block (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of q = 0).
    pub m: f16,
    /// Bit 4 of each quant, element `j` at bit `j` (little-endian u32).
    pub qh: [u8; 4],
    /// Low 4 bits: low nibble = elements 0..16, high nibble = elements 16..32.
    pub qs: [u8; QK5_1 / 2],
}

const _: () = assert!(size_of::<BlockQ5_1>() == 24);

impl Block<QK5_1> for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;

    fn dequantize(&self, out: &mut [f32; QK5_1]) {
        let d = f16_to_f32(self.d);
        let m = f16_to_f32(self.m);
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let h0 = ((qh >> j) & 1) as u8;
            let h1 = ((qh >> (j + QK5_1 / 2)) & 1) as u8;
            out[j] = d * f32::from((q & 0x0f) | (h0 << 4)) + m;
            out[j + QK5_1 / 2] = d * f32::from((q >> 4) | (h1 << 4)) + m;
        }
    }
}

impl QuantizeBlock<QK5_1> for BlockQ5_1 {
    fn quantize(x: &[f32; QK5_1]) -> Self {
        let (min, max) = super::min_max(x);
        let d = (max - min) / 31.0;
        let id = inv_or_zero(d);
        let q: [u8; QK5_1] =
            std::array::from_fn(|j| (((x[j] - min) * id + 0.5).trunc() as u8).min(31));
        Self {
            d: f32_to_f16(d),
            m: f32_to_f16(min),
            qh: super::pack_high_bits(&q).to_le_bytes(),
            qs: std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + QK5_1 / 2] & 0x0f) << 4)),
        }
    }
}

impl QuantizeWeighted<QK5_1> for BlockQ5_1 {
    /// llama.cpp's `quantize_q5_1` with an importance matrix (`quantize_row_q5_1_impl`).
    fn quantize_weighted(x: &[f32; QK5_1], qw: &[f32; QK5_1], row_sigma2: f32) -> Self {
        let mut weight = [0f32; QK5_1];
        importance(qw, x, row_sigma2, &mut weight);
        let (mut q, mut aux) = ([0u8; QK5_1], [0u8; QK5_1]);
        let (d, the_min) = make_qkx_quants(31, x, &weight, &mut q, &mut aux, WEIGHTED_GRID);
        Self {
            d: to_f16(d),
            m: to_f16(-the_min),
            qh: super::pack_high_bits(&q).to_le_bytes(),
            qs: std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + QK5_1 / 2] & 0x0f) << 4)),
        }
    }
}
