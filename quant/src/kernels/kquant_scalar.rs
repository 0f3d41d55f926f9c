//! The K-quant kernels in plain Rust: the spec every SIMD K-quant kernel is tested against.
//!
//! Each dot product follows the reduction order of [`super`]'s module docs: per 256-element
//! super-block the exact integer sums `isum = Σ_j sc_j · Σ_l q_l·a_l` and (with mins)
//! `msum = Σ_j m_j · Σ_l a_l`, then
//! `sum = sum + ((d_w * d_a) * isum as f32 - (dmin_w * d_a) * msum as f32)` (without mins:
//! `sum = sum + (d_w * d_a) * isum as f32`), super-block by super-block, from `0.0`.
//!
//! The weight blocks are read through the block structs of [`crate::format`], so the sub-block
//! layouts here are the formats' own.

use super::{KQuantKernels, KQuantOps, Q8_K_BYTES, QK_K};
use crate::format::q4_k::get_scale_min;
use crate::format::{f16_to_f32, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use crate::format::{Block, QuantizeBlock};

/// The multi-row kernels of one type as one scalar dot per output.
macro_rules! rowwise {
    ($dot:path, $bytes:expr) => {
        KQuantOps {
            kernels: rowwise_kernels!($dot, (QK_K, $bytes, Q8_K_BYTES)),
            gemm_4: |n, w, a, out| {
                let arb = check_gemm_4(n, a.len(), out.len());
                for (o, at) in out.chunks_exact_mut(4).zip(a.chunks_exact(arb.max(1))) {
                    for (o, w) in o.iter_mut().zip(w) {
                        *o = $dot(n, w, at);
                    }
                }
            },
            gemm_8: None,
        }
    };
}

/// The scalar K-quant table.
pub(super) fn kernels() -> KQuantKernels {
    KQuantKernels {
        quantize_row_q8_k,
        q2_k: rowwise!(vec_dot_q2_k_q8_k, 84),
        q3_k: rowwise!(vec_dot_q3_k_q8_k, 110),
        q4_k: rowwise!(vec_dot_q4_k_q8_k, 144),
        q5_k: rowwise!(vec_dot_q5_k_q8_k, 176),
        q6_k: rowwise!(vec_dot_q6_k_q8_k, 210),
    }
}

/// Quantizes `x` (a whole number of 256-element blocks) into Q8_K blocks: the block format's
/// reference quantizer (llama.cpp's `quantize_row_q8_K_ref`), one block at a time.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [u8]) {
    assert_eq!(x.len() % QK_K, 0, "quantize_row_q8_k: not whole blocks");
    assert_eq!(
        out.len(),
        x.len() / QK_K * Q8_K_BYTES,
        "quantize_row_q8_k: output size"
    );
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8_K_BYTES)) {
        let mut block = [0.0f32; QK_K];
        block.copy_from_slice(xb);
        ob.copy_from_slice(bytemuck::bytes_of(&BlockQ8K::quantize(&block)));
    }
}

/// Panics unless `w_len` and `a_len` hold the super-blocks of `n` elements (a caller bug).
pub(super) fn check_kquant(n: usize, w_len: usize, w_block: usize, a_len: usize) {
    assert_eq!(n % QK_K, 0, "K-quant dot: {n} is not whole super-blocks");
    assert_eq!(w_len, n / QK_K * w_block, "K-quant dot: weight row size");
    assert_eq!(
        a_len,
        n / QK_K * Q8_K_BYTES,
        "K-quant dot: activation row size"
    );
}

/// Panics unless `a_len` bytes hold the `out_len / 4` activation rows of `n` elements that a
/// `gemm_4` call writes `out_len` outputs for (a caller bug); returns the bytes of one row.
pub(super) fn check_gemm_4(n: usize, a_len: usize, out_len: usize) -> usize {
    assert_eq!(n % QK_K, 0, "K-quant gemm: {n} is not whole super-blocks");
    assert_eq!(out_len % 4, 0, "K-quant gemm: output is not [n_tok][4]");
    let arb = n / QK_K * Q8_K_BYTES;
    assert_eq!(
        a_len,
        out_len / 4 * arb,
        "K-quant gemm: activation rows size"
    );
    arb
}

/// The float part of the spec for one super-block with mins.
#[inline]
pub(super) fn superblock_with_mins(d: f32, dmin: f32, da: f32, isum: i32, msum: i32) -> f32 {
    (d * da) * isum as f32 - (dmin * da) * msum as f32
}

/// The float part of the spec for one super-block without mins.
#[inline]
pub(super) fn superblock(d: f32, da: f32, isum: i32) -> f32 {
    (d * da) * isum as f32
}

/// The weight row's blocks (copied out: rows need not be aligned) zipped with the activations'.
fn blocks<'a, B: Block<QK_K>>(
    w: &'a [u8],
    a: &'a [u8],
) -> impl Iterator<Item = (B, BlockQ8K)> + 'a {
    w.chunks_exact(size_of::<B>())
        .zip(a.chunks_exact(Q8_K_BYTES))
        .map(|(wb, ab)| {
            (
                bytemuck::pod_read_unaligned::<B>(wb),
                bytemuck::pod_read_unaligned::<BlockQ8K>(ab),
            )
        })
}

/// `Σ_l q_l · a_l` over a sub-block.
fn idot(q: impl Iterator<Item = i32>, a: &[i8]) -> i32 {
    q.zip(a).map(|(q, &a)| q * i32::from(a)).sum()
}

/// The sum of the activation quants `16g .. 16g + 16 · k` from the block's `bsums`.
fn bsum(a: &BlockQ8K, g: usize, k: usize) -> i32 {
    a.bsums[g..g + k].iter().map(|&s| i32::from(s)).sum()
}

/// `Σ w·a` over `n` elements of a Q4_K row and a Q8_K row.
pub fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_kquant(n, w.len(), size_of::<BlockQ4K>(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in blocks::<BlockQ4K>(w, a) {
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..QK_K / 32 {
            let (sc, m) = get_scale_min(j, &wb.scales);
            let (c, shift) = (j / 2, 4 * (j % 2));
            let q = wb.qs[32 * c..32 * c + 32]
                .iter()
                .map(|&b| i32::from((b >> shift) & 0x0f));
            isum += i32::from(sc) * idot(q, &ab.qs[32 * j..32 * j + 32]);
            msum += i32::from(m) * bsum(&ab, 2 * j, 2);
        }
        sum += superblock_with_mins(f16_to_f32(wb.d), f16_to_f32(wb.dmin), ab.d, isum, msum);
    }
    sum
}

/// `Σ w·a` over `n` elements of a Q5_K row and a Q8_K row.
pub fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_kquant(n, w.len(), size_of::<BlockQ5K>(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in blocks::<BlockQ5K>(w, a) {
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..QK_K / 32 {
            let (sc, m) = get_scale_min(j, &wb.scales);
            let (c, shift) = (j / 2, 4 * (j % 2));
            let q = (0..32).map(|l| {
                let low = (wb.qs[32 * c + l] >> shift) & 0x0f;
                let high = (wb.qh[l] >> j) & 1;
                i32::from(low | (high << 4))
            });
            isum += i32::from(sc) * idot(q, &ab.qs[32 * j..32 * j + 32]);
            msum += i32::from(m) * bsum(&ab, 2 * j, 2);
        }
        sum += superblock_with_mins(f16_to_f32(wb.d), f16_to_f32(wb.dmin), ab.d, isum, msum);
    }
    sum
}

/// `Σ w·a` over `n` elements of a Q6_K row and a Q8_K row.
pub fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_kquant(n, w.len(), size_of::<BlockQ6K>(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in blocks::<BlockQ6K>(w, a) {
        let mut isum = 0i32;
        // Sub-block i (16 elements): element 128h + 32s + l with l = 16 (i % 2) + k.
        for i in 0..QK_K / 16 {
            let (h, s) = (i / 8, (i % 8) / 2);
            let q = (16 * (i % 2)..16 * (i % 2) + 16).map(|l| {
                let low = (wb.ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0f;
                let high = (wb.qh[32 * h + l] >> (2 * s)) & 3;
                i32::from(low | (high << 4)) - 32
            });
            isum += i32::from(wb.scales[i]) * idot(q, &ab.qs[16 * i..16 * i + 16]);
        }
        sum += superblock(f16_to_f32(wb.d), ab.d, isum);
    }
    sum
}

/// `Σ w·a` over `n` elements of a Q2_K row and a Q8_K row.
pub fn vec_dot_q2_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_kquant(n, w.len(), size_of::<BlockQ2K>(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in blocks::<BlockQ2K>(w, a) {
        let (mut isum, mut msum) = (0i32, 0i32);
        for i in 0..QK_K / 16 {
            let (sc, m) = (wb.scales[i] & 0x0f, wb.scales[i] >> 4);
            let (h, s) = (i / 8, (i % 8) / 2);
            let base = 32 * h + 16 * (i % 2);
            let q = wb.qs[base..base + 16]
                .iter()
                .map(|&b| i32::from((b >> (2 * s)) & 3));
            isum += i32::from(sc) * idot(q, &ab.qs[16 * i..16 * i + 16]);
            msum += i32::from(m) * bsum(&ab, i, 1);
        }
        sum += superblock_with_mins(f16_to_f32(wb.d), f16_to_f32(wb.dmin), ab.d, isum, msum);
    }
    sum
}

/// `Σ w·a` over `n` elements of a Q3_K row and a Q8_K row.
pub fn vec_dot_q3_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_kquant(n, w.len(), size_of::<BlockQ3K>(), a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in blocks::<BlockQ3K>(w, a) {
        let scales = wb.unpacked_scales();
        let mut isum = 0i32;
        for (i, &sc) in scales.iter().enumerate() {
            let (h, s) = (i / 8, (i % 8) / 2);
            let q = (16 * (i % 2)..16 * (i % 2) + 16).map(|l| {
                let low = i32::from((wb.qs[32 * h + l] >> (2 * s)) & 3);
                let high_set = (wb.hmask[l] >> (4 * h + s)) & 1 != 0;
                if high_set {
                    low
                } else {
                    low - 4
                }
            });
            isum += i32::from(sc) * idot(q, &ab.qs[16 * i..16 * i + 16]);
        }
        sum += superblock(f16_to_f32(wb.d), ab.d, isum);
    }
    sum
}
