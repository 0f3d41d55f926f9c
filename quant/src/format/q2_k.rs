//! Q2_K: a super-block of 256 elements in 16 sub-blocks of 16, each with a 4-bit scale and a
//! 4-bit min; value = d * sc * q - dmin * m, q in 0..4.
//!
//! Layout: the 2-bit quants of elements `128*h + 32*s + l` (h 0..2, s 0..4, l 0..32) are bits
//! `2s..2s+2` of `qs[32*h + l]`; `scales[i]` holds sub-block `i`'s scale (low nibble) and min
//! (high nibble).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_qkx_quants, make_qp_quants, sum_squares, to_f16, Grid};
use super::q4_k::WEIGHTED_GRID;
use super::q8_k::nearest_int;
use super::{f16_to_f32, Block, QuantizeBlock, QuantizeWeighted};
use crate::{GgmlType, QK_K};

/// One Q2_K block (84 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Per sub-block of 16: scale (low nibble) and min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
}

const _: () = assert!(size_of::<BlockQ2K>() == 84);

impl Block<QK_K> for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        let d = f16_to_f32(self.d);
        let dmin = f16_to_f32(self.dmin);
        for (i, chunk) in out.chunks_exact_mut(16).enumerate() {
            let sc = self.scales[i];
            let dl = d * f32::from(sc & 0x0f);
            let ml = dmin * f32::from(sc >> 4);
            let (h, s) = (i / 8, (i % 8) / 2);
            let base = 32 * h + 16 * (i % 2);
            for (l, o) in chunk.iter_mut().enumerate() {
                let q = (self.qs[base + l] >> (2 * s)) & 3;
                *o = dl * f32::from(q) - ml;
            }
        }
    }
}

/// Q2_K's reference search grid: 16 trial scales, weighted absolute error.
const REF_GRID_Q2K: Grid = Grid {
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: true,
};

impl QuantizeBlock<QK_K> for BlockQ2K {
    /// llama.cpp's `quantize_row_q2_K_ref`.
    fn quantize(x: &[f32; QK_K]) -> Self {
        let mut l = [0u8; QK_K];
        let mut aux = [0u8; 16];
        let mut weights = [0f32; 16];
        let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx_quants(3, xs, &weights, &mut l[16 * j..], &mut aux, REF_GRID_Q2K);
            (scales[j], mins[j]) = (s, m);
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let mut b = Self::zeroed();
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for (s, &v) in b.scales.iter_mut().zip(&scales) {
                *s = nearest_int(iscale * v) as u8;
            }
            b.d = to_f16(max_scale / 15.0);
        }
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for (s, &v) in b.scales.iter_mut().zip(&mins) {
                *s |= (nearest_int(iscale * v) << 4) as u8;
            }
            b.dmin = to_f16(max_min / 15.0);
        }
        b.requantize_and_pack(x, &mut l);
        b
    }
}

impl QuantizeWeighted<QK_K> for BlockQ2K {
    /// llama.cpp's `quantize_q2_K` with an importance matrix (`quantize_row_q2_K_impl`).
    fn quantize_weighted(x: &[f32; QK_K], qw: &[f32; QK_K], _row_sigma2: f32) -> Self {
        let mut l = [0u8; QK_K];
        let mut aux = [0u8; 16];
        let mut weight = [0f32; 16];
        let (mut scales, mut mins, mut sw) = ([0f32; 16], [0f32; 16], [0f32; 16]);
        let sigma2 = sum_squares(x) / QK_K as f32;
        for j in 0..QK_K / 16 {
            let r = 16 * j..16 * j + 16;
            importance(&qw[r.clone()], &x[r.clone()], sigma2, &mut weight);
            sw[j] = weight.iter().fold(0f32, |s, &w| s + w);
            (scales[j], mins[j]) =
                make_qkx_quants(3, &x[r], &weight, &mut l[16 * j..], &mut aux, WEIGHTED_GRID);
        }
        let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
        let dm = make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = make_qp_quants(15, &mins, &mut lm, &sw);
        let mut b = Self::zeroed();
        b.d = to_f16(dm);
        b.dmin = to_f16(mm);
        for j in 0..QK_K / 16 {
            b.scales[j] = ls[j] | (lm[j] << 4);
        }
        b.requantize_and_pack(x, &mut l);
        b
    }
}

impl BlockQ2K {
    /// Re-quantizes every sub-block with a non-zero stored scale (`L = clamp(round((x + dmin·m)
    /// / (d·sc)), 0, 3)`), then packs four 2-bit quants per byte.
    fn requantize_and_pack(&mut self, x: &[f32; QK_K], l: &mut [u8; QK_K]) {
        let (d_all, dmin_all) = (f16_to_f32(self.d), f16_to_f32(self.dmin));
        for j in 0..QK_K / 16 {
            let d = d_all * f32::from(self.scales[j] & 0x0f);
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * f32::from(self.scales[j] >> 4);
            for ii in 0..16 {
                let q = nearest_int((x[16 * j + ii] + dm) / d);
                l[16 * j + ii] = q.clamp(0, 3) as u8;
            }
        }
        for h in 0..QK_K / 128 {
            for k in 0..32 {
                let q = |s: usize| l[128 * h + 32 * s + k];
                self.qs[32 * h + k] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
    }
}
