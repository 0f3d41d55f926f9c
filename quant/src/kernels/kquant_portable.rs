//! The K-quant kernels on the `wide` crate's vector types (what ARM and x86-64 without AVX2 run). No `unsafe`; every function gives the same bits as its scalar spec
//! in `kquant_scalar.rs`.
//!
//! Each weight super-block is decoded into 16 groups of 16 signed quants (offsets removed) as
//! `i16` lanes, a scale per group and, for the types with mins, a min per group; the integer sums
//! of the spec are then `Σ_g sc_g · (q_g · a_g)` and `Σ_g m_g · bsum_g`, exact in `i32`.

use wide::{i16x16, i32x8, i8x16, u8x16};

use super::kquant_scalar::{
    check_gemm_4, check_kquant, quantize_row_q8_k, superblock, superblock_with_mins,
};
use super::{KQuantKernels, KQuantOps, Q8_K_BYTES, QK_K};
use crate::format::f16_bits_to_f32;

/// The multi-row kernels of one block type.
macro_rules! kquant {
    ($b:ty) => {
        KQuantOps {
            kernels: quant_kernels_by_4!(
                |n, w, a| kquant_x::<$b, 1>(n, [w], a)[0],
                kquant_x::<$b, 4>,
                |n, w, a| a.map(|a| kquant_x::<$b, 4>(n, w, a)),
                (QK_K, <$b as KBlock>::BYTES, Q8_K_BYTES)
            ),
            gemm_4: |n, w, a, out| {
                let arb = check_gemm_4(n, a.len(), out.len());
                for (o, at) in out.chunks_exact_mut(4).zip(a.chunks_exact(arb.max(1))) {
                    o.copy_from_slice(&kquant_x::<$b, 4>(n, w, at));
                }
            },
            gemm_8: None,
        }
    };
}

/// The portable K-quant table.
pub(super) fn kernels() -> KQuantKernels {
    KQuantKernels {
        quantize_row_q8_k,
        q2_k: kquant!(Q2K),
        q3_k: kquant!(Q3K),
        q4_k: kquant!(Q4K),
        q5_k: kquant!(Q5K),
        q6_k: kquant!(Q6K),
    }
}

/// One decoded weight super-block: 16 groups of 16 elements.
struct Decoded {
    /// Quants, offsets removed.
    q: [i16x16; 16],
    /// Scale of each group.
    sc: [i32; 16],
    /// Min of each group (zero for the types without mins).
    m: [i32; 16],
    /// Super-block scale and min scale (0 without mins).
    d: f32,
    dmin: f32,
}

/// A K-quant weight block type.
trait KBlock {
    const BYTES: usize;
    /// Whether the spec's float part has the min term.
    const MINS: bool;
    fn decode(b: &[u8]) -> Decoded;
}

struct Q2K;
struct Q3K;
struct Q4K;
struct Q5K;
struct Q6K;

/// 16 bytes at `b[off..]` as `i16` lanes (0..256).
fn u16x16_at(b: &[u8], off: usize) -> i16x16 {
    let mut v = [0u8; 16];
    v.copy_from_slice(&b[off..off + 16]);
    i16x16::from(u8x16::new(v))
}

fn f16_at(b: &[u8], off: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[off], b[off + 1]]))
}

/// The 8 six-bit scales and mins of Q4_K / Q5_K from the 12 packed bytes at `b[4..16]`: byte `j`
/// of the results is sub-block `j`'s.
fn scales_mins_k4(b: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([b[4 + i], b[5 + i], b[6 + i], b[7 + i]]);
    let (w0, w1, w2) = (word(0), word(4), word(8));
    // Sub-blocks 0..4: low 6 bits of bytes 0..4 (scales) and 4..8 (mins). Sub-blocks 4..8: low
    // 4 bits from bytes 8..12 (scale: low nibble, min: high nibble), top 2 from the top bits of
    // bytes 0..4 (scales) and 4..8 (mins).
    let sc = u64::from(w0 & 0x3f3f_3f3f)
        | u64::from((w2 & 0x0f0f_0f0f) | ((w0 >> 2) & 0x3030_3030)) << 32;
    let m = u64::from(w1 & 0x3f3f_3f3f)
        | u64::from(((w2 >> 4) & 0x0f0f_0f0f) | ((w1 >> 2) & 0x3030_3030)) << 32;
    (sc.to_le_bytes(), m.to_le_bytes())
}

impl KBlock for Q4K {
    const BYTES: usize = 144;
    const MINS: bool = true;
    fn decode(b: &[u8]) -> Decoded {
        let (sc, m) = scales_mins_k4(b);
        let qs = &b[16..];
        Decoded {
            // Group g: sub-block j = g / 2 (nibble j % 2 of qs[32 (j / 2) ..]), half g % 2.
            q: std::array::from_fn(|g| {
                let j = g / 2;
                let v = u16x16_at(qs, 32 * (j / 2) + 16 * (g % 2));
                (v >> (4 * (j % 2) as i32)) & i16x16::splat(0x0f)
            }),
            sc: std::array::from_fn(|g| i32::from(sc[g / 2])),
            m: std::array::from_fn(|g| i32::from(m[g / 2])),
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
        }
    }
}

impl KBlock for Q5K {
    const BYTES: usize = 176;
    const MINS: bool = true;
    fn decode(b: &[u8]) -> Decoded {
        let (sc, m) = scales_mins_k4(b);
        let (qh, qs) = (&b[16..48], &b[48..]);
        Decoded {
            q: std::array::from_fn(|g| {
                let (j, half) = (g / 2, 16 * (g % 2));
                let low = (u16x16_at(qs, 32 * (j / 2) + half) >> (4 * (j % 2) as i32))
                    & i16x16::splat(0x0f);
                let high = ((u16x16_at(qh, half) >> j as i32) & i16x16::splat(1)) << 4;
                low | high
            }),
            sc: std::array::from_fn(|g| i32::from(sc[g / 2])),
            m: std::array::from_fn(|g| i32::from(m[g / 2])),
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
        }
    }
}

impl KBlock for Q6K {
    const BYTES: usize = 210;
    const MINS: bool = false;
    fn decode(b: &[u8]) -> Decoded {
        let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
        Decoded {
            // Group i: element 128h + 32s + l, l = 16 (i % 2) ..
            q: std::array::from_fn(|i| {
                let (h, s, l) = (i / 8, (i % 8) / 2, 16 * (i % 2));
                let low = (u16x16_at(ql, 64 * h + 32 * (s % 2) + l) >> (4 * (s / 2)) as i32)
                    & i16x16::splat(0x0f);
                let high = (u16x16_at(qh, 32 * h + l) >> (2 * s) as i32) & i16x16::splat(3);
                (low | (high << 4)) - i16x16::splat(32)
            }),
            sc: std::array::from_fn(|i| i32::from(scales[i] as i8)),
            m: [0; 16],
            d: f16_at(b, 208),
            dmin: 0.0,
        }
    }
}

impl KBlock for Q2K {
    const BYTES: usize = 84;
    const MINS: bool = true;
    fn decode(b: &[u8]) -> Decoded {
        let (scales, qs) = (&b[..16], &b[16..80]);
        Decoded {
            q: std::array::from_fn(|i| {
                let (h, s) = (i / 8, (i % 8) / 2);
                (u16x16_at(qs, 32 * h + 16 * (i % 2)) >> (2 * s) as i32) & i16x16::splat(3)
            }),
            sc: std::array::from_fn(|i| i32::from(scales[i] & 0x0f)),
            m: std::array::from_fn(|i| i32::from(scales[i] >> 4)),
            d: f16_at(b, 80),
            dmin: f16_at(b, 82),
        }
    }
}

impl KBlock for Q3K {
    const BYTES: usize = 110;
    const MINS: bool = false;
    fn decode(b: &[u8]) -> Decoded {
        let (hmask, qs, sb) = (&b[..32], &b[32..96], &b[96..108]);
        Decoded {
            q: std::array::from_fn(|i| {
                let (h, s, l) = (i / 8, (i % 8) / 2, 16 * (i % 2));
                let low = (u16x16_at(qs, 32 * h + l) >> (2 * s) as i32) & i16x16::splat(3);
                let high = (u16x16_at(hmask, l) >> (4 * h + s) as i32) & i16x16::splat(1);
                // high set: low; clear: low - 4.
                low + (high << 2) - i16x16::splat(4)
            }),
            sc: std::array::from_fn(|i| {
                let low = if i < 8 { sb[i] & 0x0f } else { sb[i - 8] >> 4 };
                let high = (sb[8 + i % 4] >> (2 * (i / 4))) & 3;
                i32::from(low | (high << 4)) - 32
            }),
            m: [0; 16],
            d: f16_at(b, 108),
            dmin: 0.0,
        }
    }
}

/// `R` weight rows against one Q8_K activation row.
fn kquant_x<B: KBlock, const R: usize>(n: usize, w: [&[u8]; R], a: &[u8]) -> [f32; R] {
    for wr in w {
        check_kquant(n, wr.len(), B::BYTES, a.len());
    }
    let mut sum = [0.0f32; R];
    for (b, ab) in a.chunks_exact(Q8_K_BYTES).enumerate() {
        let da = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let aq: [i16x16; 16] = std::array::from_fn(|g| {
            let mut v = [0i8; 16];
            for (d, &s) in v.iter_mut().zip(&ab[4 + 16 * g..4 + 16 * g + 16]) {
                *d = s as i8;
            }
            i16x16::from(i8x16::new(v))
        });
        let bsum = |g: usize| i32::from(i16::from_le_bytes([ab[260 + 2 * g], ab[261 + 2 * g]]));
        for (s, wr) in sum.iter_mut().zip(w) {
            let dec = B::decode(&wr[b * B::BYTES..(b + 1) * B::BYTES]);
            let mut acc = i32x8::ZERO;
            for ((q, a), &sc) in dec.q.iter().zip(&aq).zip(&dec.sc) {
                acc += q.dot(*a) * i32x8::splat(sc);
            }
            let isum = acc.reduce_add();
            *s += if B::MINS {
                let msum: i32 = (0..16).map(|g| dec.m[g] * bsum(g)).sum();
                superblock_with_mins(dec.d, dec.dmin, da, isum, msum)
            } else {
                superblock(dec.d, da, isum)
            };
        }
    }
    sum
}
