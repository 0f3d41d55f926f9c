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

use super::{f16_to_f32, Block};
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
