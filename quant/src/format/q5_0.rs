//! Q5_0: 32 elements as an f16 scale and 32 5-bit quants; value = d * (q - 16).
//!
//! The low 4 bits are nibbles ordered as Q4_0; bit 4 of element `j` is bit `j` of the
//! little-endian u32 `qh`. Quantize: `d = max / -16` (max with its sign),
//! `q = min(31, trunc(x / d + 16.5))`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_qx_quants, to_f16};
use super::{
    argmax_abs, f16_to_f32, f32_to_f16, inv_or_zero, Block, QuantizeBlock, QuantizeWeighted,
};
use crate::GgmlType;

/// Elements per block.
pub const QK5_0: usize = 32;

/// One Q5_0 block (22 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Bit 4 of each quant, element `j` at bit `j` (little-endian u32).
    pub qh: [u8; 4],
    /// Low 4 bits: low nibble = elements 0..16, high nibble = elements 16..32.
    pub qs: [u8; QK5_0 / 2],
}

const _: () = assert!(size_of::<BlockQ5_0>() == 22);

impl Block<QK5_0> for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;

    fn dequantize(&self, out: &mut [f32; QK5_0]) {
        let d = f16_to_f32(self.d);
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let h0 = ((qh >> j) & 1) as u8;
            let h1 = ((qh >> (j + QK5_0 / 2)) & 1) as u8;
            out[j] = d * f32::from(((q & 0x0f) | (h0 << 4)) as i8 - 16);
            out[j + QK5_0 / 2] = d * f32::from(((q >> 4) | (h1 << 4)) as i8 - 16);
        }
    }
}

impl QuantizeBlock<QK5_0> for BlockQ5_0 {
    fn quantize(x: &[f32; QK5_0]) -> Self {
        let max = x[argmax_abs(x)];
        let d = max / -16.0;
        let id = inv_or_zero(d);
        let q: [u8; QK5_0] = std::array::from_fn(|j| ((x[j] * id + 16.5).trunc() as u8).min(31));
        Self {
            d: f32_to_f16(d),
            qh: super::pack_high_bits(&q).to_le_bytes(),
            qs: std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + QK5_0 / 2] & 0x0f) << 4)),
        }
    }
}

impl QuantizeWeighted<QK5_0> for BlockQ5_0 {
    /// llama.cpp's `quantize_q5_0` with an importance matrix (`quantize_row_q5_0_impl`).
    fn quantize_weighted(x: &[f32; QK5_0], qw: &[f32; QK5_0], row_sigma2: f32) -> Self {
        let mut weight = [0f32; QK5_0];
        importance(qw, x, row_sigma2, &mut weight);
        let mut l = [0i8; QK5_0];
        let d = make_qx_quants(16, x, &mut l, Some(&weight));
        let q: [u8; QK5_0] = l.map(|v| v as u8);
        Self {
            d: to_f16(d),
            qh: super::pack_high_bits(&q).to_le_bytes(),
            qs: std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + QK5_0 / 2] & 0x0f) << 4)),
        }
    }
}
