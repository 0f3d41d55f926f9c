//! Q5_K: as Q4_K with a fifth bit per quant; value = d * sc * q - dmin * m, q in 0..32.
//!
//! Layout: sub-block `j` (0..8) element `l` (0..32) has its low 4 bits as in Q4_K and bit 4 at
//! bit `j` of `qh[l]`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::q4_k::{get_scale_min, K_SCALE_SIZE};
use super::{f16_to_f32, Block};
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
