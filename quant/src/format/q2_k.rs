//! Q2_K: a super-block of 256 elements in 16 sub-blocks of 16, each with a 4-bit scale and a
//! 4-bit min; value = d * sc * q - dmin * m, q in 0..4.
//!
//! Layout: the 2-bit quants of elements `128*h + 32*s + l` (h 0..2, s 0..4, l 0..32) are bits
//! `2s..2s+2` of `qs[32*h + l]`; `scales[i]` holds sub-block `i`'s scale (low nibble) and min
//! (high nibble).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{f16_to_f32, Block};
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
