//! x86-64 kernels for AVX2 + FMA + F16C. Every function here gives the same bits as its scalar
//! spec (see the module docs of [`super`]).
//!
//! The public surface is [`kernels`], which returns a table only when the CPU has the features;
//! the safe wrappers in the table are therefore only reachable on such a CPU.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::scalar::{block_scale, check_float, check_quant, fold_lanes};
use super::{
    check_tokens, row_span, FloatKernels, Isa, Kernels, QuantKernels, Q4_0_BYTES, Q8_0_BYTES, QK,
};
use crate::format::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_f16_bits};

/// The AVX2 table, if this CPU has AVX2, FMA and F16C.
pub(super) fn kernels() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    ok.then_some(Kernels {
        isa: Isa::Avx2,
        quantize_row_q8_0,
        q4_0: QuantKernels {
            dot: |n, w, a| quant_dot::<Q4>(n, w, a),
            dot_x4: |n, w, a| quant_x4::<Q4>(n, w, a),
            tile_4x4: |n, w, a| quant_tile::<Q4>(n, w, a),
            rows: q4_0_rows,
        },
        q8_0: QuantKernels {
            dot: quant_dot::<Q8>,
            dot_x4: quant_x4::<Q8>,
            tile_4x4: |n, w, a| quant_tile::<Q8>(n, w, a),
            rows: q8_0_rows,
        },
        f32: FloatKernels {
            dot: |n, w, x| float_dot::<F32>(n, w, x),
            dot_x4: |n, w, x| float_x4::<F32>(n, w, x),
            axpy: float_axpy::<F32>,
        },
        f16: FloatKernels {
            dot: |n, w, x| float_dot::<F16>(n, w, x),
            dot_x4: |n, w, x| float_x4::<F16>(n, w, x),
            axpy: float_axpy::<F16>,
        },
        bf16: FloatKernels {
            dot: |n, w, x| float_dot::<BF16>(n, w, x),
            dot_x4: |n, w, x| float_x4::<BF16>(n, w, x),
            axpy: float_axpy::<BF16>,
        },
        // Handed out only when `ok` (the entries rely on it).
        k_quants: super::kquant_avx2::kernels(),
    })
}

// ---------------------------------------------------------------------------------------------
// Q8_0 activation quantization
// ---------------------------------------------------------------------------------------------

fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) {
    assert_eq!(x.len() % QK, 0, "quantize_row_q8_0: not whole blocks");
    assert_eq!(
        out.len(),
        x.len() / QK * Q8_0_BYTES,
        "quantize_row_q8_0: output size"
    );
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        // SAFETY: reachable only through `kernels()`, which checked AVX2/FMA/F16C; `xb` holds 32
        // f32 and `ob` 34 bytes (chunks_exact).
        unsafe { quantize_block_q8_0(xb, ob) }
    }
}

/// One block: `xb` [32] → `ob` [34 bytes]. Mirrors `BlockQ8_0::quantize` operation for operation.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block_q8_0(xb: &[f32], ob: &mut [u8]) {
    // SAFETY: the caller passes 32 floats and 34 bytes; loads and the store stay inside them.
    unsafe {
        let p = xb.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        // max(src1, src2) returns src2 when src1 is NaN: NaNs are skipped as the scalar fold does.
        let mut m = _mm256_setzero_ps();
        for vi in v {
            m = _mm256_max_ps(_mm256_and_ps(vi, abs_mask), m);
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2));
        let amax = _mm_cvtss_f32(m1);
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let idv = _mm256_set1_ps(id);
        let sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let one = _mm256_set1_ps(1.0);
        let half = _mm256_set1_ps(0.5);
        let q: [__m256i; 4] = v.map(|vi| {
            let x = _mm256_mul_ps(vi, idv);
            // Round half away from zero: truncate, then step away from zero when the (exact)
            // fraction is at least one half.
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
            let frac = _mm256_and_ps(_mm256_sub_ps(x, t), abs_mask);
            let step = _mm256_or_ps(_mm256_and_ps(x, sign_mask), one);
            let r = _mm256_add_ps(
                t,
                _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), step),
            );
            // `as i8`: NaN → 0, then saturate to [-128, 127].
            let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
            let r = _mm256_max_ps(
                _mm256_min_ps(r, _mm256_set1_ps(127.0)),
                _mm256_set1_ps(-128.0),
            );
            _mm256_cvttps_epi32(r)
        });
        let s01 = _mm256_packs_epi32(q[0], q[1]);
        let s23 = _mm256_packs_epi32(q[2], q[3]);
        let b = _mm256_packs_epi16(s01, s23);
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let o = ob.as_mut_ptr();
        let dh = f32_to_f16_bits(d).to_le_bytes();
        *o = dh[0];
        *o.add(1) = dh[1];
        _mm256_storeu_si256(o.add(2).cast(), b);
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized weights × Q8_0 activations
// ---------------------------------------------------------------------------------------------

/// A quantized weight block type: how to turn one weight block and one activation block into 8
/// `i32` lanes whose sum is the block's exact integer dot.
trait QuantBlock {
    const BYTES: usize;
    /// Per-activation-block state shared by every weight row.
    type Act: Copy;
    /// # Safety
    /// `a` points at a whole Q8_0 block; the CPU has AVX2.
    unsafe fn act(a: *const u8) -> Self::Act;
    /// Per-weight-block state shared by every token (the decoded quants).
    type W: Copy;
    /// # Safety
    /// `w` points at a whole weight block; the CPU has AVX2.
    unsafe fn weight(w: *const u8) -> Self::W;
    /// # Safety
    /// The CPU has AVX2.
    unsafe fn lanes(w: Self::W, a: Self::Act) -> __m256i;
}

struct Q4;
struct Q8;

impl QuantBlock for Q4 {
    const BYTES: usize = Q4_0_BYTES;
    /// The 32 activation quants and `8 · (a[2k] + a[2k+1])` as 16 i16 (the offset of the nibbles).
    type Act = (__m256i, __m256i);
    type W = __m256i;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn act(a: *const u8) -> Self::Act {
        // SAFETY: `a` points at 34 bytes; quants are bytes 2..34.
        let q = unsafe { _mm256_loadu_si256(a.add(2).cast()) };
        (q, _mm256_maddubs_epi16(_mm256_set1_epi8(8), q))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weight(w: *const u8) -> Self::W {
        // SAFETY: `w` points at 18 bytes; nibbles are bytes 2..18.
        let q = unsafe { _mm_loadu_si128(w.add(2).cast()) };
        // Low nibbles are elements 0..16, high nibbles 16..32: as unsigned 0..15.
        let both = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lanes(w: Self::W, (a, a8): Self::Act) -> __m256i {
        // Σ (w - 8)·a = Σ w·a - 8·Σ a, pairwise in i16 (|w·a| pairs ≤ 3840: no saturation).
        let p = _mm256_sub_epi16(_mm256_maddubs_epi16(w, a), a8);
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
}

impl QuantBlock for Q8 {
    const BYTES: usize = Q8_0_BYTES;
    /// Quants sign-extended to i16 (exact for every i8, -128 included).
    type Act = (__m256i, __m256i);
    type W = (__m256i, __m256i);

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn act(a: *const u8) -> Self::Act {
        // SAFETY: `a` points at 34 bytes; quants are bytes 2..34.
        unsafe { widen_i8(a.add(2)) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weight(w: *const u8) -> Self::W {
        // SAFETY: as for `act`.
        unsafe { widen_i8(w.add(2)) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lanes(w: Self::W, a: Self::Act) -> __m256i {
        _mm256_add_epi32(_mm256_madd_epi16(w.0, a.0), _mm256_madd_epi16(w.1, a.1))
    }
}

/// 32 i8 at `p` as two vectors of 16 i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_i8(p: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller passes 32 readable bytes.
    unsafe {
        (
            _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast())),
            _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16).cast())),
        )
    }
}

/// The sums of the 8 lanes of each of four vectors: `[Σp0, Σp1, Σp2, Σp3]` (exact, wrapping).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum4(p0: __m256i, p1: __m256i, p2: __m256i, p3: __m256i) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The f16 scale at `p` (the first two bytes of a block).
#[inline]
unsafe fn scale_bits(p: *const u8) -> u16 {
    // SAFETY: the caller passes a block pointer; its first two bytes are readable.
    unsafe { u16::from_le_bytes([*p, *p.add(1)]) }
}

/// Four f16 scales as f32 (F16C; exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales4(s: [u16; 4]) -> __m128 {
    let packed =
        u64::from(s[0]) | u64::from(s[1]) << 16 | u64::from(s[2]) << 32 | u64::from(s[3]) << 48;
    _mm_cvtph_ps(_mm_cvtsi64_si128(packed as i64))
}

/// One f16 scale as f32 in all four lanes (F16C; exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale1(s: u16) -> __m128 {
    _mm_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(s))))
}

fn quant_dot<B: QuantBlock>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_quant(n, w.len(), B::BYTES, a.len());
    // SAFETY: reachable only through `kernels()` (the CPU has AVX2/FMA/F16C); sizes checked.
    unsafe { quant_dot_avx2::<B>(n / QK, w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_dot_avx2<B: QuantBlock>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut sum = 0.0f32;
    let mut b = 0;
    // SAFETY: `w` holds `nb` weight blocks and `a` `nb` Q8_0 blocks (checked by the caller);
    // every pointer below is to a block with index < nb.
    unsafe {
        let wblk = |i: usize| wp.add(i * B::BYTES);
        let ablk = |i: usize| ap.add(i * Q8_0_BYTES);
        while b + 4 <= nb {
            let p: [__m256i; 4] =
                std::array::from_fn(|k| B::lanes(B::weight(wblk(b + k)), B::act(ablk(b + k))));
            let isum = _mm_cvtepi32_ps(isum4(p[0], p[1], p[2], p[3]));
            let dw = scales4(std::array::from_fn(|k| scale_bits(wblk(b + k))));
            let da = scales4(std::array::from_fn(|k| scale_bits(ablk(b + k))));
            let mut t = [0.0f32; 4];
            _mm_storeu_ps(t.as_mut_ptr(), _mm_mul_ps(_mm_mul_ps(dw, da), isum));
            for tk in t {
                sum += tk;
            }
            b += 4;
        }
        while b < nb {
            let p = B::lanes(B::weight(wblk(b)), B::act(ablk(b)));
            let z = _mm256_setzero_si256();
            let isum = _mm_cvtsi128_si32(isum4(p, z, z, z));
            let wb = std::slice::from_raw_parts(wblk(b), 2);
            let ab = std::slice::from_raw_parts(ablk(b), 2);
            sum += (block_scale(wb) * block_scale(ab)) * isum as f32;
            b += 1;
        }
    }
    sum
}

fn quant_x4<B: QuantBlock>(n: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4] {
    for wr in w {
        check_quant(n, wr.len(), B::BYTES, a.len());
    }
    // SAFETY: reachable only through `kernels()`; sizes checked.
    unsafe { quant_x4_avx2::<B>(n / QK, w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_x4_avx2<B: QuantBlock>(nb: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4] {
    let wp = w.map(|r| r.as_ptr());
    let ap = a.as_ptr();
    // Rows at an even stride (a matrix's rows) are followed by the next call's: prefetch their
    // bytes four rows on, once per cache line (see `Avx2X8`). Only an address: a prefetch
    // never faults.
    let stride = (wp[1] as usize).wrapping_sub(wp[0] as usize);
    let ahead = stride.wrapping_mul(4);
    let mut acc = _mm_setzero_ps();
    // SAFETY: each `w[r]` holds `nb` weight blocks and `a` `nb` Q8_0 blocks (checked by the
    // caller); every pointer below is to a block with index b < nb.
    unsafe {
        for b in 0..nb {
            let ab = ap.add(b * Q8_0_BYTES);
            let act = B::act(ab);
            let wb = wp.map(|p| p.add(b * B::BYTES));
            if (b * B::BYTES) % 64 < B::BYTES {
                for p in wb {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead).cast());
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + B::BYTES - 1).cast());
                }
            }
            let p = wb.map(|p| B::lanes(B::weight(p), act));
            let isum = _mm_cvtepi32_ps(isum4(p[0], p[1], p[2], p[3]));
            let dw = scales4(wb.map(|p| scale_bits(p)));
            let da = scale1(scale_bits(ab));
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_mul_ps(dw, da), isum));
        }
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

fn quant_tile<B: QuantBlock>(n: usize, w: [&[u8]; 4], a: [&[u8]; 4]) -> [[f32; 4]; 4] {
    for (wr, ar) in w.iter().zip(&a) {
        check_quant(n, wr.len(), B::BYTES, ar.len());
    }
    // SAFETY: reachable only through `kernels()`; sizes checked.
    unsafe { quant_tile_avx2::<B>(n / QK, w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_tile_avx2<B: QuantBlock>(nb: usize, w: [&[u8]; 4], a: [&[u8]; 4]) -> [[f32; 4]; 4] {
    let wp = w.map(|r| r.as_ptr());
    let ap = a.map(|r| r.as_ptr());
    let mut acc = [_mm_setzero_ps(); 4];
    // SAFETY: each `w[r]` holds `nb` weight blocks and each `a[t]` `nb` Q8_0 blocks (checked
    // by the caller); every pointer below is to a block with index b < nb.
    unsafe {
        for b in 0..nb {
            let wb = wp.map(|p| p.add(b * B::BYTES));
            let wq = wb.map(|p| B::weight(p));
            let dw = scales4(wb.map(|p| scale_bits(p)));
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let ab = ap[t].add(b * Q8_0_BYTES);
                let act = B::act(ab);
                let p = wq.map(|q| B::lanes(q, act));
                let isum = _mm_cvtepi32_ps(isum4(p[0], p[1], p[2], p[3]));
                let da = scale1(scale_bits(ab));
                *acc_t = _mm_add_ps(*acc_t, _mm_mul_ps(_mm_mul_ps(dw, da), isum));
            }
        }
        acc.map(|v| {
            let mut out = [0.0f32; 4];
            _mm_storeu_ps(out.as_mut_ptr(), v);
            out
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Q4_0 decode: eight rows at a time
// ---------------------------------------------------------------------------------------------

/// A run of Q4_0 rows against `n_tok` Q8_0 rows: tiles of eight rows × four tokens (each
/// weight block unpacked once for the four), one tile of eight rows × the last 1–3 tokens, and
/// the 4-row / 1-row kernels for the last rows.
/// A run of Q8_0 rows against `n_tok` Q8_0 rows: the lane kernels ([`lanes_rows`]) for
/// groups of eight rows when there are several tokens; the 4×4 / 4-row / 1-row kernels for one
/// token and for the last rows.
fn q8_0_rows(n: usize, w: &[u8], row_bytes: usize, a: &[u8], y: &mut [f32]) {
    q8_0_rows_with(
        lanes_rows::<LanesQ8>,
        LanesQ8::MIN_TOKENS,
        n,
        w,
        row_bytes,
        a,
        y,
    );
}

/// [`QuantRows`](super::QuantRows) for Q8_0 with `lanes` for the rows it takes from
/// `min_tokens` tokens, and the 4×4, 4-row and 1-row kernels for the rest.
pub(super) fn q8_0_rows_with(
    lanes: LanesFn,
    min_tokens: usize,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    y: &mut [f32],
) {
    let arb = n / QK * Q8_0_BYTES;
    let n_tok = check_tokens(a.len(), arb, y.len());
    if n_tok == 0 {
        return;
    }
    let n_rows = y.len() / n_tok;
    row_span(n, QK, Q8_0_BYTES, w.len(), row_bytes, n_rows);
    let mut r = 0;
    if n_tok >= min_tokens {
        r = lanes(n / QK, w, row_bytes, 0, a, y);
    }
    if r < n_rows {
        let kernels = (
            quant_dot::<Q8> as super::QuantDot,
            quant_x4::<Q8> as super::QuantDotX4,
            (|n, w, a| quant_tile::<Q8>(n, w, a)) as super::QuantTile4x4,
        );
        let w_rest = &w[r * row_bytes..];
        super::rows_by_4(
            kernels,
            (QK, Q8_0_BYTES, Q8_0_BYTES),
            n,
            w_rest,
            row_bytes,
            a,
            &mut y[r * n_tok..],
        );
    }
}

/// Tokens per lane-kernel tile.
const LANES_TOKENS: usize = 4;

/// The many-token part of a row kernel: whole groups of rows from `r0` (the rows' `nb` blocks at
/// stride `row_bytes` in `w`) against every token of `a`, into `y[row · n_tok + token]`;
/// returns the first row it did not do.
pub(super) type LanesFn =
    fn(nb: usize, w: &[u8], row_bytes: usize, r0: usize, a: &[u8], y: &mut [f32]) -> usize;

fn q4_0_rows(n: usize, w: &[u8], row_bytes: usize, a: &[u8], y: &mut [f32]) {
    q4_0_rows_with::<Avx2X8>(
        lanes_rows::<LanesQ4>,
        LanesQ4::MIN_TOKENS,
        n,
        w,
        row_bytes,
        a,
        y,
    );
}

/// [`QuantRows`](super::QuantRows) for Q4_0 with `lanes` for the rows it takes from
/// `min_tokens` tokens, and the 8-row kernel `X`, then the 4-row and 1-row kernels, for the rest.
pub(super) fn q4_0_rows_with<X: Q4x8>(
    lanes: LanesFn,
    min_tokens: usize,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    y: &mut [f32],
) {
    let arb = n / QK * Q8_0_BYTES;
    let n_tok = check_tokens(a.len(), arb, y.len());
    if n_tok == 0 {
        return;
    }
    let n_rows = y.len() / n_tok;
    let span = row_span(n, QK, Q4_0_BYTES, w.len(), row_bytes, n_rows);
    let at = |t: usize| &a[t * arb..(t + 1) * arb];
    let nb = n / QK;
    let mut r = 0;
    if n_tok >= min_tokens {
        r = lanes(nb, w, row_bytes, 0, a, y);
    }
    if r + 8 <= n_rows {
        // Each activation block's scale and 8·Σa, once for all the row groups below.
        LANE_TERMS.with_borrow_mut(|(da, sums, _)| {
            q8_0_block_terms(a, n_tok, nb, 8, da, sums);
            let at = |t: usize| (&a[t * arb..(t + 1) * arb], &da[t * nb..], &sums[t * nb..]);
            while r + 8 <= n_rows {
                let w8 = &w[r * row_bytes..];
                let mut put = |t0: usize, o: &[[f32; 8]]| {
                    for (j, oj) in o.iter().enumerate() {
                        for (i, v) in oj.iter().enumerate() {
                            y[(r + i) * n_tok + t0 + j] = *v;
                        }
                    }
                };
                let mut t = 0;
                while t + 4 <= n_tok {
                    put(
                        t,
                        &q4_0_x8::<X, 4>(nb, w8, row_bytes, std::array::from_fn(|j| at(t + j))),
                    );
                    t += 4;
                }
                // The last 1..3 tokens in one tile too, so each weight block is still unpacked
                // once.
                match n_tok - t {
                    3 => put(
                        t,
                        &q4_0_x8::<X, 3>(nb, w8, row_bytes, [at(t), at(t + 1), at(t + 2)]),
                    ),
                    2 => put(t, &q4_0_x8::<X, 2>(nb, w8, row_bytes, [at(t), at(t + 1)])),
                    1 => put(t, &q4_0_x8::<X, 1>(nb, w8, row_bytes, [at(t)])),
                    _ => {}
                }
                r += 8;
            }
        });
    }
    let row = |r: usize| &w[r * row_bytes..r * row_bytes + span];
    while r + 4 <= n_rows {
        let wr = std::array::from_fn(|i| row(r + i));
        for t in 0..n_tok {
            for (i, v) in quant_x4::<Q4>(n, wr, at(t)).iter().enumerate() {
                y[(r + i) * n_tok + t] = *v;
            }
        }
        r += 4;
    }
    for r in r..n_rows {
        for t in 0..n_tok {
            y[r * n_tok + t] = quant_dot::<Q4>(n, row(r), at(t));
        }
    }
}

/// One activation row for [`q4_0_x8`]: its Q8_0 blocks, and per block the scale as f32 and
/// `8·Σa` (from [`q8_0_block_terms`]).
pub(super) type Q8Row<'a> = (&'a [u8], &'a [f32], &'a [i32]);

/// An eight-row Q4_0 kernel for one to four tokens: the AVX2 one ([`Avx2X8`]), or a table's
/// faster one with its contract and results (the same bits).
pub(super) trait Q4x8 {
    /// Eight Q4_0 rows against `T` activation rows: `[token][row]`.
    ///
    /// # Safety
    /// The CPU has the features of the table that installs the implementor; rows `0..8` of
    /// `nb` 18-byte blocks at stride `row_bytes` are readable from `w0`; each `a[t]` holds `nb`
    /// Q8_0 blocks and `nb` terms.
    unsafe fn x8<const T: usize>(
        nb: usize,
        w0: *const u8,
        row_bytes: usize,
        a: [Q8Row<'_>; T],
    ) -> [[f32; 8]; T];
}

/// `X`'s kernel on the eight rows that start `w` (checked here).
fn q4_0_x8<X: Q4x8, const T: usize>(
    nb: usize,
    w: &[u8],
    row_bytes: usize,
    a: [Q8Row<'_>; T],
) -> [[f32; 8]; T] {
    assert!(
        7 * row_bytes + nb * Q4_0_BYTES <= w.len(),
        "q4_0 x8: rows overrun"
    );
    for (a, da, sums) in a {
        assert_eq!(a.len(), nb * Q8_0_BYTES, "q4_0 x8: activation row size");
        assert!(
            da.len() >= nb && sums.len() >= nb,
            "q4_0 x8: activation terms"
        );
    }
    // SAFETY: reachable only through a table whose CPU check covers `X`; the eight rows of nb
    // blocks and the T activation rows with their terms were checked just above.
    unsafe { X::x8::<T>(nb, w.as_ptr(), row_bytes, a) }
}

/// The AVX2 eight-row Q4_0 kernel: eight rows (row `i` at `w0 + i·row_bytes`, `nb` blocks each)
/// against `T` Q8_0 rows, `[token][row]`.
///
/// Two rows share a vector: row `2k` in the low 128-bit lane and row `2k+1` in the high one, so
/// one `maddubs` pair covers 64 weights; a weight block is unpacked once for all `T` tokens. Low
/// nibbles (elements 0..16) meet `a[0..16]` and high nibbles `a[16..32]`, each broadcast to both
/// lanes. Three `hadd`s reduce the four pair vectors to one exact i32 per row, lanes ordered rows
/// `[0 2 4 6 | 1 3 5 7]`, and the nibble offset comes off there as the block's `8·Σa`, computed
/// once per activation row by the caller (as is the block's scale: doing both here, for every
/// eight rows, was a tenth of the kernel's vector work). The eight f16 weight scales are packed
/// in the same order with scalar loads (on Zen 3 this beats a `vpgatherdd` by 1.8×: the integer
/// ports are otherwise idle). The float part is the spec's, lane by lane.
///
/// Safety (of [`Q4x8::x8`] here): the CPU has AVX2/FMA/F16C; the rest as the trait says.
pub(super) struct Avx2X8;

impl Q4x8 for Avx2X8 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn x8<const T: usize>(
        nb: usize,
        w0: *const u8,
        row_bytes: usize,
        a: [Q8Row<'_>; T],
    ) -> [[f32; 8]; T] {
        let m4 = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let ap = a.map(|(a, da, sums)| (a.as_ptr(), da.as_ptr(), sums.as_ptr()));
        let mut acc = [_mm256_setzero_ps(); T];
        // SAFETY: per the contract, every row pointer + b·18 (+18), every a[t] + b·34 (+34) and
        // every term b with b < nb is readable.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q4_0_BYTES);
                prefetch_next_rows8(b, wb, row_bytes);
                let mut lo = [_mm256_setzero_si256(); 4];
                let mut hi = [_mm256_setzero_si256(); 4];
                for k in 0..4 {
                    let lo_row = wb.add(2 * k * row_bytes + 2);
                    let hi_row = wb.add((2 * k + 1) * row_bytes + 2);
                    let x = _mm256_loadu2_m128i(hi_row.cast(), lo_row.cast());
                    lo[k] = _mm256_and_si256(x, m4);
                    hi[k] = _mm256_and_si256(_mm256_srli_epi16::<4>(x), m4);
                }
                let sc = |i: usize| u64::from(scale_bits(wb.add(i * row_bytes)));
                let even = sc(0) | sc(2) << 16 | sc(4) << 32 | sc(6) << 48;
                let odd = sc(1) | sc(3) << 16 | sc(5) << 32 | sc(7) << 48;
                let dw = _mm256_cvtph_ps(_mm_set_epi64x(odd as i64, even as i64));
                for t in 0..T {
                    let (ab, da, sums) = ap[t];
                    let ab = ab.add(b * Q8_0_BYTES);
                    let da = _mm256_set1_ps(*da.add(b));
                    let alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(ab.add(2).cast()));
                    let ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(ab.add(18).cast()));
                    let p: [__m256i; 4] = std::array::from_fn(|k| {
                        let s = _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo[k], alo),
                            _mm256_maddubs_epi16(hi[k], ahi),
                        );
                        _mm256_madd_epi16(s, ones)
                    });
                    let h = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(p[0], p[1]),
                        _mm256_hadd_epi32(p[2], p[3]),
                    );
                    let h = _mm256_sub_epi32(h, _mm256_set1_epi32(*sums.add(b)));
                    let isum = _mm256_cvtepi32_ps(h);
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(dw, da), isum));
                }
            }
        }
        rows_in_order(acc)
    }
}

/// Every third block, the same bytes of the next eight rows (the next call's) for the eight-row
/// kernels: eight short row streams per call are more than the hardware prefetcher learns in
/// time. A prefetch never faults; `wrapping_add` keeps the address arithmetic defined.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_next_rows8(b: usize, wb: *const u8, row_bytes: usize) {
    if b.is_multiple_of(3) {
        for i in 8..16 {
            _mm_prefetch::<_MM_HINT_T0>(wb.wrapping_add(i * row_bytes).cast());
        }
    }
}

/// Each token's eight outputs in row order, from the eight-row kernels' lanes `[0 2 4 6 | 1 3 5
/// 7]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_in_order<const T: usize>(acc: [__m256; T]) -> [[f32; 8]; T] {
    acc.map(|v| {
        let mut t = [0.0f32; 8];
        // SAFETY: `t` has room for 8 f32.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), v) };
        [t[0], t[4], t[1], t[5], t[2], t[6], t[3], t[7]]
    })
}

// ---------------------------------------------------------------------------------------------
// Prompt / batch (Q4_0, Q8_0): eight rows in the lanes of one vector
// ---------------------------------------------------------------------------------------------

/// A weight type for the many-token lane kernels: `ROWS` rows are packed once per call so that
/// row `i` sits in 32-bit lane `i` of every vector, and a tile of tokens then needs no
/// horizontal adds (see [`lanes_rows`]). The AVX2 formats here pack eight rows into 256-bit
/// vectors; `x86_avx512.rs` has sixteen-row ones.
pub(super) trait LaneFormat {
    /// A packed vector.
    type Packed: Copy + 'static;
    /// The `ROWS` outputs of one token, as `ROWS` f32.
    type Out: Copy;
    /// Rows per packed group.
    const ROWS: usize;
    /// Tokens per full tile.
    const TILE: usize;
    /// Bytes per weight block (32 elements, f16 scale first).
    const BYTES: usize;
    /// Vectors per packed block of `ROWS` rows.
    const VECS: usize;
    /// The factor of each block's `Σa` taken off its integer dot (from [`q8_0_block_terms`]).
    const CORR: i32;
    /// Whether the kernel reads the activation bytes plus 128 (as unsigned bytes).
    const SHIFT_ACT: bool = false;
    /// Tokens from which the row kernels take this path: below it, packing costs more than it
    /// saves.
    const MIN_TOKENS: usize;
    /// This thread's packing scratch.
    fn scratch() -> &'static std::thread::LocalKey<RefCell<Vec<Self::Packed>>>;
    /// Packs `ROWS` rows (`nb` blocks each, at stride `row_bytes` from `w0`) into `out`.
    ///
    /// # Safety
    /// The CPU has the format's features; the rows are readable; `out` has room for
    /// `nb · VECS` vectors.
    unsafe fn pack(nb: usize, w0: *const u8, row_bytes: usize, out: *mut Self::Packed);
    /// The packed rows against `T` tokens (`a[t]` their Q8_0 rows, `terms[t]` their scales and
    /// `CORR·Σa` per block), each token's sums going on from `init[t]` (zero for a row's first
    /// block, so a row may be done in runs of blocks with the same bits): the rows' outputs for
    /// each token.
    ///
    /// # Safety
    /// The CPU has the format's features; `packed` holds `nb` packed blocks; each `a[t]` holds
    /// `nb` Q8_0 blocks and each `terms[t]` `nb` values.
    unsafe fn tile<const T: usize>(
        nb: usize,
        packed: *const Self::Packed,
        a: [*const u8; T],
        terms: [(*const f32, *const i32); T],
        init: [Self::Out; T],
    ) -> [Self::Out; T];
}

/// Q4_0: per block, for each 4-byte group `k` of nibbles, the low nibbles (elements `4k..4k+4`)
/// and then the high nibbles (`16+4k..`) as unsigned bytes 0..15; `q − 8` is the quant.
struct LanesQ4;
/// Q8_0: per block, for each 4-byte group `k` (elements `4k..4k+4`), the quants split into
/// unsigned nibbles: `l = q & 15` and `h = (q >> 4) ^ 8` (the signed high nibble plus 8), so
/// `q = 16·h + l − 128`.
struct LanesQ8;

/// Group `k` (bytes `off + 4k .. off + 4k + 4`) of eight rows from `wb` (stride `row_bytes`),
/// for `k` in 0..4: `[k]` with row `i` in 32-bit lane `i`.
///
/// # Safety
/// The CPU has AVX2; 16 bytes at `wb + i·row_bytes + off` are readable for i < 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn transpose8x4(wb: *const u8, row_bytes: usize, off: usize) -> [__m256i; 4] {
    // SAFETY: per the contract.
    let x: [__m256i; 4] = std::array::from_fn(|k| unsafe {
        // Row k (low 128 bits) and row k + 4 (high).
        _mm256_loadu2_m128i(
            wb.add((k + 4) * row_bytes + off).cast(),
            wb.add(k * row_bytes + off).cast(),
        )
    });
    // 4×4 transposes of 32-bit groups within each 128-bit half: rows 0..4 (low half) and 4..8
    // (high half) end up in 32-bit lanes 0..8 in order.
    let t0 = _mm256_unpacklo_epi32(x[0], x[1]);
    let t1 = _mm256_unpackhi_epi32(x[0], x[1]);
    let t2 = _mm256_unpacklo_epi32(x[2], x[3]);
    let t3 = _mm256_unpackhi_epi32(x[2], x[3]);
    [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ]
}

/// Every fourth block, the bytes [`PACK_AHEAD`] ahead in each of the eight rows being packed:
/// eight row streams at once are more than the hardware prefetcher follows in time, and
/// packing is where a matmul first reads its weights. A prefetch never faults; `wrapping_add`
/// keeps the address arithmetic defined past the rows' end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_rows_ahead(b: usize, wb: *const u8, row_bytes: usize) {
    if b.is_multiple_of(4) {
        for i in 0..8 {
            _mm_prefetch::<_MM_HINT_T0>(wb.wrapping_add(i * row_bytes + PACK_AHEAD).cast());
        }
    }
}

/// How far ahead of the packing [`prefetch_rows_ahead`] reads, in bytes.
const PACK_AHEAD: usize = 512;

/// The f16 scales at the start of eight blocks (`wb + i·row_bytes`) as f32, row `i` in lane `i`.
///
/// # Safety
/// The CPU has AVX2/F16C; two bytes at each `wb + i·row_bytes` are readable for i < 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scales8(wb: *const u8, row_bytes: usize) -> __m256 {
    // SAFETY: per the contract. Scalar loads: on Zen 3 this beats a gather.
    let sc = |i: usize| u64::from(unsafe { scale_bits(wb.add(i * row_bytes)) });
    let lo4 = sc(0) | sc(1) << 16 | sc(2) << 32 | sc(3) << 48;
    let hi4 = sc(4) | sc(5) << 16 | sc(6) << 32 | sc(7) << 48;
    _mm256_cvtph_ps(_mm_set_epi64x(hi4 as i64, lo4 as i64))
}

/// The float step of one block for `T` tokens, lane by lane as the spec: `acc = acc + (d_w ·
/// d_a) · isum` with `isum` the block's exact integer dot (`dot_i32 − terms.corr`).
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; each `terms[t] + b` is readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lanes_finish<const T: usize>(
    acc: &mut [__m256; T],
    dot_i32: [__m256i; T],
    dw: __m256,
    terms: &[(*const f32, *const i32); T],
    b: usize,
) {
    for t in 0..T {
        let (da, corr) = terms[t];
        // SAFETY: per the contract.
        let (da, corr) = unsafe { (*da.add(b), *corr.add(b)) };
        let isum = _mm256_sub_epi32(dot_i32[t], _mm256_set1_epi32(corr));
        let d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
        acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
    }
}

/// The four activation bytes at `p` in every 32-bit lane.
///
/// # Safety
/// Four bytes at `p` are readable; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bcast4(p: *const u8) -> __m256i {
    // SAFETY: per the contract (an unaligned read).
    _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

impl LaneFormat for LanesQ4 {
    type Packed = __m256i;
    type Out = __m256;
    const ROWS: usize = 8;
    const TILE: usize = LANES_TOKENS;
    const BYTES: usize = Q4_0_BYTES;
    const VECS: usize = 9;
    const CORR: i32 = 8;
    /// One Zen 3 core, weights streamed from memory: at 2 and 3 tokens 0.90 and 0.70 ns per
    /// output block against 0.70 and 0.67 for the 8-row decode kernel; at 4, 0.59 against 0.66.
    const MIN_TOKENS: usize = 4;

    fn scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m256i>>> {
        &LANES_PACK
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack(nb: usize, w0: *const u8, row_bytes: usize, out: *mut __m256i) {
        let m4 = _mm256_set1_epi8(0x0f);
        // SAFETY: per the contract.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q4_0_BYTES);
                let o = out.add(b * Self::VECS);
                prefetch_rows_ahead(b, wb, row_bytes);
                for (k, pk) in transpose8x4(wb, row_bytes, 2).iter().enumerate() {
                    _mm256_storeu_si256(o.add(2 * k), _mm256_and_si256(*pk, m4));
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(*pk), m4);
                    _mm256_storeu_si256(o.add(2 * k + 1), hi);
                }
                _mm256_storeu_si256(o.add(8), _mm256_castps_si256(scales8(wb, row_bytes)));
            }
        }
    }

    /// `maddubs` of unsigned nibbles (0..15) and activations gives pair sums of at most
    /// 2·15·128 = 3840, so the eight of a block add up in i16 without overflow (≤ 30720); one
    /// `madd` makes them the lane's `i32` `Σ q'·a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const T: usize>(
        nb: usize,
        packed: *const __m256i,
        a: [*const u8; T],
        terms: [(*const f32, *const i32); T],
        init: [__m256; T],
    ) -> [__m256; T] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = init;
        // SAFETY: per the contract, packed + b·9 (+9), every a[t] + b·34 (+34) and every
        // terms[t] + b with b < nb is readable.
        unsafe {
            for b in 0..nb {
                let pb = packed.add(b * Self::VECS);
                let mut s16 = [_mm256_setzero_si256(); T];
                for k in 0..4 {
                    for half in 0..2 {
                        let wv = _mm256_loadu_si256(pb.add(2 * k + half));
                        for t in 0..T {
                            let av = bcast4(a[t].add(b * Q8_0_BYTES + 2 + 16 * half + 4 * k));
                            s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(wv, av));
                        }
                    }
                }
                let dw = _mm256_castsi256_ps(_mm256_loadu_si256(pb.add(8)));
                let dot = s16.map(|s| _mm256_madd_epi16(s, ones));
                lanes_finish(&mut acc, dot, dw, &terms, b);
            }
        }
        acc
    }
}

impl LaneFormat for LanesQ8 {
    type Packed = __m256i;
    type Out = __m256;
    const ROWS: usize = 8;
    const TILE: usize = LANES_TOKENS;
    const BYTES: usize = Q8_0_BYTES;
    const VECS: usize = 17;
    const CORR: i32 = 128;
    /// As for Q4_0: level with the 4-row kernels at 5 tokens, 0.89 against 1.02 ns at 6.
    const MIN_TOKENS: usize = 6;

    fn scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m256i>>> {
        &LANES_PACK
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack(nb: usize, w0: *const u8, row_bytes: usize, out: *mut __m256i) {
        let m4 = _mm256_set1_epi8(0x0f);
        let eight = _mm256_set1_epi8(8);
        // SAFETY: per the contract.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q8_0_BYTES);
                let o = out.add(b * Self::VECS);
                prefetch_rows_ahead(b, wb, row_bytes);
                for half in 0..2 {
                    let p = transpose8x4(wb, row_bytes, 2 + 16 * half);
                    for (k, pk) in p.iter().enumerate() {
                        let g = 4 * half + k;
                        _mm256_storeu_si256(o.add(2 * g), _mm256_and_si256(*pk, m4));
                        let h = _mm256_and_si256(_mm256_srli_epi16::<4>(*pk), m4);
                        _mm256_storeu_si256(o.add(2 * g + 1), _mm256_xor_si256(h, eight));
                    }
                }
                _mm256_storeu_si256(o.add(16), _mm256_castps_si256(scales8(wb, row_bytes)));
            }
        }
    }

    /// Both nibble halves meet the same broadcast activation bytes; each half's eight `maddubs`
    /// add up in i16 as for Q4_0 (≤ 30720), and `madd` by 16 and by 1 give `Σ (16·h + l)·a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const T: usize>(
        nb: usize,
        packed: *const __m256i,
        a: [*const u8; T],
        terms: [(*const f32, *const i32); T],
        init: [__m256; T],
    ) -> [__m256; T] {
        let ones = _mm256_set1_epi16(1);
        let sixteen = _mm256_set1_epi16(16);
        let mut acc = init;
        // SAFETY: per the contract, packed + b·17 (+17), every a[t] + b·34 (+34) and every
        // terms[t] + b with b < nb is readable.
        unsafe {
            for b in 0..nb {
                let pb = packed.add(b * Self::VECS);
                let mut sl = [_mm256_setzero_si256(); T];
                let mut sh = [_mm256_setzero_si256(); T];
                for g in 0..8 {
                    let lv = _mm256_loadu_si256(pb.add(2 * g));
                    let hv = _mm256_loadu_si256(pb.add(2 * g + 1));
                    for t in 0..T {
                        let av = bcast4(a[t].add(b * Q8_0_BYTES + 2 + 4 * g));
                        sl[t] = _mm256_add_epi16(sl[t], _mm256_maddubs_epi16(lv, av));
                        sh[t] = _mm256_add_epi16(sh[t], _mm256_maddubs_epi16(hv, av));
                    }
                }
                let dw = _mm256_castsi256_ps(_mm256_loadu_si256(pb.add(16)));
                let dot: [__m256i; T] = std::array::from_fn(|t| {
                    _mm256_add_epi32(
                        _mm256_madd_epi16(sh[t], sixteen),
                        _mm256_madd_epi16(sl[t], ones),
                    )
                });
                lanes_finish(&mut acc, dot, dw, &terms, b);
            }
        }
        acc
    }
}

/// Per (token, block) of `n_tok` Q8_0 rows of `nb` blocks: the block's scale as f32 into `da`
/// and `corr · Σa` into `sums` (both cleared first), `[t · nb + b]`.
fn q8_0_block_terms(
    a: &[u8],
    n_tok: usize,
    nb: usize,
    corr: i32,
    da: &mut Vec<f32>,
    sums: &mut Vec<i32>,
) {
    assert!(a.len() >= n_tok * nb * Q8_0_BYTES, "q8_0 block terms: rows");
    da.clear();
    sums.clear();
    for blk in a.chunks_exact(Q8_0_BYTES).take(n_tok * nb) {
        da.push(f16_bits_to_f32(u16::from_le_bytes([blk[0], blk[1]])));
        // SAFETY: reachable only through `kernels()` (AVX2); `blk` holds 34 bytes.
        sums.push(corr * unsafe { sum_i8x32(blk.as_ptr().add(2)) });
    }
}

/// The sum of the 32 i8 at `p`.
///
/// # Safety
/// The CPU has AVX2; 32 bytes are readable at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sum_i8x32(p: *const u8) -> i32 {
    // SAFETY: per the contract.
    let q = unsafe { _mm256_loadu_si256(p.cast()) };
    let pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
    let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(quads),
        _mm256_extracti128_si256::<1>(quads),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// A thread's per-call activation terms for [`lanes_rows`]: scales, `CORR·Σa`, and the
/// activation bytes plus 128 where a format reads them so (kept, so calls do not allocate).
type LaneTerms = (Vec<f32>, Vec<i32>, Vec<u8>);

thread_local! {
    /// Each thread's [`LaneTerms`].
    static LANE_TERMS: RefCell<LaneTerms> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    /// Each thread's packed rows for [`lanes_rows`] (a run of blocks, or a row group).
    static LANES_PACK: RefCell<Vec<__m256i>> = const { RefCell::new(Vec::new()) };
    /// Each thread's per-token sums for [`lanes_rows`] (up to sixteen rows a token).
    static LANES_ACC: RefCell<Vec<[f32; 16]>> = const { RefCell::new(Vec::new()) };
}

/// Blocks packed at a time by [`lanes_rows`] for fewer than [`LANES_RUN_TOKENS`] tokens: a run of
/// them is packed (where the weights are read from memory), then every token's tile goes over it,
/// so the reads of the next run, prefetched [`PACK_AHEAD`] bytes ahead, land while the tiles
/// compute (packing a whole row group first left memory idle during the few tiles and the tiles
/// idle during the packing). 32 blocks of sixteen rows pack into 18 KB, which stays in L1.
/// On the two-core Xeon (AVX-512 table), 16-token prompts 130 → 142 tok/s; the AVX2 formats
/// share the run length unmeasured (their eight rows pack half as much).
const LANES_RUN: usize = 32;
/// Tokens from which [`lanes_rows`] packs a whole row group at once: the tiles are then long
/// enough to hide the packing's reads, and splitting them into runs cost 6% at 256-token prompts.
const LANES_RUN_TOKENS: usize = 32;

/// Rows `r0..` (whole groups of `L::ROWS`) of `w` (`nb` blocks of `L` at stride `row_bytes`)
/// against `n_tok ≥ 1` Q8_0 activation rows (`a`, back to back): `y[row · n_tok + token]`, and
/// the first row not done. Each group of rows is packed once ([`LaneFormat::pack`]; for few
/// tokens a run of [`LANES_RUN`] blocks at a time) into this thread's scratch and then read by
/// every tile of `L::TILE` tokens, and one tile of the rest, each token's sums carried from run
/// to run; each output is the spec's dot. Only reachable through a table whose CPU check covers
/// `L`.
pub(super) fn lanes_rows<L: LaneFormat>(
    nb: usize,
    w: &[u8],
    row_bytes: usize,
    r0: usize,
    a: &[u8],
    y: &mut [f32],
) -> usize {
    assert!(
        std::mem::size_of::<L::Out>() == 4 * L::ROWS && L::ROWS <= 16,
        "lanes: an output vector is ROWS ≤ 16 f32"
    );
    assert!(L::TILE <= 8, "lanes: tiles of at most 8 tokens");
    let arb = nb * Q8_0_BYTES;
    let n_tok = a.len() / arb;
    if n_tok == 0 {
        return r0;
    }
    let n_rows = y.len() / n_tok;
    assert!(
        n_rows == 0 || (n_rows - 1) * row_bytes + nb * L::BYTES <= w.len(),
        "lanes: rows overrun"
    );
    assert_eq!(a.len(), n_tok * arb, "lanes: activation rows");
    LANE_TERMS.with_borrow_mut(|(da, corr, shifted)| {
        q8_0_block_terms(a, n_tok, nb, L::CORR, da, corr);
        // The activation bytes plus 128 (as unsigned bytes) where the format reads them so.
        let a = if L::SHIFT_ACT {
            shifted.clear();
            shifted.extend(a.iter().map(|&x| x ^ 0x80));
            &shifted[..]
        } else {
            a
        };
        let run_max = if n_tok < LANES_RUN_TOKENS {
            LANES_RUN.min(nb)
        } else {
            nb
        };
        L::scratch().with_borrow_mut(|pack| {
            LANES_ACC.with_borrow_mut(|accs| {
                if pack.len() < run_max * L::VECS {
                    // SAFETY: all-zero bits are a valid SIMD vector.
                    pack.resize(run_max * L::VECS, unsafe { std::mem::zeroed() });
                }
                accs.clear();
                accs.resize(n_tok, [0.0; 16]);
                let mut r = r0;
                while r + L::ROWS <= n_rows {
                    accs.fill([0.0; 16]);
                    for b0 in (0..nb).step_by(run_max) {
                        let run = run_max.min(nb - b0);
                        // SAFETY: the table's CPU check covers L; blocks b0..b0 + run of rows
                        // r..r + ROWS lie in `w` (checked above) and `pack` has room for `run`
                        // packed blocks.
                        unsafe {
                            L::pack(
                                run,
                                w.as_ptr().add(r * row_bytes + b0 * L::BYTES),
                                row_bytes,
                                pack.as_mut_ptr(),
                            )
                        };
                        lanes_tiles::<L>(run, pack.as_ptr(), a, arb, (da, corr), nb, b0, accs);
                    }
                    for (t, acc) in accs.iter().enumerate() {
                        for (i, x) in acc[..L::ROWS].iter().enumerate() {
                            y[(r + i) * n_tok + t] = *x;
                        }
                    }
                    r += L::ROWS;
                }
                r
            })
        })
    })
}

/// Every token's tiles over one packed run of `run` blocks (blocks `b0..` of rows of `nb`),
/// each token's sums going on from, and back into, `accs[t]` (its `L::ROWS` outputs so far).
#[allow(clippy::too_many_arguments)]
fn lanes_tiles<L: LaneFormat>(
    run: usize,
    packed: *const L::Packed,
    a: &[u8],
    arb: usize,
    (da, corr): (&[f32], &[i32]),
    nb: usize,
    b0: usize,
    accs: &mut [[f32; 16]],
) {
    let n_tok = accs.len();
    assert!(
        a.len() >= n_tok * arb
            && da.len() >= n_tok * nb
            && corr.len() >= n_tok * nb
            && b0 + run <= nb,
        "lanes: tokens and their terms"
    );
    let at = |t: usize| a[t * arb + b0 * Q8_0_BYTES..].as_ptr();
    let term = |t: usize| (da[t * nb + b0..].as_ptr(), corr[t * nb + b0..].as_ptr());
    // SAFETY: an accumulator holds 16 ≥ ROWS f32 (asserted by the caller), as many bytes as `Out`
    // or more; unaligned reads and writes.
    let load = |acc: &[f32; 16]| unsafe { acc.as_ptr().cast::<L::Out>().read_unaligned() };
    let mut t = 0;
    macro_rules! tiles {
        ($($n:literal)*) => {
            loop {
                match (n_tok - t).min(L::TILE) {
                    $($n => {
                        let init: [L::Out; $n] = std::array::from_fn(|j| load(&accs[t + j]));
                        // SAFETY: `packed` holds `run` packed blocks (the caller packed them);
                        // tokens t..t + n ≤ n_tok have blocks b0..b0 + run in `a` and their terms
                        // in `da` / `corr` (asserted above).
                        let acc = unsafe {
                            L::tile::<$n>(
                                run,
                                packed,
                                std::array::from_fn(|j| at(t + j)),
                                std::array::from_fn(|j| term(t + j)),
                                init,
                            )
                        };
                        for (j, v) in acc.iter().enumerate() {
                            // SAFETY: as for `load`.
                            unsafe { accs[t + j].as_mut_ptr().cast::<L::Out>().write_unaligned(*v) };
                        }
                        t += $n;
                    })*
                    _ => break,
                }
            }
        };
    }
    tiles!(1 2 3 4 5 6 7 8);
}

// ---------------------------------------------------------------------------------------------
// Float weights × f32 activations
// ---------------------------------------------------------------------------------------------

/// A float weight type: 8 elements at a time as f32.
trait FloatElem {
    const BYTES: usize;
    /// # Safety
    /// `p` points at 8 elements; the CPU has AVX2 and F16C.
    unsafe fn load8(p: *const u8) -> __m256;
    /// One element (the tail).
    fn get(w: &[u8], i: usize) -> f32;
}

struct F32;
struct F16;
struct BF16;

impl FloatElem for F32 {
    const BYTES: usize = 4;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 32 readable bytes at `p` (caller); `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(p.cast()) }
    }
    fn get(w: &[u8], i: usize) -> f32 {
        f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
    }
}

impl FloatElem for F16 {
    const BYTES: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 16 readable bytes at `p` (caller).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    fn get(w: &[u8], i: usize) -> f32 {
        f16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]))
    }
}

impl FloatElem for BF16 {
    const BYTES: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 16 readable bytes at `p` (caller).
        let h = unsafe { _mm_loadu_si128(p.cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    fn get(w: &[u8], i: usize) -> f32 {
        bf16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]))
    }
}

fn float_dot<E: FloatElem>(n: usize, w: &[u8], x: &[f32]) -> f32 {
    check_float(n, w.len(), E::BYTES, x.len());
    // SAFETY: reachable only through `kernels()`; sizes checked.
    unsafe { float_x4_avx2::<E, 1>(n, [w], x)[0] }
}

fn float_x4<E: FloatElem>(n: usize, w: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
    for wr in w {
        check_float(n, wr.len(), E::BYTES, x.len());
    }
    // SAFETY: reachable only through `kernels()`; sizes checked.
    unsafe { float_x4_avx2::<E, 4>(n, w, x) }
}

fn float_axpy<E: FloatElem>(n: usize, p: f32, w: &[u8], out: &mut [f32]) {
    check_float(n, w.len(), E::BYTES, out.len());
    // SAFETY: reachable only through `kernels()`; sizes checked.
    unsafe { float_axpy_avx2::<E>(n, p, w, out) }
}

/// `out += p · w`, eight elements at a time (mul then add, as the spec).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_axpy_avx2<E: FloatElem>(n: usize, p: f32, w: &[u8], out: &mut [f32]) {
    let pv = _mm256_set1_ps(p);
    let (wp, op) = (w.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    // SAFETY: `w` holds n elements of E::BYTES and `out` n f32 (checked by the caller);
    // every access below is to elements i..i+8 ≤ n.
    unsafe {
        while i + 8 <= n {
            let o = _mm256_loadu_ps(op.add(i));
            let v = _mm256_add_ps(o, _mm256_mul_ps(pv, E::load8(wp.add(i * E::BYTES))));
            _mm256_storeu_ps(op.add(i), v);
            i += 8;
        }
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        *o += p * E::get(w, j);
    }
}

/// `R` rows at once, each with two 8-lane accumulators (the spec's two sets).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_x4_avx2<E: FloatElem, const R: usize>(
    n: usize,
    w: [&[u8]; R],
    x: &[f32],
) -> [f32; R] {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let xp = x.as_ptr();
    let mut i = 0;
    // SAFETY: every row holds `n` elements and `x` holds `n` floats (checked by the caller);
    // each load reads elements i..i+8 with i + 8 <= n.
    unsafe {
        while i + 16 <= n {
            let x0 = _mm256_loadu_ps(xp.add(i));
            let x1 = _mm256_loadu_ps(xp.add(i + 8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let p = w[r].as_ptr().add(i * E::BYTES);
                acc_r[0] = _mm256_add_ps(acc_r[0], _mm256_mul_ps(E::load8(p), x0));
                acc_r[1] =
                    _mm256_add_ps(acc_r[1], _mm256_mul_ps(E::load8(p.add(8 * E::BYTES)), x1));
            }
            i += 16;
        }
        if i + 8 <= n {
            // Chunk i / 8 is even here: set 0.
            let x0 = _mm256_loadu_ps(xp.add(i));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let p = w[r].as_ptr().add(i * E::BYTES);
                acc_r[0] = _mm256_add_ps(acc_r[0], _mm256_mul_ps(E::load8(p), x0));
            }
            i += 8;
        }
    }
    std::array::from_fn(|r| {
        let mut lanes = [[0.0f32; 8]; 2];
        for (s, v) in acc[r].iter().enumerate() {
            // SAFETY: storing 8 floats into an 8-float array.
            unsafe { _mm256_storeu_ps(lanes[s].as_mut_ptr(), *v) };
        }
        for (j, &xv) in x.iter().enumerate().skip(i) {
            lanes[(j / 8) % 2][j % 8] += E::get(w[r], j) * xv;
        }
        fold_lanes(lanes)
    })
}
