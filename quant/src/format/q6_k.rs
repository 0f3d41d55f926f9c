//! Q6_K: a super-block of 256 elements in 16 sub-blocks of 16 with i8 scales;
//! value = (d * sc) * (q - 32), q in 0..64.
//!
//! Layout: element `128*h + 32*s + l` (h 0..2, s 0..4, l 0..32) has its low 4 bits in nibble
//! `s / 2` of `ql[64*h + 32*(s % 2) + l]` and its high 2 bits at bits `2s..2s+2` of `qh[32*h + l]`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{f16_to_f32, Block};
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
