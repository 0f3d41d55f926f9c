//! Q3_K: a super-block of 256 elements in 16 sub-blocks of 16 with 6-bit signed scales;
//! value = d * (sc - 32) * q, q in -4..4.
//!
//! Layout: element `128*h + 32*s + l` (h 0..2, s 0..4, l 0..32) has its low 2 bits at bits
//! `2s..2s+2` of `qs[32*h + l]` and its "high" bit at bit `4h + s` of `hmask[l]`; the quant is
//! `low - 4` when that bit is clear, `low` when set. Scale `i` (0..16): low 4 bits are the low
//! (i < 8) or high (i >= 8) nibble of `scales[i % 8]`, high 2 bits are bits `2*(i/4)..` of
//! `scales[8 + i % 4]`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_q3_quants, make_qx_quants, sum_squares, to_f16};
use super::q8_k::nearest_int;
use super::{f16_to_f32, Block, QuantizeBlock, QuantizeWeighted};
use crate::{GgmlType, QK_K};

/// One Q3_K block (110 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bit of each quant (set = no -4 offset).
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of each quant.
    pub qs: [u8; QK_K / 4],
    /// 16 packed 6-bit scales.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}

const _: () = assert!(size_of::<BlockQ3K>() == 110);

impl BlockQ3K {
    /// The 16 sub-block scales, unpacked and re-centred (-32..32).
    pub fn unpacked_scales(&self) -> [i8; 16] {
        std::array::from_fn(|i| {
            let low = if i < 8 {
                self.scales[i] & 0x0f
            } else {
                self.scales[i - 8] >> 4
            };
            let high = (self.scales[8 + i % 4] >> (2 * (i / 4))) & 3;
            (low | (high << 4)) as i8 - 32
        })
    }
}

impl Block<QK_K> for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        let d = f16_to_f32(self.d);
        let scales = self.unpacked_scales();
        for (i, chunk) in out.chunks_exact_mut(16).enumerate() {
            let dl = d * f32::from(scales[i]);
            let (h, s) = (i / 8, (i % 8) / 2);
            let half = 16 * (i % 2);
            for (k, o) in chunk.iter_mut().enumerate() {
                let l = half + k;
                let low = ((self.qs[32 * h + l] >> (2 * s)) & 3) as i8;
                let high_set = (self.hmask[l] >> (4 * h + s)) & 1 != 0;
                let q = if high_set { low } else { low - 4 };
                *o = dl * f32::from(q);
            }
        }
    }
}

impl QuantizeBlock<QK_K> for BlockQ3K {
    /// llama.cpp's `quantize_row_q3_K_ref`.
    fn quantize(x: &[f32; QK_K]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0f32, 0f32);
        for (j, s) in scales.iter_mut().enumerate() {
            let r = 16 * j..16 * j + 16;
            *s = make_q3_quants(4, &x[r.clone()], &mut l[r]);
            if s.abs() > amax {
                amax = s.abs();
                max_scale = *s;
            }
        }
        let mut b = Self::zeroed();
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            let ls: [i32; 16] = std::array::from_fn(|j| {
                let l = nearest_int(iscale * scales[j]) as i8;
                i32::from(l).clamp(-32, 31) + 32
            });
            b.scales = pack_scales(&ls);
            b.d = to_f16(1.0 / iscale);
        }
        b.requantize_and_pack(x, &mut l);
        b
    }
}

impl QuantizeWeighted<QK_K> for BlockQ3K {
    /// llama.cpp's `quantize_q3_K` with an importance matrix (`quantize_row_q3_K_impl`).
    fn quantize_weighted(x: &[f32; QK_K], qw: &[f32; QK_K], _row_sigma2: f32) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut sw = [0f32; QK_K / 16];
        let mut weight = [0f32; 16];
        let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
        for j in 0..QK_K / 16 {
            let r = 16 * j..16 * j + 16;
            importance(&qw[r.clone()], &x[r.clone()], sigma2, &mut weight);
            sw[j] = weight.iter().fold(0f32, |s, &w| s + w);
            scales[j] = make_qx_quants(4, &x[r.clone()], &mut l[r], Some(&weight));
        }
        let mut ls = [0i8; QK_K / 16];
        let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
        let mut b = Self::zeroed();
        b.scales = pack_scales(&ls.map(i32::from));
        b.d = to_f16(d_block);
        b.requantize_and_pack(x, &mut l);
        b
    }
}

/// Packs 16 six-bit scales (0..64): low nibbles in bytes 0..8, high 2 bits in bytes 8..12.
fn pack_scales(ls: &[i32; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            s[j] = (l & 0x0f) as u8;
        } else {
            s[j - 8] |= ((l & 0x0f) << 4) as u8;
        }
        s[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
    }
    s
}

impl BlockQ3K {
    /// Re-quantizes every sub-block with a non-zero stored scale (`L = clamp(round(x / (d·sc)),
    /// -4, 3) + 4`), then splits `L` into `hmask` (bit 2) and `qs` (bits 0..2).
    fn requantize_and_pack(&mut self, x: &[f32; QK_K], l: &mut [i8; QK_K]) {
        let d_all = f16_to_f32(self.d);
        for (j, &sc) in self.unpacked_scales().iter().enumerate() {
            let d = d_all * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }
        self.hmask = [0; QK_K / 8];
        for (j, lj) in l.iter_mut().enumerate() {
            if *lj > 3 {
                self.hmask[j % 32] |= 1 << (j / 32);
                *lj -= 4;
            }
        }
        for h in 0..QK_K / 128 {
            for k in 0..32 {
                let q = |s: usize| l[128 * h + 32 * s + k] as u8;
                self.qs[32 * h + k] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
    }
}
