//! Q5_K: as Q4_K with a fifth bit per quant; value = d * sc * q - dmin * m, q in 0..32.
//!
//! Layout: sub-block `j` (0..8) element `l` (0..32) has its low 4 bits as in Q4_K and bit 4 at
//! bit `j` of `qh[l]`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_search::Grid;
use super::q4_k::{get_scale_min, ScaleMinQuants, K_SCALE_SIZE};
use super::{f16_to_f32, Block, QuantizeBlock, QuantizeWeighted};
use crate::{GgmlType, QK_K};

/// One Q5_K block (176 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each (as Q4_K).
    pub scales: [u8; K_SCALE_SIZE],
    /// Bit 4 of each quant.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits of each quant.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(size_of::<BlockQ5K>() == 176);

impl Block<QK_K> for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        let d = f16_to_f32(self.d);
        let dmin = f16_to_f32(self.dmin);
        for (j, chunk) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = get_scale_min(j, &self.scales);
            let dl = d * f32::from(sc);
            let ml = dmin * f32::from(m);
            let (c, shift) = (j / 2, 4 * (j % 2));
            for (l, o) in chunk.iter_mut().enumerate() {
                let low = (self.qs[32 * c + l] >> shift) & 0x0f;
                let high = (self.qh[l] >> j) & 1;
                *o = dl * f32::from(low | (high << 4)) - ml;
            }
        }
    }
}

impl QuantizeBlock<QK_K> for BlockQ5K {
    /// llama.cpp's `quantize_row_q5_K_ref`.
    fn quantize(x: &[f32; QK_K]) -> Self {
        Self::pack(ScaleMinQuants::reference(x, 31, REF_GRID_Q5K))
    }
}

impl QuantizeWeighted<QK_K> for BlockQ5K {
    /// llama.cpp's `quantize_q5_K` with an importance matrix (`quantize_row_q5_K_impl`).
    fn quantize_weighted(x: &[f32; QK_K], qw: &[f32; QK_K], _row_sigma2: f32) -> Self {
        Self::pack(ScaleMinQuants::weighted(x, qw, 31, true))
    }
}

/// Q5_K's reference search grid: 16 trial scales (`rmin` -0.5, step 0.1).
const REF_GRID_Q5K: Grid = Grid {
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: false,
};

impl BlockQ5K {
    /// Splits quants `L` (0..32) into low nibbles (as Q4_K) and the fifth bit in `qh`.
    fn pack(q: ScaleMinQuants) -> Self {
        let mut qh = [0u8; QK_K / 8];
        let mut qs = [0u8; QK_K / 2];
        for c in 0..QK_K / 64 {
            for l in 0..32 {
                let (lo, hi) = (q.l[64 * c + l], q.l[64 * c + l + 32]);
                qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
                qs[32 * c + l] = (lo & 0x0f) | ((hi & 0x0f) << 4);
            }
        }
        Self {
            d: q.d,
            dmin: q.dmin,
            scales: q.scales,
            qh,
            qs,
        }
    }
}
