//! Q4_K: a super-block of 256 elements in 8 sub-blocks of 32, each with a 6-bit scale and a
//! 6-bit min; value = d * sc * q - dmin * m, q in 0..16.
//!
//! Layout: sub-block `2c + n` (c 0..4, n 0..2) element `l` is nibble `n` (0 = low) of
//! `qs[32c + l]`. The 12 `scales` bytes pack 8 scales and 8 mins ([`get_scale_min`]).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{f16_to_f32, Block};
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
