//! Q4_K: a super-block of 256 elements in 8 sub-blocks of 32, each with a 6-bit scale and a
//! 6-bit min; value = d * sc * q - dmin * m, q in 0..16.
//!
//! Layout: sub-block `2c + n` (c 0..4, n 0..2) element `l` is nibble `n` (0 = low) of
//! `qs[32c + l]`. The 12 `scales` bytes pack 8 scales and 8 mins ([`get_scale_min`]).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::{importance, make_qkx_quants, make_qp_quants, sum_squares, to_f16, Grid};
use super::q8_k::nearest_int;
use super::{f16_to_f32, Block, QuantizeBlock, QuantizeWeighted};
use crate::{GgmlType, QK_K};

/// Bytes of packed scales and mins in Q4_K / Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// One Q4_K block (144 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes (shared by Q4_K and Q5_K).
///
/// Bytes 0..4 hold scales 0..4 (low 6 bits), 4..8 mins 0..4; for `j >= 4` the low 4 bits come
/// from byte `8 + j - 4` (scale: low nibble, min: high nibble) and the top 2 bits from the top
/// bits of bytes `j - 4` (scale) and `j` (min).
#[inline]
pub fn get_scale_min(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 0x3f, q[j + 4] & 0x3f)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

impl Block<QK_K> for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        let d = f16_to_f32(self.d);
        let dmin = f16_to_f32(self.dmin);
        for (j, chunk) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = get_scale_min(j, &self.scales);
            let dl = d * f32::from(sc);
            let ml = dmin * f32::from(m);
            let (c, shift) = (j / 2, 4 * (j % 2));
            for (l, o) in chunk.iter_mut().enumerate() {
                let q = (self.qs[32 * c + l] >> shift) & 0x0f;
                *o = dl * f32::from(q) - ml;
            }
        }
    }
}

impl QuantizeBlock<QK_K> for BlockQ4K {
    /// llama.cpp's `quantize_row_q4_K_ref`.
    fn quantize(x: &[f32; QK_K]) -> Self {
        let r = ScaleMinQuants::reference(x, 15, REF_GRID_Q4K);
        Self {
            d: r.d,
            dmin: r.dmin,
            scales: r.scales,
            qs: pack_nibbles(&r.l),
        }
    }
}

impl QuantizeWeighted<QK_K> for BlockQ4K {
    /// llama.cpp's `quantize_q4_K` with an importance matrix (`quantize_row_q4_K_impl`).
    fn quantize_weighted(x: &[f32; QK_K], qw: &[f32; QK_K], _row_sigma2: f32) -> Self {
        let r = ScaleMinQuants::weighted(x, qw, 15, false);
        Self {
            d: r.d,
            dmin: r.dmin,
            scales: r.scales,
            qs: pack_nibbles(&r.l),
        }
    }
}

/// Q4_K's reference search grid: 21 trial scales (`rmin` -1, step 0.1).
const REF_GRID_Q4K: Grid = Grid {
    rmin: -1.0,
    rdelta: 0.1,
    nstep: 20,
    use_mad: false,
};

/// The search grid of the weighted Q4_K / Q5_K (and Q2_K, Q4_1, Q5_1): 37 trial scales.
pub(crate) const WEIGHTED_GRID: Grid = Grid {
    rmin: -0.9,
    rdelta: 0.05,
    nstep: 36,
    use_mad: false,
};

/// Sub-block `2c + n` element `l` in nibble `n` of `qs[32c + l]` (`L` in 0..16).
fn pack_nibbles(l: &[u8; QK_K]) -> [u8; QK_K / 2] {
    std::array::from_fn(|i| {
        let (c, l0) = (i / 32, i % 32);
        l[64 * c + l0] | (l[64 * c + l0 + 32] << 4)
    })
}

/// What Q4_K and Q5_K share: the super-block scales, the 12 packed bytes of 6-bit sub-block
/// scales and mins, and the quants `L` (0..=nmax) of the 256 values.
pub(crate) struct ScaleMinQuants {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub l: [u8; QK_K],
}

impl ScaleMinQuants {
    /// The reference quantizers: each sub-block of 32 searched on `grid` with weights
    /// `rms(sub-block) + |x|`; the scales and mins then quantized to 6 bits against their maxima.
    pub(crate) fn reference(x: &[f32; QK_K], nmax: i32, grid: Grid) -> Self {
        let mut l = [0u8; QK_K];
        let mut aux = [0u8; 32];
        let mut weights = [0f32; 32];
        let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..QK_K / 32 {
            let xs = &x[32 * j..32 * j + 32];
            let av_x = (sum_squares(xs) / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (s, m) = make_qkx_quants(nmax, xs, &weights, &mut l[32 * j..], &mut aux, grid);
            (scales[j], mins[j]) = (s, m);
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let ls: [u8; 8] =
            std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
        let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
        let mut q = Self {
            d: to_f16(max_scale / 63.0),
            dmin: to_f16(max_min / 63.0),
            scales: pack_scale_min(&ls, &lm),
            l,
        };
        q.requantize(x, nmax);
        q
    }

    /// The weighted quantizers (`quantize_row_q{4,5}_K_impl`): weights `qw · sqrt(sigma2 + x²)`,
    /// each sub-block searched on [`WEIGHTED_GRID`], the scales and mins fitted by
    /// [`make_qp_quants`]. `clamp_scales`: Q5_K caps the 6-bit values at 63, Q4_K does not.
    pub(crate) fn weighted(
        x: &[f32; QK_K],
        qw: &[f32; QK_K],
        nmax: i32,
        clamp_scales: bool,
    ) -> Self {
        let mut l = [0u8; QK_K];
        let mut aux = [0u8; 32];
        let mut weights = [0f32; 32];
        let (mut scales, mut mins, mut sw) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
        for j in 0..QK_K / 32 {
            let (xs, ws) = (&x[32 * j..32 * j + 32], &qw[32 * j..32 * j + 32]);
            importance(ws, xs, sigma2, &mut weights);
            sw[j] = weights.iter().fold(0f32, |s, &w| s + w);
            (scales[j], mins[j]) = make_qkx_quants(
                nmax,
                xs,
                &weights,
                &mut l[32 * j..],
                &mut aux,
                WEIGHTED_GRID,
            );
        }
        let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
        let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
        let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
        if clamp_scales {
            for v in ls.iter_mut().chain(lm.iter_mut()) {
                *v = (*v).min(63);
            }
        }
        let mut q = Self {
            d: to_f16(d_block),
            dmin: to_f16(m_block),
            scales: pack_scale_min(&ls, &lm),
            l,
        };
        q.requantize(x, nmax);
        q
    }

    /// Final pass: every sub-block with a non-zero scale re-quantized against the stored (f16,
    /// 6-bit) scale and min; `L = clamp(round((x + dmin·m) / (d·sc)), 0, nmax)`.
    fn requantize(&mut self, x: &[f32; QK_K], nmax: i32) {
        let (d_all, dmin_all) = (f16_to_f32(self.d), f16_to_f32(self.dmin));
        for j in 0..QK_K / 32 {
            let (sc, m) = get_scale_min(j, &self.scales);
            let d = d_all * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * f32::from(m);
            for ii in 0..32 {
                let l = nearest_int((x[32 * j + ii] + dm) / d);
                self.l[32 * j + ii] = l.clamp(0, nmax) as u8;
            }
        }
    }
}

/// Packs 8 six-bit scales and mins into 12 bytes (the inverse of [`get_scale_min`]). Values
/// above 63 lose their high bits as llama.cpp's packing loses them.
pub(crate) fn pack_scale_min(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}
