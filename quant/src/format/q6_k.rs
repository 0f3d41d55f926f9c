//! Q6_K: a super-block of 256 elements in 16 sub-blocks of 16 with i8 scales;
//! value = (d * sc) * (q - 32), q in 0..64.
//!
//! Layout: element `128*h + 32*s + l` (h 0..2, s 0..4, l 0..32) has its low 4 bits in nibble
//! `s / 2` of `ql[64*h + 32*(s % 2) + l]` and its high 2 bits at bits `2s..2s+2` of `qh[32*h + l]`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{make_qx_quants, to_f16, GROUP_MAX_EPS};
use super::q8_k::nearest_int;
use super::{f16_to_f32, Block, QuantizeBlock, QuantizeWeighted};
use crate::{GgmlType, QK_K};

/// One Q6_K block (210 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits of each quant.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of each quant.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

const _: () = assert!(size_of::<BlockQ6K>() == 210);

impl Block<QK_K> for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        let d = f16_to_f32(self.d);
        for (i, chunk) in out.chunks_exact_mut(16).enumerate() {
            // (d * sc) first, then * q: the order of the reference and the gguf package.
            let dl = d * f32::from(self.scales[i]);
            let (h, s) = (i / 8, (i % 8) / 2);
            let half = 16 * (i % 2);
            for (k, o) in chunk.iter_mut().enumerate() {
                let l = half + k;
                let low = (self.ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0f;
                let high = (self.qh[32 * h + l] >> (2 * s)) & 3;
                let q = (low | (high << 4)) as i8 - 32;
                *o = dl * f32::from(q);
            }
        }
    }
}

impl QuantizeBlock<QK_K> for BlockQ6K {
    /// llama.cpp's `quantize_row_q6_K_ref`.
    fn quantize(x: &[f32; QK_K]) -> Self {
        Self::quantize_with(x, None)
    }
}

impl QuantizeWeighted<QK_K> for BlockQ6K {
    /// llama.cpp's `quantize_q6_K` with an importance matrix: the importance itself weighs the
    /// sub-block fits (no `sigma2` term, unlike the other K-quants).
    fn quantize_weighted(x: &[f32; QK_K], qw: &[f32; QK_K], _row_sigma2: f32) -> Self {
        Self::quantize_with(x, Some(qw))
    }
}

impl BlockQ6K {
    /// Each sub-block of 16 fitted by [`make_qx_quants`] (weights `qw`, or `x²`); the 16 scales
    /// stored as i8 against the one of largest magnitude, then every value re-quantized.
    fn quantize_with(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for (ib, s) in scales.iter_mut().enumerate() {
            let r = 16 * ib..16 * ib + 16;
            let w = qw.map(|w| &w[r.clone()]);
            let scale = make_qx_quants(32, &x[r.clone()], &mut l[r], w);
            *s = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return Self::zeroed();
        }
        let iscale = -128.0 / max_scale;
        let d = to_f16(1.0 / iscale);
        let sc: [i8; QK_K / 16] =
            std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
        let d_all = f16_to_f32(d);
        for j in 0..QK_K / 16 {
            let dj = d_all * f32::from(sc[j]);
            if dj == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        let (mut ql, mut qh) = ([0u8; QK_K / 2], [0u8; QK_K / 4]);
        for h in 0..QK_K / 128 {
            for k in 0..32 {
                let q = |s: usize| l[128 * h + 32 * s + k] as u8;
                ql[64 * h + k] = (q(0) & 0x0f) | ((q(2) & 0x0f) << 4);
                ql[64 * h + k + 32] = (q(1) & 0x0f) | ((q(3) & 0x0f) << 4);
                qh[32 * h + k] =
                    (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
        Self {
            ql,
            qh,
            scales: sc,
            d,
        }
    }
}
