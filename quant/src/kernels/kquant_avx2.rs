//! K-quant kernels for x86-64 with AVX2 + FMA + F16C: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K against
//! Q8_K activations. Every function gives the same bits as its scalar spec in `kquant_scalar.rs`
//! (see the module docs of [`super`]).
//!
//! A super-block is 8 groups of 32 elements. Each group's weight quants are made unsigned bytes
//! (`q`: Q2_K 0..3, Q3_K `q + 4` in 0..7, Q4_K 0..15, Q5_K 0..31, Q6_K `q + 32` in 0..63) and
//! multiplied with the activation bytes by `maddubs` (pairs into `i16`, at most 2·63·128: no
//! saturation), then by the group's scales by `madd` (into `i32`: the sub-block scale times the
//! pair sums). The offsets come from the activation's `bsums` with one more `madd`: the mins for
//! Q2_K / Q4_K / Q5_K, `32 · Σ sc·bsum` for Q6_K and `4 · Σ sc·bsum` for Q3_K.
//! All of it is exact integer arithmetic, so only the float part (four rows in the lanes of one
//! `__m128`, operation for operation as the spec) decides the bits.
//!
//! The shapes:
//! - `dot_x4`, decode (four rows, one token): `k4_rows4_avx2` for Q4_K / Q5_K and
//!   `s16_rows4_avx2` for Q2_K / Q3_K / Q6_K, which unpack scales with byte shuffles and keep the
//!   vector work per group to a load, a quant split, `maddubs`, `madd` and an add; `dot`
//!   (`kquant_dot`, one row through the group decoder) for the rows they leave over;
//! - `gemm_4`, prompts and batches: four rows decoded once per super-block to the stack, then
//!   every token, eight at a time; `tile_4x4` (four tokens) is kept for the common kernel shape
//!   and its tests;
//! - `gemm_8`, prompts from a few tokens, all five types: eight rows in the 32-bit lanes of one
//!   vector (packed once per super-block), so a tile of four tokens needs no horizontal adds
//!   (`lanes_rows`).
//!
//! [`kernels`] must only be installed in a table that is handed out after the AVX2/FMA/F16C check
//! (`x86_avx2::kernels`): the safe wrappers below rely on it.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::kquant_scalar::{check_gemm_4, check_kquant, quantize_row_q8_k};
use super::x86_avx2::transpose8x4;
use super::{check_tokens, row_span, KQuantKernels, KQuantOps, Q8_K_BYTES, QK_K};

/// The multi-row kernels of one block type, with `$x4` its four-row decode kernel.
macro_rules! kquant {
    ($b:ty, $x4:expr, $gemm_8:expr) => {
        KQuantOps {
            kernels: quant_kernels_by_4!(
                kquant_dot::<$b>,
                $x4,
                kquant_tile::<$b>,
                (QK_K, <$b as KBlock>::BYTES, Q8_K_BYTES)
            ),
            gemm_4: kquant_gemm::<$b>,
            gemm_8: $gemm_8,
        }
    };
}

/// `$body` once for each literal `$n`, with `$g` that literal in the copy: the group decoders
/// pick their shifts and shuffles by `g`, and with a literal every choice folds away (a loop left
/// to the optimizer was not unrolled, and its `g`-dependent shifts became variable shifts).
macro_rules! unroll {
    ($g:ident in [$($n:literal)*] => $body:block) => {{
        $({
            let $g: usize = $n;
            $body
        })*
    }};
}

/// [`unroll!`] over 0 .. 8.
macro_rules! unroll8 {
    ($g:ident => $body:block) => {
        unroll!($g in [0 1 2 3 4 5 6 7] => $body)
    };
}

/// [`unroll!`] over 0 .. 4.
macro_rules! unroll4 {
    ($g:ident => $body:block) => {
        unroll!($g in [0 1 2 3] => $body)
    };
}

/// The AVX2 K-quant table (see the module docs for when it may be used).
pub(super) fn kernels() -> KQuantKernels {
    KQuantKernels {
        quantize_row_q8_k,
        q2_k: kquant!(Q2K, s16_rows4::<Q2K>, Some(gemm_8::<Q2K>)),
        q3_k: kquant!(Q3K, s16_rows4::<Q3K>, Some(gemm_8::<Q3K>)),
        q4_k: kquant!(Q4K, q4_k_rows4, Some(gemm_8::<Q4K>)),
        q5_k: kquant!(Q5K, q5_k_rows4, Some(gemm_8::<Q5K>)),
        q6_k: kquant!(Q6K, s16_rows4::<Q6K>, Some(gemm_8::<Q6K>)),
    }
}

/// A K-quant weight block type, group by group.
trait KBlock {
    const BYTES: usize;
    /// Whether the spec's float part has the min term (else the `bsums` term is the offset that
    /// made the quants unsigned).
    const MINS: bool;
    /// Without mins: the quants are read as `q + 2^OFFSET_SHIFT` (unsigned, for `maddubs`), so
    /// `2^OFFSET_SHIFT · Σ factor·bsum` comes off the integer sum (Q6_K: 32, Q3_K: 4).
    const OFFSET_SHIFT: i32 = 5;
    /// Byte offsets of the f16 super-block scale and min scale (the latter unused without mins).
    const D: usize;
    const DMIN: usize;
    /// Per-row, per-super-block state (unpacked scales, ...).
    type Pre: Copy;
    /// # Safety
    /// `w` points at a whole weight block; the CPU has AVX2.
    unsafe fn pre(w: *const u8) -> Self::Pre;
    /// Group `g` (0..8: elements `32g .. 32g + 32`): the unsigned quant bytes and the `i16` scale
    /// of each pair of them.
    /// # Safety
    /// As for [`KBlock::pre`], `pre` made from the same `w`.
    unsafe fn group(w: *const u8, pre: &Self::Pre, g: usize) -> (__m256i, __m256i);
    /// The 16 `i16` factors of the activation's 16 `bsums`: `Σ factor·bsum` is `msum` with mins,
    /// and `Σ sc·bsum` (to be taken 32 times from `isum`) without.
    /// # Safety
    /// The CPU has AVX2.
    unsafe fn bsum_factors(pre: &Self::Pre) -> __m256i;
    /// The multi-token kernels' copy of a row's 8 group scale vectors, written once per
    /// super-block and read by [`KBlock::tile_scale`] once per group and token chunk.
    /// # Safety
    /// As for [`KBlock::group`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_scales(w: *const u8, pre: &Self::Pre, out: &mut [__m256i; 8]) {
        // SAFETY: as the caller vouches (the quants the optimizer drops as unused).
        unsafe {
            unroll8!(g => {
                out[g] = Self::group(w, pre, g).1;
            });
        }
    }
    /// Group `g`'s scale vector from what [`KBlock::tile_scales`] wrote at `src`.
    /// # Safety
    /// `src` is what `tile_scales` wrote; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_scale(src: *const __m256i, g: usize) -> __m256i {
        // SAFETY: g < 8 and `src` holds 8 vectors.
        unsafe { _mm256_load_si256(src.add(g)) }
    }
}

struct Q2K;
struct Q3K;
struct Q4K;
struct Q5K;
struct Q6K;

/// The 8 six-bit scales and mins of Q4_K / Q5_K from the 12 packed bytes at `w + 4`, byte `j`
/// of each `u64` for sub-block `j`.
///
/// # Safety
/// `w + 4 .. w + 16` is readable.
#[inline]
unsafe fn scales_mins_k4(w: *const u8) -> (u64, u64) {
    // SAFETY: the caller passes 12 readable bytes at w + 4; unaligned reads.
    let (w0, w1, w2) = unsafe {
        (
            w.add(4).cast::<u32>().read_unaligned(),
            w.add(8).cast::<u32>().read_unaligned(),
            w.add(12).cast::<u32>().read_unaligned(),
        )
    };
    // Sub-blocks 0..4: low 6 bits of bytes 0..4 (scales) and 4..8 (mins). Sub-blocks 4..8: low
    // 4 bits from bytes 8..12 (scale: low nibble, min: high nibble), top 2 from the top bits of
    // bytes 0..4 (scales) and 4..8 (mins).
    let sc = u64::from(w0 & 0x3f3f_3f3f)
        | u64::from((w2 & 0x0f0f_0f0f) | ((w0 >> 2) & 0x3030_3030)) << 32;
    let m = u64::from(w1 & 0x3f3f_3f3f)
        | u64::from(((w2 >> 4) & 0x0f0f_0f0f) | ((w1 >> 2) & 0x3030_3030)) << 32;
    (sc, m)
}

/// Q4_K / Q5_K per-super-block state: the 8 scales as `i16` in both 128-bit halves, and the
/// mins as 16 `i16`, each twice (one per `bsum` of its 32-element sub-block).
#[derive(Clone, Copy)]
struct Pre4 {
    scales: __m256i,
    mins: __m256i,
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pre_k4(w: *const u8) -> Pre4 {
    // SAFETY: the caller passes a whole Q4_K / Q5_K block.
    let (sc, m) = unsafe { scales_mins_k4(w) };
    let sc = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64));
    let m = _mm_cvtsi64_si128(m as i64);
    Pre4 {
        scales: _mm256_broadcastsi128_si256(sc),
        mins: _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m)),
    }
}

/// Sub-block `g`'s scale in every `i16` lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_k4(pre: &Pre4, g: usize) -> __m256i {
    let lo = (2 * g) as i16;
    _mm256_shuffle_epi8(pre.scales, _mm256_set1_epi16(lo | (lo + 1) << 8))
}

/// The 8 scales of Q4_K / Q5_K each twice, as 8 `u32`: `[sc_g, sc_g]` as `i16` pairs (what a
/// 32-bit broadcast turns into a scale vector with no shuffle).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_scale_pairs(pre: &Pre4) -> __m256i {
    let x = _mm256_castsi256_si128(pre.scales);
    _mm256_set_m128i(_mm_unpackhi_epi16(x, x), _mm_unpacklo_epi16(x, x))
}

/// Group `g`'s scale vector from [`k4_scale_pairs`] stored at `src`: a broadcast from memory.
///
/// # Safety
/// `src` holds the pairs; g < 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scale_at(src: *const __m256i, g: usize) -> __m256i {
    // SAFETY: the 8 u32 lie in the vector at `src`.
    _mm256_set1_epi32(unsafe { src.cast::<i32>().add(g).read() })
}

/// Nibble `g % 2` of the 32 bytes at `qs + 32 (g / 2)`: sub-block `g`'s low 4 bits.
///
/// # Safety
/// `qs .. qs + 128` is readable; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles_k4(qs: *const u8, g: usize) -> __m256i {
    // SAFETY: g < 8, so the 32 bytes lie inside the 128 the caller vouches for.
    let v = unsafe { _mm256_loadu_si256(qs.add(32 * (g / 2)).cast()) };
    let v = if g.is_multiple_of(2) {
        v
    } else {
        _mm256_srli_epi16::<4>(v)
    };
    _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
}

impl KBlock for Q4K {
    const BYTES: usize = 144;
    const MINS: bool = true;
    const D: usize = 0;
    const DMIN: usize = 2;
    type Pre = Pre4;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pre(w: *const u8) -> Pre4 {
        // SAFETY: as the trait requires.
        unsafe { pre_k4(w) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group(w: *const u8, pre: &Pre4, g: usize) -> (__m256i, __m256i) {
        // SAFETY: the quants are bytes 16..144 of the block.
        let q = unsafe { nibbles_k4(w.add(16), g) };
        (q, scale_k4(pre, g))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bsum_factors(pre: &Pre4) -> __m256i {
        pre.mins
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_scales(_: *const u8, pre: &Pre4, out: &mut [__m256i; 8]) {
        out[0] = k4_scale_pairs(pre);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_scale(src: *const __m256i, g: usize) -> __m256i {
        // SAFETY: as the trait requires.
        unsafe { k4_scale_at(src, g) }
    }
}

impl KBlock for Q5K {
    const BYTES: usize = 176;
    const MINS: bool = true;
    const D: usize = 0;
    const DMIN: usize = 2;
    /// Also the 32 `qh` bytes (bit `g` of byte `l`: bit 4 of sub-block `g`'s element `l`).
    type Pre = (Pre4, __m256i);

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pre(w: *const u8) -> Self::Pre {
        // SAFETY: as the trait requires; qh is bytes 16..48.
        unsafe { (pre_k4(w), _mm256_loadu_si256(w.add(16).cast())) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group(w: *const u8, pre: &Self::Pre, g: usize) -> (__m256i, __m256i) {
        // SAFETY: the low bits are bytes 48..176 of the block.
        let low = unsafe { nibbles_k4(w.add(48), g) };
        let qh = pre.1;
        // Bit g of each qh byte to bit 4 (16-bit shifts: the mask drops what crosses bytes).
        let h = match g {
            0 => _mm256_slli_epi16::<4>(qh),
            1 => _mm256_slli_epi16::<3>(qh),
            2 => _mm256_slli_epi16::<2>(qh),
            3 => _mm256_slli_epi16::<1>(qh),
            4 => qh,
            5 => _mm256_srli_epi16::<1>(qh),
            6 => _mm256_srli_epi16::<2>(qh),
            _ => _mm256_srli_epi16::<3>(qh),
        };
        let q = _mm256_or_si256(low, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
        (q, scale_k4(&pre.0, g))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bsum_factors(pre: &Self::Pre) -> __m256i {
        pre.0.mins
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_scales(_: *const u8, pre: &Self::Pre, out: &mut [__m256i; 8]) {
        out[0] = k4_scale_pairs(&pre.0);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_scale(src: *const __m256i, g: usize) -> __m256i {
        // SAFETY: as the trait requires.
        unsafe { k4_scale_at(src, g) }
    }
}

impl KBlock for Q6K {
    const BYTES: usize = 210;
    const MINS: bool = false;
    const D: usize = 208;
    const DMIN: usize = 208;
    /// The 16 i8 scales (bytes 192..208).
    type Pre = __m128i;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pre(w: *const u8) -> __m128i {
        // SAFETY: as the trait requires.
        unsafe { _mm_loadu_si128(w.add(192).cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group(w: *const u8, pre: &__m128i, g: usize) -> (__m256i, __m256i) {
        // Group g = 4h + s: element 128h + 32s + l has its low 4 bits in nibble s / 2 of
        // ql[64h + 32 (s % 2) + l] and its high 2 bits at bits 2s.. of qh[32h + l].
        let (h, s) = (g / 4, g % 4);
        // SAFETY: ql is bytes 0..128 and qh 128..192 of the block; h < 2, s < 4.
        let (ql, qh) = unsafe {
            (
                _mm256_loadu_si256(w.add(64 * h + 32 * (s % 2)).cast()),
                _mm256_loadu_si256(w.add(128 + 32 * h).cast()),
            )
        };
        let ql = if s < 2 {
            ql
        } else {
            _mm256_srli_epi16::<4>(ql)
        };
        let low = _mm256_and_si256(ql, _mm256_set1_epi8(0x0f));
        // Bits 2s, 2s + 1 to bits 4, 5.
        let qh = match s {
            0 => _mm256_slli_epi16::<4>(qh),
            1 => _mm256_slli_epi16::<2>(qh),
            2 => qh,
            _ => _mm256_srli_epi16::<2>(qh),
        };
        let q = _mm256_or_si256(low, _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
        (q, scales16_pair(*pre, g))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bsum_factors(pre: &__m128i) -> __m256i {
        _mm256_cvtepi8_epi16(*pre)
    }
}

/// The scale vector of group `g` for the types with 16 scales (i8 in `sc`, one per 16-element
/// sub-block): elements 0..16 of the group are sub-block 2g, 16..32 sub-block 2g + 1, so scale
/// byte 2g (8 times) then 2g + 1 (8 times), sign-extended.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales16_pair(sc: __m128i, g: usize) -> __m256i {
    let (lo, hi) = ((2 * g) as i64, (2 * g + 1) as i64);
    let pick = _mm_set_epi64x(hi * 0x0101_0101_0101_0101, lo * 0x0101_0101_0101_0101);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick))
}

/// Group `g`'s two-bit quants of Q2_K / Q3_K: bits `2 (g % 4)` of the 32 bytes at
/// `qs + 32 (g / 4)` (element `128 h + 32 j + l` is in bits `2j` of `qs[32 h + l]`).
///
/// # Safety
/// `qs .. qs + 64` is readable; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn crumbs(qs: *const u8, g: usize) -> __m256i {
    // SAFETY: g < 8, so the 32 bytes lie inside the 64 the caller vouches for.
    let v = unsafe { _mm256_loadu_si256(qs.add(32 * (g / 4)).cast()) };
    let v = match g % 4 {
        0 => v,
        1 => _mm256_srli_epi16::<2>(v),
        2 => _mm256_srli_epi16::<4>(v),
        _ => _mm256_srli_epi16::<6>(v),
    };
    _mm256_and_si256(v, _mm256_set1_epi8(3))
}

impl KBlock for Q2K {
    const BYTES: usize = 84;
    const MINS: bool = true;
    const D: usize = 80;
    const DMIN: usize = 82;
    /// The 16 four-bit scales (as bytes) and the 16 mins as `i16`, one per 16-element sub-block.
    type Pre = (__m128i, __m256i);

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pre(w: *const u8) -> Self::Pre {
        // SAFETY: as the trait requires; scales are bytes 0..16 (scale low nibble, min high).
        let s = unsafe { _mm_loadu_si128(w.cast()) };
        let m4 = _mm_set1_epi8(0x0f);
        let mins = _mm_and_si128(_mm_srli_epi16::<4>(s), m4);
        (_mm_and_si128(s, m4), _mm256_cvtepu8_epi16(mins))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group(w: *const u8, pre: &Self::Pre, g: usize) -> (__m256i, __m256i) {
        // SAFETY: the quants are bytes 16..80 of the block.
        let q = unsafe { crumbs(w.add(16), g) };
        (q, scales16_pair(pre.0, g))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bsum_factors(pre: &Self::Pre) -> __m256i {
        pre.1
    }
}

impl KBlock for Q3K {
    const BYTES: usize = 110;
    const MINS: bool = false;
    const OFFSET_SHIFT: i32 = 2;
    const D: usize = 108;
    const DMIN: usize = 108;
    /// The 16 six-bit scales minus 32, as i8.
    type Pre = __m128i;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pre(w: *const u8) -> __m128i {
        // SAFETY: as the trait requires; the 12 packed scale bytes are 96..108 (unaligned reads).
        let (lo, hi, top) = unsafe {
            (
                w.add(96).cast::<u32>().read_unaligned(),
                w.add(100).cast::<u32>().read_unaligned(),
                w.add(104).cast::<u32>().read_unaligned(),
            )
        };
        // Scale i: low nibble of byte i (i < 8) or high nibble of byte i - 8, and bits
        // 2 (i / 4) .. of byte 8 + i % 4 on top (as `BlockQ3K::unpacked_scales`).
        let (m4, m2) = (0x0f0f_0f0f_u32, 0x0303_0303_u32);
        let s = |low: u32, shift: u32| (low & m4) | (((top >> shift) & m2) << 4);
        let v = _mm_setr_epi32(
            s(lo, 0) as i32,
            s(hi, 2) as i32,
            s(lo >> 4, 4) as i32,
            s(hi >> 4, 6) as i32,
        );
        _mm_sub_epi8(v, _mm_set1_epi8(32))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group(w: *const u8, pre: &__m128i, g: usize) -> (__m256i, __m256i) {
        // SAFETY: hmask is bytes 0..32 and the two-bit quants 32..96 of the block.
        let (low, hm) = unsafe { (crumbs(w.add(32), g), _mm256_loadu_si256(w.cast())) };
        // Bit g of each hmask byte (set: q = low, clear: q = low - 4) to bit 2: q + 4.
        let h = match g {
            0 => _mm256_slli_epi16::<2>(hm),
            1 => _mm256_slli_epi16::<1>(hm),
            2 => hm,
            3 => _mm256_srli_epi16::<1>(hm),
            4 => _mm256_srli_epi16::<2>(hm),
            5 => _mm256_srli_epi16::<3>(hm),
            6 => _mm256_srli_epi16::<4>(hm),
            _ => _mm256_srli_epi16::<5>(hm),
        };
        let q = _mm256_or_si256(low, _mm256_and_si256(h, _mm256_set1_epi8(4)));
        (q, scales16_pair(*pre, g))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bsum_factors(pre: &__m128i) -> __m256i {
        _mm256_cvtepi8_epi16(*pre)
    }
}

/// The sums of the 8 lanes of each of four vectors: `[Σp0, Σp1, Σp2, Σp3]` (exact, wrapping).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum4(p: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// Four f16 values as f32 (F16C; exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16x4(s: [u16; 4]) -> __m128 {
    let packed =
        u64::from(s[0]) | u64::from(s[1]) << 16 | u64::from(s[2]) << 32 | u64::from(s[3]) << 48;
    _mm_cvtph_ps(_mm_cvtsi64_si128(packed as i64))
}

/// The f16 at `p`.
///
/// # Safety
/// `p`, `p + 1` are readable.
#[inline]
unsafe fn f16_bits(p: *const u8) -> u16 {
    // SAFETY: as the caller vouches.
    unsafe { u16::from_le_bytes([*p, *p.add(1)]) }
}

/// One super-block's integer sums for up to four rows (`iv`: the scaled group products, `bv`: the
/// `bsums` products, one vector a row) as the float part wants them: `(isum, msum)` per lane
/// (`msum` zero without mins).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn finish<B: KBlock>(iv: [__m256i; 4], bv: [__m256i; 4]) -> (__m128, __m128) {
    let isum = isum4(iv);
    let bsum = isum4(bv);
    if B::MINS {
        (_mm_cvtepi32_ps(isum), _mm_cvtepi32_ps(bsum))
    } else {
        let isum = _mm_sub_epi32(
            isum,
            _mm_sll_epi32(bsum, _mm_cvtsi32_si128(B::OFFSET_SHIFT)),
        );
        (_mm_cvtepi32_ps(isum), _mm_setzero_ps())
    }
}

/// The spec's float part for four lanes: `acc + ((dw·da)·isum − (dmin·da)·msum)`, or
/// `acc + (dw·da)·isum` without mins.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn accumulate<B: KBlock>(
    acc: __m128,
    dw: __m128,
    dmin: __m128,
    da: __m128,
    (isum, msum): (__m128, __m128),
) -> __m128 {
    let t = _mm_mul_ps(_mm_mul_ps(dw, da), isum);
    if B::MINS {
        _mm_add_ps(acc, _mm_sub_ps(t, _mm_mul_ps(_mm_mul_ps(dmin, da), msum)))
    } else {
        _mm_add_ps(acc, t)
    }
}

/// The activation block's f32 scale in all four lanes.
///
/// # Safety
/// `ab .. ab + 4` is readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn act_scale(ab: *const u8) -> __m128 {
    // SAFETY: as the caller vouches; unaligned read.
    _mm_set1_ps(unsafe { ab.cast::<f32>().read_unaligned() })
}

/// Prefetches, for each row pointer `p` (at the current super-block), the super-block `ahead`
/// bytes further on: with `ahead` the size of the rows handed to one call, that is the same
/// super-block of the rows the next call will read (rows of a matrix are contiguous). Each call
/// starts 4 new streams of short rows (2.3 KB for a 4096-wide Q4_K row), which the hardware
/// prefetchers learn too late: reading one row group ahead took the 4-row Q4_K decode kernel
/// from 9 to 16 GB/s on a 14336 × 4096 matrix (one Zen 3 core). A prefetch never faults, so
/// the address may lie past the matrix; `wrapping_add` keeps the arithmetic defined.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_next_group<B: KBlock, const R: usize>(wb: [*const u8; R], ahead: usize) {
    prefetch_group::<B, R, _MM_HINT_T0>(wb, ahead);
}

/// [`prefetch_next_group`] with the cache level as `HINT` (`_MM_HINT_T0`: L1, `_MM_HINT_T1`: L2).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_group<B: KBlock, const R: usize, const HINT: i32>(wb: [*const u8; R], ahead: usize) {
    for p in wb {
        // The lines of [p + ahead, p + ahead + BYTES): every 64 bytes from its start, and its end.
        let mut off = 0;
        while off < B::BYTES {
            _mm_prefetch::<HINT>(p.wrapping_add(ahead + off).cast());
            off += 64;
        }
        _mm_prefetch::<HINT>(p.wrapping_add(ahead + B::BYTES - 1).cast());
    }
}

/// One row against one activation row, through the type's group decoder (the rows a four-row
/// decode kernel leaves over, and the reference the four-row kernels are written against).
fn kquant_dot<B: KBlock>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_kquant(n, w.len(), B::BYTES, a.len());
    // SAFETY: reachable only through a table built after the AVX2/FMA/F16C check; sizes checked.
    unsafe { kquant_dot_avx2::<B>(n / QK_K, w.as_ptr(), a.as_ptr()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kquant_dot_avx2<B: KBlock>(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = _mm_setzero_ps();
    let z = _mm256_setzero_si256();
    // SAFETY: the row holds `nb` weight blocks and `a` `nb` Q8_K blocks (checked by the caller);
    // every pointer below is into a block with index b < nb.
    unsafe {
        for b in 0..nb {
            let ab = a.add(b * Q8_K_BYTES);
            let wb = w.add(b * B::BYTES);
            prefetch_next_group::<B, 1>([wb], nb * B::BYTES);
            let pre = B::pre(wb);
            let mut iv = z;
            unroll8!(g => {
                let av = _mm256_loadu_si256(ab.add(4 + 32 * g).cast());
                let (q, s) = B::group(wb, &pre, g);
                iv = _mm256_add_epi32(iv, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), s));
            });
            let bs = _mm256_loadu_si256(ab.add(260).cast());
            let bv = _mm256_madd_epi16(B::bsum_factors(&pre), bs);
            let dw = f16x4([f16_bits(wb.add(B::D)), 0, 0, 0]);
            let dmin = f16x4([f16_bits(wb.add(B::DMIN)), 0, 0, 0]);
            let sums = finish::<B>([iv, z, z, z], [bv, z, z, z]);
            acc = accumulate::<B>(acc, dw, dmin, act_scale(ab), sums);
        }
    }
    _mm_cvtss_f32(acc)
}

/// Q4_K's decode kernel (and, with the fifth bit, Q5_K's): four rows against one Q8_K activation row, as [`kquant_dot`] computes
/// it (same integer sums, same float steps, so the same bits) with fewer instructions. The generic
/// kernel ran at ~4.3 instructions a cycle on Zen 3 with the weights in L2, so instructions were
/// the limit: this one unpacks the scales and mins with byte shuffles instead of scalar code,
/// converts the four rows' `d`/`dmin` in one `vcvtph2ps`, keeps each row's scales as `i16`
/// pairs in memory so that a group's scale vector is one broadcast load, and walks 64 elements
/// (one 32-byte load of quants) at a time with no spills.
fn q4_k_rows4(n: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4] {
    k4_rows4::<Q4K, false>(n, w, a)
}

/// Q5_K's decode kernel: [`q4_k_rows4`] with each group's fifth bit from `qh`.
fn q5_k_rows4(n: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4] {
    k4_rows4::<Q5K, true>(n, w, a)
}

/// [`k4_rows4_avx2`] with the sizes checked (`B` is Q4K without, Q5K with the fifth bit `HIGH`).
fn k4_rows4<B: KBlock, const HIGH: bool>(n: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4] {
    for wr in w {
        check_kquant(n, wr.len(), B::BYTES, a.len());
    }
    // SAFETY: reachable only through a table built after the AVX2/FMA/F16C check; sizes checked.
    unsafe { k4_rows4_avx2::<B, HIGH>(n / QK_K, w.map(|r| r.as_ptr()), a.as_ptr()) }
}

/// The scales (bytes 0..8) and mins (bytes 8..16) of two Q4_K / Q5_K blocks, one a 128-bit lane,
/// from their first 16 bytes (`d`, `dmin`, the 12 packed bytes) in the same lanes: the same six-bit
/// values as [`scales_mins_k4`], unpacked with byte shuffles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales_mins_k4_x2(head: __m256i) -> __m256i {
    let lanes = |v: __m128i| _mm256_broadcastsi128_si256(v);
    // Packed byte i sits at head[4 + i]. a = [s0..4, s8..12, s4..8, s8..12];
    // b = [0, s0..4, 0, s4..8].
    let a = _mm256_shuffle_epi8(
        head,
        lanes(_mm_setr_epi8(
            4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15,
        )),
    );
    let b = _mm256_shuffle_epi8(
        head,
        lanes(_mm_setr_epi8(
            -128, -128, -128, -128, 4, 5, 6, 7, -128, -128, -128, -128, 8, 9, 10, 11,
        )),
    );
    // Low bits: scales 0..4 and mins 0..4 are the low 6 bits; scales 4..8 the low nibble of
    // s8..12, mins 4..8 its high nibble.
    let low = _mm256_or_si256(
        _mm256_and_si256(
            a,
            lanes(_mm_setr_epi8(
                63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0,
            )),
        ),
        _mm256_and_si256(
            _mm256_srli_epi16::<4>(a),
            lanes(_mm_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15,
            )),
        ),
    );
    // High bits of scales / mins 4..8: the top two bits of s0..4 / s4..8, to bits 4 and 5.
    let high = _mm256_and_si256(
        _mm256_srli_epi16::<2>(b),
        lanes(_mm_setr_epi8(
            0, 0, 0, 0, 48, 48, 48, 48, 0, 0, 0, 0, 48, 48, 48, 48,
        )),
    );
    _mm256_or_si256(low, high)
}

/// `_mm256_set1_epi32(*p)` as one `vpbroadcastd` from memory: a load, no vector ALU work. In
/// asm because LLVM otherwise forwards the value from the store that wrote it and rebuilds the
/// vector with two shuffles.
///
/// # Safety
/// `p` is readable for 4 bytes; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn broadcast_u32(p: *const u32) -> __m256i {
    let v: __m256i;
    // SAFETY: as the caller vouches; the asm reads 4 bytes at p and writes only `v`.
    unsafe {
        std::arch::asm!(
            "vpbroadcastd {v}, dword ptr [{p}]",
            p = in(reg) p,
            v = out(ymm_reg) v,
            options(pure, readonly, nostack, preserves_flags)
        );
    }
    v
}

/// What [`k4_rows4_avx2`] prepares for one super-block of its four rows, one super-block ahead:
/// the min products (`mv`: lane `h` of `mv[p]` holds row `2p + h`'s four partial sums) and the
/// rows' `d` / `dmin` as f32. The scale pairs go to memory at the same time.
#[derive(Clone, Copy)]
struct Q4kAhead {
    mv: [__m256i; 2],
    dw: __m128,
    dmin: __m128,
}

/// Prepares super-block `b` (see [`Q4kAhead`]) and writes its scale pairs to `pairs`: vector
/// `2p` holds groups 0..4 and `2p + 1` groups 4..8 of rows `2p` (lane 0) and `2p + 1` (lane 1),
/// each scale as the u32 `[sc_g, sc_g]` (two i16).
///
/// # Safety
/// `wb` are the rows' blocks and `ab` the activation block of this super-block; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_ahead(wb: [*const u8; 4], ab: *const u8, pairs: *mut __m256i) -> Q4kAhead {
    let lanes = |v: __m128i| _mm256_broadcastsi128_si256(v);
    let pair_lo = lanes(_mm_setr_epi8(
        0, -128, 0, -128, 1, -128, 1, -128, 2, -128, 2, -128, 3, -128, 3, -128,
    ));
    let pair_hi = lanes(_mm_setr_epi8(
        4, -128, 4, -128, 5, -128, 5, -128, 6, -128, 6, -128, 7, -128, 7, -128,
    ));
    let min_i16 = lanes(_mm_setr_epi8(
        8, -128, 9, -128, 10, -128, 11, -128, 12, -128, 13, -128, 14, -128, 15, -128,
    ));
    // SAFETY: as the caller vouches: 16 bytes at each block start, the bsums at ab + 260.
    unsafe {
        let head = wb.map(|p| _mm_loadu_si128(p.cast()));
        // The activation's 8 sums of 32 (pairs of its 16 bsums; at most 32 * 127 in i16), in
        // both lanes: the min term is then one `madd` for two rows.
        let bs8 = lanes(_mm_hadd_epi16(
            _mm_loadu_si128(ab.add(260).cast()),
            _mm_loadu_si128(ab.add(276).cast()),
        ));
        let mut mv = [_mm256_setzero_si256(); 2];
        for p in 0..2 {
            let sm = scales_mins_k4_x2(_mm256_set_m128i(head[2 * p + 1], head[2 * p]));
            _mm256_storeu_si256(pairs.add(2 * p), _mm256_shuffle_epi8(sm, pair_lo));
            _mm256_storeu_si256(pairs.add(2 * p + 1), _mm256_shuffle_epi8(sm, pair_hi));
            mv[p] = _mm256_madd_epi16(_mm256_shuffle_epi8(sm, min_i16), bs8);
        }
        // [d0, dmin0, d1, dmin1, ...] as f16, then the d's to the low half.
        let dd = _mm_unpacklo_epi64(
            _mm_unpacklo_epi32(head[0], head[1]),
            _mm_unpacklo_epi32(head[2], head[3]),
        );
        let dd = _mm256_permutevar8x32_ps(
            _mm256_cvtph_ps(dd),
            _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7),
        );
        Q4kAhead {
            mv,
            dw: _mm256_castps256_ps128(dd),
            dmin: _mm256_extractf128_ps::<1>(dd),
        }
    }
}

/// Four Q4_K (`HIGH` false) or Q5_K (`HIGH` true, `B` = Q5K) rows against one Q8_K row.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; each `w[r]` holds `nb` blocks of `B` and `a` `nb` Q8_K blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_rows4_avx2<B: KBlock, const HIGH: bool>(
    nb: usize,
    w: [*const u8; 4],
    a: *const u8,
) -> [f32; 4] {
    // The low four bits of each quant follow the 32 `qh` bytes in Q5_K.
    let qs = if HIGH { 48 } else { 16 };
    let mut acc = _mm_setzero_ps();
    if nb == 0 {
        return [0.0; 4];
    }
    let m4 = _mm256_set1_epi8(0x0f);
    let bit4 = _mm256_set1_epi8(0x10);
    // Two sets of scale pairs (see `q4_k_ahead`): this super-block's and the next one's, written
    // a whole super-block before they are read, so that the broadcasts load from the cache
    // rather than wait on store forwarding (which cost 12% of the kernel's time).
    let mut pairs = [[_mm256_setzero_si256(); 4]; 2];
    // SAFETY: each row holds `nb` weight blocks and `a` `nb` Q8_K blocks (checked by the caller);
    // every pointer below is into a block with index b < nb, or into `pairs`.
    unsafe {
        let mut ahead = q4_k_ahead(w, a, pairs[0].as_mut_ptr());
        for b in 0..nb {
            let ab = a.add(b * Q8_K_BYTES);
            let wb = w.map(|p| p.add(b * B::BYTES));
            prefetch_next_group::<B, 4>(wb, 4 * nb * B::BYTES);
            let cur = ahead;
            if b + 1 < nb {
                let next = pairs[(b + 1) % 2].as_mut_ptr();
                ahead = q4_k_ahead(wb.map(|p| p.add(B::BYTES)), ab.add(Q8_K_BYTES), next);
            }
            let pp = pairs[b % 2].as_ptr().cast::<u32>();
            let at = |r: usize, g: usize| pp.add(16 * (r / 2) + 8 * (g / 4) + 4 * (r % 2) + g % 4);
            let mut iv = [_mm256_setzero_si256(); 4];
            unroll4!(j => {
                let a0 = _mm256_loadu_si256(ab.add(4 + 64 * j).cast());
                let a1 = _mm256_loadu_si256(ab.add(36 + 64 * j).cast());
                for r in 0..4 {
                    let raw = _mm256_loadu_si256(wb[r].add(qs + 32 * j).cast());
                    let mut lo = _mm256_and_si256(raw, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                    if HIGH {
                        // Bit 2j (group 2j) and 2j + 1 of each qh byte to bit 4 (reloaded from
                        // L1 each time: four rows' qh held in registers spilled).
                        let qh = _mm256_loadu_si256(wb[r].add(16).cast());
                        let (h0, h1) = match j {
                            0 => (_mm256_slli_epi16::<4>(qh), _mm256_slli_epi16::<3>(qh)),
                            1 => (_mm256_slli_epi16::<2>(qh), _mm256_slli_epi16::<1>(qh)),
                            2 => (qh, _mm256_srli_epi16::<1>(qh)),
                            _ => (_mm256_srli_epi16::<2>(qh), _mm256_srli_epi16::<3>(qh)),
                        };
                        lo = _mm256_or_si256(lo, _mm256_and_si256(h0, bit4));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(h1, bit4));
                    }
                    let s0 = broadcast_u32(at(r, 2 * j));
                    let s1 = broadcast_u32(at(r, 2 * j + 1));
                    let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), s0);
                    let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), s1);
                    iv[r] = _mm256_add_epi32(iv[r], _mm256_add_epi32(p0, p1));
                }
            });
            let h = _mm256_hadd_epi32(cur.mv[0], cur.mv[1]);
            let h = _mm256_hadd_epi32(h, h);
            let msum =
                _mm_unpacklo_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let sums = (_mm_cvtepi32_ps(isum4(iv)), _mm_cvtepi32_ps(msum));
            acc = accumulate::<B>(acc, cur.dw, cur.dmin, act_scale(ab), sums);
        }
    }
    let mut out = [0.0f32; 4];
    // SAFETY: storing 4 floats into a 4-float array.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// A type with sixteen scales, one per 16-element sub-block (Q2_K, Q3_K, Q6_K), as the lean
/// decode kernel [`s16_rows4_avx2`] reads it.
trait Scales16: KBlock {
    /// The 16 scales as `i16` (offsets removed) and the 16 `i16` factors of the activation's
    /// `bsums` ([`KBlock::bsum_factors`]).
    ///
    /// # Safety
    /// `w` is a whole block; the CPU has AVX2.
    unsafe fn scales16(w: *const u8) -> (__m256i, __m256i);
    /// The unsigned quants of groups `4h .. 4h + 4` (as [`KBlock::group`] gives them).
    ///
    /// # Safety
    /// As for [`Scales16::scales16`]; h < 2.
    unsafe fn quants4(w: *const u8, h: usize) -> [__m256i; 4];
}

/// The unsigned quants of four groups of Q2_K (`HMASK` false) or Q3_K: `q` holds their two-bit
/// parts (group `j` in bits `2j` of each byte); for Q3_K, bit `j` of `hm` (the hmask, already
/// shifted to the four groups) is bit 2 of group `j`'s quant, so the quant is `q + 4` in 0..7.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn crumbs4<const HMASK: bool>(q: __m256i, hm: __m256i) -> [__m256i; 4] {
    let m3 = _mm256_set1_epi8(3);
    let low = [
        _mm256_and_si256(q, m3),
        _mm256_and_si256(_mm256_srli_epi16::<2>(q), m3),
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m3),
        _mm256_and_si256(_mm256_srli_epi16::<6>(q), m3),
    ];
    if !HMASK {
        return low;
    }
    // 16-bit shifts: the mask drops what crosses bytes.
    let high = [
        _mm256_slli_epi16::<2>(hm),
        _mm256_slli_epi16::<1>(hm),
        hm,
        _mm256_srli_epi16::<1>(hm),
    ];
    let m4 = _mm256_set1_epi8(4);
    std::array::from_fn(|j| _mm256_or_si256(low[j], _mm256_and_si256(high[j], m4)))
}

impl Scales16 for Q6K {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales16(w: *const u8) -> (__m256i, __m256i) {
        // SAFETY: as the trait requires.
        let s16 = _mm256_cvtepi8_epi16(unsafe { Q6K::pre(w) });
        (s16, s16)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quants4(w: *const u8, h: usize) -> [__m256i; 4] {
        let (m4, m30) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
        // SAFETY: ql is bytes 0..128 and qh 128..192 of the block; h < 2.
        let (ql0, ql1, qh) = unsafe {
            (
                _mm256_loadu_si256(w.add(64 * h).cast()),
                _mm256_loadu_si256(w.add(64 * h + 32).cast()),
                _mm256_loadu_si256(w.add(128 + 32 * h).cast()),
            )
        };
        let join = |low: __m256i, high: __m256i| {
            _mm256_or_si256(_mm256_and_si256(low, m4), _mm256_and_si256(high, m30))
        };
        [
            join(ql0, _mm256_slli_epi16::<4>(qh)),
            join(ql1, _mm256_slli_epi16::<2>(qh)),
            join(_mm256_srli_epi16::<4>(ql0), qh),
            join(_mm256_srli_epi16::<4>(ql1), _mm256_srli_epi16::<2>(qh)),
        ]
    }
}

impl Scales16 for Q3K {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales16(w: *const u8) -> (__m256i, __m256i) {
        // SAFETY: as the trait requires.
        let s16 = _mm256_cvtepi8_epi16(unsafe { Q3K::pre(w) });
        (s16, s16)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quants4(w: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: hmask is bytes 0..32 and the two-bit quants 32..96 of the block; h < 2.
        let (ql, hm) = unsafe {
            (
                _mm256_loadu_si256(w.add(32 + 32 * h).cast()),
                _mm256_loadu_si256(w.cast()),
            )
        };
        // Groups 4h + j: bits 4h + j of each hmask byte.
        let hm = if h == 0 {
            hm
        } else {
            _mm256_srli_epi16::<4>(hm)
        };
        crumbs4::<true>(ql, hm)
    }
}

impl Scales16 for Q2K {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales16(w: *const u8) -> (__m256i, __m256i) {
        // SAFETY: as the trait requires.
        let (sc, mins) = unsafe { Q2K::pre(w) };
        (_mm256_cvtepu8_epi16(sc), mins)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quants4(w: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: the quants are bytes 16..80 of the block; h < 2.
        let q = unsafe { _mm256_loadu_si256(w.add(16 + 32 * h).cast()) };
        crumbs4::<false>(q, _mm256_setzero_si256())
    }
}

/// The decode kernel of the types with sixteen scales (Q2_K, Q3_K, Q6_K): four rows against one
/// Q8_K activation row, the same sums and float steps as [`kquant_dot`] (so the same bits) with
/// fewer vector ops. Each row's 16 scales are widened once per super-block into two vectors
/// (scales 0..8 and 8..16 in both 128-bit lanes), so a group's scale vector (sub-block `2g` in
/// the low lane, `2g + 1` in the high one) is one in-lane shuffle instead of a shuffle and a
/// widening, and the quants of four groups come from one or two loads.
fn s16_rows4<B: Scales16>(n: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4] {
    for wr in w {
        check_kquant(n, wr.len(), B::BYTES, a.len());
    }
    // SAFETY: reachable only through a table built after the AVX2/FMA/F16C check; sizes checked.
    unsafe { s16_rows4_avx2::<B>(n / QK_K, w.map(|r| r.as_ptr()), a.as_ptr()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn s16_rows4_avx2<B: Scales16>(nb: usize, w: [*const u8; 4], a: *const u8) -> [f32; 4] {
    let mut acc = _mm_setzero_ps();
    // Group k of a half: i16 2k of the low lane, i16 2k + 1 of the high lane, each 8 times.
    let ctl: [__m256i; 4] = std::array::from_fn(|k| {
        let (lo, hi) = ((4 * k) as i16, (4 * k + 2) as i16);
        let lo = lo | (lo + 1) << 8;
        let hi = hi | (hi + 1) << 8;
        _mm256_setr_m128i(_mm_set1_epi16(lo), _mm_set1_epi16(hi))
    });
    // SAFETY: each row holds `nb` weight blocks and `a` `nb` Q8_K blocks (checked by the caller);
    // every pointer below is into a block with index b < nb.
    unsafe {
        for b in 0..nb {
            let ab = a.add(b * Q8_K_BYTES);
            let wb = w.map(|p| p.add(b * B::BYTES));
            prefetch_next_group::<B, 4>(wb, 4 * nb * B::BYTES);
            let bs = _mm256_loadu_si256(ab.add(260).cast());
            // halves[h][r]: row r's scales 8h..8h + 8 in both lanes.
            let mut halves = [[_mm256_setzero_si256(); 4]; 2];
            let mut bv = [_mm256_setzero_si256(); 4];
            for r in 0..4 {
                let (s16, factors) = B::scales16(wb[r]);
                halves[0][r] = _mm256_permute2x128_si256::<0x00>(s16, s16);
                halves[1][r] = _mm256_permute2x128_si256::<0x11>(s16, s16);
                bv[r] = _mm256_madd_epi16(factors, bs);
            }
            let mut iv = [_mm256_setzero_si256(); 4];
            for (h, half) in halves.iter().enumerate() {
                for r in 0..4 {
                    for (sg, qs) in B::quants4(wb[r], h).into_iter().enumerate() {
                        let g = 4 * h + sg;
                        let av = _mm256_loadu_si256(ab.add(4 + 32 * g).cast());
                        let sc = _mm256_shuffle_epi8(half[r], ctl[sg]);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qs, av), sc);
                        iv[r] = _mm256_add_epi32(iv[r], p);
                    }
                }
            }
            let dw = f16x4(wb.map(|p| f16_bits(p.add(B::D))));
            let dmin = if B::MINS {
                f16x4(wb.map(|p| f16_bits(p.add(B::DMIN))))
            } else {
                _mm_setzero_ps()
            };
            acc = accumulate::<B>(acc, dw, dmin, act_scale(ab), finish::<B>(iv, bv));
        }
    }
    let mut out = [0.0f32; 4];
    // SAFETY: storing 4 floats into a 4-float array.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

fn kquant_tile<B: KBlock>(n: usize, w: [&[u8]; 4], a: [&[u8]; 4]) -> [[f32; 4]; 4] {
    for (wr, ar) in w.iter().zip(&a) {
        check_kquant(n, wr.len(), B::BYTES, ar.len());
    }
    // SAFETY: reachable only through a table built after the AVX2/FMA/F16C check; sizes checked.
    unsafe { kquant_tile_avx2::<B>(n / QK_K, w.map(|r| r.as_ptr()), a.map(|r| r.as_ptr())) }
}

/// Four rows against four activation rows. Each weight super-block is decoded once (quants and
/// scales to the stack) for the four tokens; the products run four rows × two tokens at a time,
/// so that the eight `i32` accumulators and the two activation groups stay in registers.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kquant_tile_avx2<B: KBlock>(
    nb: usize,
    w: [*const u8; 4],
    a: [*const u8; 4],
) -> [[f32; 4]; 4] {
    let mut acc = [_mm_setzero_ps(); 4];
    let mut q = [[_mm256_setzero_si256(); 8]; 4];
    let mut sc = [[_mm256_setzero_si256(); 8]; 4];
    // SAFETY: each row holds `nb` weight blocks and each activation row `nb` Q8_K blocks
    // (checked by the caller); every pointer below is into a block with index b < nb.
    unsafe {
        for b in 0..nb {
            let wb = w.map(|p| p.add(b * B::BYTES));
            let ab = a.map(|p| p.add(b * Q8_K_BYTES));
            prefetch_next_group::<B, 4>(wb, 4 * nb * B::BYTES);
            let pre = [B::pre(wb[0]), B::pre(wb[1]), B::pre(wb[2]), B::pre(wb[3])];
            for r in 0..4 {
                unroll8!(g => {
                    q[r][g] = B::group(wb[r], &pre[r], g).0;
                });
                B::tile_scales(wb[r], &pre[r], &mut sc[r]);
            }
            // iv[t][r]: token t, row r; two tokens at a time.
            let mut iv = [[_mm256_setzero_si256(); 4]; 4];
            for pair in 0..2 {
                let (t0, t1) = (2 * pair, 2 * pair + 1);
                let mut pv = [[_mm256_setzero_si256(); 4]; 2];
                unroll8!(g => {
                    let a0 = _mm256_loadu_si256(ab[t0].add(4 + 32 * g).cast());
                    let a1 = _mm256_loadu_si256(ab[t1].add(4 + 32 * g).cast());
                    for r in 0..4 {
                        let (qv, sv) = (q[r][g], B::tile_scale(sc[r].as_ptr(), g));
                        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(qv, a0), sv);
                        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(qv, a1), sv);
                        pv[0][r] = _mm256_add_epi32(pv[0][r], p0);
                        pv[1][r] = _mm256_add_epi32(pv[1][r], p1);
                    }
                });
                iv[t0] = pv[0];
                iv[t1] = pv[1];
            }
            let factors = [
                B::bsum_factors(&pre[0]),
                B::bsum_factors(&pre[1]),
                B::bsum_factors(&pre[2]),
                B::bsum_factors(&pre[3]),
            ];
            let dw = f16x4(wb.map(|p| f16_bits(p.add(B::D))));
            let dmin = f16x4(wb.map(|p| f16_bits(p.add(B::DMIN))));
            for t in 0..4 {
                let bs = _mm256_loadu_si256(ab[t].add(260).cast());
                let mut bv = [bs; 4];
                for r in 0..4 {
                    bv[r] = _mm256_madd_epi16(factors[r], bs);
                }
                acc[t] =
                    accumulate::<B>(acc[t], dw, dmin, act_scale(ab[t]), finish::<B>(iv[t], bv));
            }
        }
    }
    acc.map(|v| {
        let mut out = [0.0f32; 4];
        // SAFETY: storing 4 floats into a 4-float array.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
        out
    })
}

fn kquant_gemm<B: KBlock>(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32]) {
    let arb = check_gemm_4(n, a.len(), out.len());
    for wr in w {
        check_kquant(n, wr.len(), B::BYTES, arb);
    }
    // SAFETY: reachable only through a table built after the AVX2/FMA/F16C check; sizes checked.
    unsafe { kquant_gemm_avx2::<B>(n / QK_K, w.map(|r| r.as_ptr()), a.as_ptr(), arb, out) }
}

/// One super-block of four rows, decoded for the token chunks of [`kquant_gemm_avx2`].
struct Decoded4 {
    q: [[__m256i; 8]; 4],
    sc: [[__m256i; 8]; 4],
    factors: [__m256i; 4],
    dw: __m128,
    dmin: __m128,
}

/// Four rows against `out.len() / 4` tokens (`a`: their Q8_K rows, `arb` bytes apart), `out`
/// [n_tok][4]. Super-block by super-block: the four rows are decoded once (quants and scales to
/// the stack), then the tokens run in chunks of 8 (4, 2, 1 at the end), one row at a time, so
/// that a row's group and scale stay in registers for the chunk's tokens and each `maddubs`
/// costs one activation load. The outputs accumulate in `out` in super-block order, as the spec.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kquant_gemm_avx2<B: KBlock>(
    nb: usize,
    w: [*const u8; 4],
    a: *const u8,
    arb: usize,
    out: &mut [f32],
) {
    let n_tok = out.len() / 4;
    out.fill(0.0);
    let mut d = Decoded4 {
        q: [[_mm256_setzero_si256(); 8]; 4],
        sc: [[_mm256_setzero_si256(); 8]; 4],
        factors: [_mm256_setzero_si256(); 4],
        dw: _mm_setzero_ps(),
        dmin: _mm_setzero_ps(),
    };
    // SAFETY: each row holds `nb` weight blocks and `a` holds `n_tok` rows of `nb` Q8_K blocks
    // (checked by the caller); every pointer below is into a block with index b < nb, of a token
    // t < n_tok; `out` holds 4 floats per token.
    unsafe {
        for b in 0..nb {
            let wb = w.map(|p| p.add(b * B::BYTES));
            // To L2 only: the tokens' activations stream through L1 meanwhile (into L1, the
            // prefetched lines were evicted before use; measured 1.25 -> 1.16 s CPU for pp64).
            prefetch_group::<B, 4, _MM_HINT_T1>(wb, 4 * nb * B::BYTES);
            for r in 0..4 {
                let pre = B::pre(wb[r]);
                unroll8!(g => {
                    d.q[r][g] = B::group(wb[r], &pre, g).0;
                });
                B::tile_scales(wb[r], &pre, &mut d.sc[r]);
                d.factors[r] = B::bsum_factors(&pre);
            }
            d.dw = f16x4(wb.map(|p| f16_bits(p.add(B::D))));
            d.dmin = f16x4(wb.map(|p| f16_bits(p.add(B::DMIN))));
            let ab = a.add(b * Q8_K_BYTES);
            let o = out.as_mut_ptr();
            let mut t = 0;
            while t + 8 <= n_tok {
                gemm_chunk::<B, 8>(&d, ab.add(t * arb), arb, o.add(4 * t));
                t += 8;
            }
            if t + 4 <= n_tok {
                gemm_chunk::<B, 4>(&d, ab.add(t * arb), arb, o.add(4 * t));
                t += 4;
            }
            if t + 2 <= n_tok {
                gemm_chunk::<B, 2>(&d, ab.add(t * arb), arb, o.add(4 * t));
                t += 2;
            }
            if t < n_tok {
                gemm_chunk::<B, 1>(&d, ab.add(t * arb), arb, o.add(4 * t));
            }
        }
    }
}

/// `T` tokens (their block at `ab`, `ab + arb`, …) of one super-block: `o[4 j + r] += …`.
///
/// # Safety
/// `ab + j·arb` (j < T) are whole Q8_K blocks; `o` holds `4 T` floats; the CPU has AVX2.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_chunk<B: KBlock, const T: usize>(
    d: &Decoded4,
    ab: *const u8,
    arb: usize,
    o: *mut f32,
) {
    // SAFETY: as the caller vouches.
    unsafe {
        // One row at a time: its group and scale stay in registers for the T tokens.
        let row = |r: usize| {
            let mut acc = [_mm256_setzero_si256(); T];
            unroll8!(g => {
                let (qv, sv) = (d.q[r][g], B::tile_scale(d.sc[r].as_ptr(), g));
                for j in 0..T {
                    let av = ab.add(j * arb + 4 + 32 * g).cast::<__m256i>().read_volatile();
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qv, av), sv);
                    acc[j] = _mm256_add_epi32(acc[j], p);
                }
            });
            acc
        };
        // Built whole (a zeroed array filled row by row became a `memset` call per chunk).
        let rows = [row(0), row(1), row(2), row(3)];
        for j in 0..T {
            let iv = [rows[0][j], rows[1][j], rows[2][j], rows[3][j]];
            let at = ab.add(j * arb);
            let bs = _mm256_loadu_si256(at.add(260).cast());
            let mut bv = [bs; 4];
            for r in 0..4 {
                bv[r] = _mm256_madd_epi16(d.factors[r], bs);
            }
            let oj = o.add(4 * j);
            let sums = finish::<B>(iv, bv);
            let v = accumulate::<B>(_mm_loadu_ps(oj), d.dw, d.dmin, act_scale(at), sums);
            _mm_storeu_ps(oj, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prompt / batch: eight rows in the lanes of one vector (Q4_K, Q5_K, Q6_K)
// ---------------------------------------------------------------------------------------------

/// Tokens per lane-kernel tile.
const LANES_TOKENS: usize = 4;
/// Bytes of Q8_K activation rows per pass over the rows in [`lanes_rows`]: they stay in L2
/// while every row group reads them (224 tokens of a 4096-wide matrix, 64 of a 14336-wide one).
/// Each pass packs and reads the weights again, so passes are as long as L2 allows.
const LANES_CHUNK_BYTES: usize = 1 << 20;
/// The fewest and the most tokens per pass, whatever the width (the accumulators of a pass are
/// a vector a token).
const LANES_CHUNK_MIN: usize = 16;
const LANES_CHUNK_MAX: usize = 256;

/// Tokens per pass over the rows in [`lanes_rows`] for activation rows of `arb` bytes.
fn lanes_chunk(arb: usize) -> usize {
    (LANES_CHUNK_BYTES / arb.max(1)).clamp(LANES_CHUNK_MIN, LANES_CHUNK_MAX)
}
/// Vectors of one packed super-block of eight rows (the most any [`Lanes`] type uses: Q6_K's).
pub(super) const PACKED_VECS: usize = Q2_PK_DMIN + 1;

/// A K-quant type with a rows-in-lanes kernel: a super-block of `ROWS` rows is packed once (row
/// `i` in 32-bit lane `i` of every vector) and read by every tile of tokens. The AVX2 types here
/// pack eight rows into 256-bit vectors; `x86_avx512.rs` has sixteen-row ones.
pub(super) trait Lanes {
    /// A packed vector.
    type Vec: Copy + 'static;
    /// One token's `ROWS` f32 accumulators.
    type Acc: Copy + 'static;
    /// Rows per packed group.
    const ROWS: usize;
    /// Tokens per full tile (at most 8).
    const TILE: usize;
    /// Bytes per weight block.
    const BYTES: usize;
    /// `i32` values per (token, super-block) of [`q8_k_min_pairs`] the tile reads (0: none).
    const PAIRS: usize;
    /// This thread's accumulators.
    fn acc_scratch() -> &'static std::thread::LocalKey<RefCell<Vec<Self::Acc>>>;
    /// Packs one super-block of `ROWS` rows (row `i`'s at `wb + i·row_bytes`) into `pk`.
    ///
    /// # Safety
    /// The CPU has the type's features; the `ROWS` blocks of `BYTES` bytes are readable.
    unsafe fn pack(wb: *const u8, row_bytes: usize, pk: &mut [Self::Vec; PACKED_VECS]);
    /// One packed super-block against `T` tokens (their Q8_K block at `ab + t·arb`, their
    /// `PAIRS` min pairs at `pairs + t·pstride`): `acc[t] += …` as the spec, row `i` in lane `i`.
    ///
    /// # Safety
    /// The CPU has the type's features; `pk` is what [`Lanes::pack`] wrote; `ab + t·arb` are
    /// whole Q8_K blocks, `pairs + t·pstride` hold `PAIRS` values and `acc + t` is a valid
    /// accumulator, for t < T.
    unsafe fn tile<const T: usize>(
        pk: &[Self::Vec; PACKED_VECS],
        ab: *const u8,
        arb: usize,
        pairs: *const i32,
        pstride: usize,
        acc: *mut Self::Acc,
    );
}

thread_local! {
    /// Each thread's [`q8_k_min_pairs`] for [`lanes_rows`] (kept, so calls do not allocate).
    static PAIRS: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's f32 accumulators for the AVX2 types' [`lanes_rows`], one vector (eight
    /// rows) a token.
    static LANES_ACC: RefCell<Vec<__m256>> = const { RefCell::new(Vec::new()) };
}

/// Per (token, super-block) of `n_tok` Q8_K rows of `nb` blocks: the 8 sub-block sums of the
/// quants (`bsums[2j] + bsums[2j + 1]`, at most 32·128 in magnitude: exact in `i16`) as four
/// pairs `A_2p | A_2p+1 << 16` into `out` (cleared first), `[(t · nb + b) · 4 + p]`: what a `madd` with a row's min pair
/// turns into `m_2p·A_2p + m_2p+1·A_2p+1`.
fn q8_k_min_pairs(a: &[u8], n_tok: usize, nb: usize, out: &mut Vec<i32>) {
    assert!(a.len() >= n_tok * nb * Q8_K_BYTES, "q8_k min pairs: rows");
    out.clear();
    for blk in a.chunks_exact(Q8_K_BYTES).take(n_tok * nb) {
        let bs = |i: usize| i16::from_le_bytes([blk[260 + 2 * i], blk[261 + 2 * i]]);
        for p in 0..4 {
            let lo = bs(4 * p).wrapping_add(bs(4 * p + 1));
            let hi = bs(4 * p + 2).wrapping_add(bs(4 * p + 3));
            out.push(i32::from(lo as u16) | i32::from(hi as u16) << 16);
        }
    }
}

/// Rows in whole groups of `L::ROWS` of the K-quant matrix `w` (`nb` blocks a row at stride
/// `row_bytes`) against the Q8_K rows of `a`, into `out` [n_rows][n_tok]; returns the first row
/// not done. For each chunk of up to [`lanes_chunk`] tokens, each group runs super-block by
/// super-block: the group's block is packed once ([`Lanes::pack`]: a few KB, it stays in L1) and
/// then read by every tile of `L::TILE` tokens (and one tile of the rest), the outputs
/// accumulating in super-block order in a per-thread accumulator a token, as the spec. Only
/// reachable through a table whose CPU check covers `L`.
pub(super) fn lanes_rows<L: Lanes>(
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    out: &mut [f32],
) -> usize {
    assert_eq!(
        std::mem::size_of::<L::Acc>(),
        4 * L::ROWS,
        "k-quant lanes: an accumulator is ROWS f32"
    );
    assert!(L::TILE <= 8, "k-quant lanes: tiles of at most 8 tokens");
    assert_eq!(n % QK_K, 0, "k-quant lanes: {n} is not whole super-blocks");
    let nb = n / QK_K;
    let arb = nb * Q8_K_BYTES;
    let n_tok = check_tokens(a.len(), arb, out.len());
    if n_tok == 0 {
        return 0;
    }
    let n_rows = out.len() / n_tok;
    row_span(n, QK_K, L::BYTES, w.len(), row_bytes, n_rows);
    let groups = n_rows / L::ROWS * L::ROWS;
    if groups == 0 {
        return 0;
    }
    PAIRS.with_borrow_mut(|pairs| {
        pairs.clear();
        if L::PAIRS > 0 {
            assert_eq!(L::PAIRS, 4, "k-quant lanes: min pairs are four a block");
            q8_k_min_pairs(a, n_tok, nb, pairs);
        }
        L::acc_scratch().with_borrow_mut(|acc| {
            let chunk = lanes_chunk(arb).min(n_tok);
            if acc.len() < chunk {
                // SAFETY: all-zero bits are a valid SIMD vector.
                acc.resize(chunk, unsafe { std::mem::zeroed() });
            }
            for t0 in (0..n_tok).step_by(chunk) {
                let m = chunk.min(n_tok - t0);
                for r0 in (0..groups).step_by(L::ROWS) {
                    // SAFETY: the table's CPU check covers L; rows r0..r0 + ROWS of nb blocks lie in
                    // `w` (row_span above), tokens t0..t0 + m have nb Q8_K blocks in `a`
                    // (check_tokens) and PAIRS·nb pairs each (none read where PAIRS is 0: every
                    // offset into `pairs` is then 0), and `acc` holds `chunk` ≥ m accumulators.
                    unsafe {
                        lanes_group::<L>(
                            nb,
                            w.as_ptr().add(r0 * row_bytes),
                            row_bytes,
                            a.as_ptr().add(t0 * arb),
                            arb,
                            pairs.as_ptr().add(t0 * nb * L::PAIRS),
                            &mut acc[..m],
                        )
                    };
                    for (j, v) in acc[..m].iter().enumerate() {
                        // SAFETY: an accumulator is ROWS f32 (asserted above).
                        let o = unsafe {
                            std::slice::from_raw_parts((v as *const L::Acc).cast::<f32>(), L::ROWS)
                        };
                        for (i, x) in o.iter().enumerate() {
                            out[(r0 + i) * n_tok + t0 + j] = *x;
                        }
                    }
                }
            }
        });
    });
    groups
}

/// [`super::KQuantGemm8`] for an eight-row [`Lanes`] type (every row is in a group).
fn gemm_8<L: Lanes>(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
    let done = lanes_rows::<L>(n, w, row_bytes, a, out);
    let n_tok = a.len() / (n / QK_K * Q8_K_BYTES).max(1);
    assert!(
        n_tok == 0 || done * n_tok == out.len(),
        "k-quant lanes: rows are not groups of {}",
        L::ROWS
    );
}

/// The eight-row kernel for Q4_K (the AVX-512 table's takes its last eight rows here).
pub(super) fn q4_k_lanes_rows8(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
    gemm_8::<Q4K>(n, w, row_bytes, a, out);
}

/// The eight-row kernel for Q5_K (as [`q4_k_lanes_rows8`]).
pub(super) fn q5_k_lanes_rows8(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
    gemm_8::<Q5K>(n, w, row_bytes, a, out);
}

/// The eight-row kernel for Q6_K (as [`q4_k_lanes_rows8`]).
pub(super) fn q6_k_lanes_rows8(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
    gemm_8::<Q6K>(n, w, row_bytes, a, out);
}

/// `L::ROWS` rows of `L` (row `i` at `w0 + i·row_bytes`, `nb` blocks each) against `acc.len()`
/// tokens (their Q8_K rows at `a`, `arb` bytes apart, and their [`q8_k_min_pairs`] at `pairs`,
/// `L::PAIRS · nb` apart): `acc[t]` lane `i` = the spec's dot of row `i` and token `t`.
///
/// # Safety
/// The CPU has the type's features; the rows of `nb` blocks are readable; `a` holds `acc.len()`
/// rows of `nb` Q8_K blocks at stride `arb`, and `pairs` `L::PAIRS · nb` values per token.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lanes_group<L: Lanes>(
    nb: usize,
    w0: *const u8,
    row_bytes: usize,
    a: *const u8,
    arb: usize,
    pairs: *const i32,
    acc: &mut [L::Acc],
) {
    let n_tok = acc.len();
    // SAFETY: all-zero bits are valid SIMD vectors.
    acc.fill(unsafe { std::mem::zeroed() });
    // SAFETY: as above.
    let mut pk: [L::Vec; PACKED_VECS] = unsafe { std::mem::zeroed() };
    let acc = acc.as_mut_ptr();
    let ps = L::PAIRS * nb;
    // SAFETY: per the contract, every block b < nb of the rows, every Q8_K block b of a token
    // t < n_tok and its pairs are readable; `acc` holds n_tok accumulators.
    unsafe {
        for b in 0..nb {
            let wb = w0.add(b * L::BYTES);
            // The same rows' next super-block (a prefetch never faults; `wrapping_add` keeps
            // the address arithmetic defined past the last block).
            for i in 0..L::ROWS {
                let p = wb.wrapping_add(i * row_bytes + L::BYTES);
                let mut off = 0;
                while off < L::BYTES {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast());
                    off += 64;
                }
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(L::BYTES - 1).cast());
            }
            L::pack(wb, row_bytes, &mut pk);
            let ab = a.add(b * Q8_K_BYTES);
            let pb = pairs.add(L::PAIRS * b);
            let mut t = 0;
            macro_rules! tiles {
                ($($n:literal)*) => {
                    loop {
                        match (n_tok - t).min(L::TILE) {
                            $($n => {
                                L::tile::<$n>(&pk, ab.add(t * arb), arb, pb.add(t * ps), ps, acc.add(t));
                                t += $n;
                            })*
                            _ => break,
                        }
                    }
                };
            }
            tiles!(1 2 3 4 5 6 7 8);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Q4_K and Q5_K in lanes
// ---------------------------------------------------------------------------------------------

/// Q4_K's (and Q5_K's) packed super-block of eight rows: `[8 j + k]` the unsigned quants (0..15,
/// Q5_K 0..31) of sub-block `j`, elements `4k..4k + 4`; `[64 + j]` the 6-bit scale of sub-block
/// `j` in both `i16` halves; `[72 + p]` the mins of sub-blocks `2p` and `2p + 1` as an `i16` pair; `[76]` `d` and `[77]`
/// `dmin` as f32.
pub(super) const PK_SCALES: usize = 64;
pub(super) const PK_MINS: usize = 72;
pub(super) const PK_D: usize = 76;
pub(super) const PK_DMIN: usize = 77;

/// The [`Lanes`] impl of Q4_K (`$q5` false) or Q5_K (true): the shared pack and tile.
macro_rules! k4_lanes {
    ($t:ty, $bytes:expr, $q5:expr) => {
        impl Lanes for $t {
            type Vec = __m256i;
            type Acc = __m256;
            const ROWS: usize = 8;
            const TILE: usize = LANES_TOKENS;
            const BYTES: usize = $bytes;
            const PAIRS: usize = 4;

            fn acc_scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m256>>> {
                &LANES_ACC
            }

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn pack(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]) {
                // SAFETY: as the trait requires.
                unsafe { k4_pack8::<$q5>(wb, row_bytes, pk) }
            }

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn tile<const T: usize>(
                pk: &[__m256i; PACKED_VECS],
                ab: *const u8,
                arb: usize,
                pairs: *const i32,
                pstride: usize,
                acc: *mut __m256,
            ) {
                // SAFETY: as the trait requires.
                unsafe { k4_packed_tile::<T, $q5>(pk, ab, arb, pairs, pstride, acc) }
            }
        }
    };
}

k4_lanes!(Q4K, 144, false);

/// Packs one Q4_K (or, with `Q5`, Q5_K) super-block of eight rows (row `i`'s at
/// `wb + i·row_bytes`) into `pk` (see [`PK_SCALES`] for the layout; Q5_K's quants are 0..31).
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; the eight 144-byte (`Q5`: 176-byte) blocks are readable.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn k4_pack8<const Q5: bool>(
    wb: *const u8,
    row_bytes: usize,
    pk: &mut [__m256i; PACKED_VECS],
) {
    let m4 = _mm256_set1_epi8(0x0f);
    let bit4 = _mm256_set1_epi8(0x10);
    // SAFETY: per the contract: the quants are bytes 16..144 of each Q4_K block (Q5_K: the low
    // bits 48..176, the high bits 16..48), d / dmin bytes 0..4 and the scales and mins bytes
    // 4..16.
    unsafe {
        let qs = if Q5 { 48 } else { 16 };
        // Q5_K: bit j of qh[l] is bit 4 of sub-block j's element l; `qh[h][m]` holds (row i in
        // lane i) qh[16h + 4m..16h + 4m + 4], the high bits of chunk 4h + m of every sub-block,
        // shifted right by 2 after each pair of sub-blocks, so that sub-blocks 2c and 2c + 1
        // find theirs at bits 0 and 1 (constant shifts whether or not the loop is unrolled;
        // 16-bit shifts: the mask drops what crosses bytes).
        let mut qh = if Q5 {
            [
                transpose8x4(wb, row_bytes, 16),
                transpose8x4(wb, row_bytes, 32),
            ]
        } else {
            [[_mm256_setzero_si256(); 4]; 2]
        };
        // Quant bytes 32c + 16h .. + 16 hold elements 16h.. of sub-blocks 2c (low nibbles) and
        // 2c + 1 (high nibbles): groups 4h..4h + 4 of both.
        for c in 0..4 {
            for h in 0..2 {
                let p = transpose8x4(wb, row_bytes, qs + 32 * c + 16 * h);
                for (m, pm) in p.iter().enumerate() {
                    let k = 4 * h + m;
                    let lo = _mm256_and_si256(*pm, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(*pm), m4);
                    if Q5 {
                        let q = qh[h][m];
                        let b0 = _mm256_and_si256(_mm256_slli_epi16::<4>(q), bit4);
                        let b1 = _mm256_and_si256(_mm256_slli_epi16::<3>(q), bit4);
                        pk[8 * (2 * c) + k] = _mm256_or_si256(lo, b0);
                        pk[8 * (2 * c + 1) + k] = _mm256_or_si256(hi, b1);
                        qh[h][m] = _mm256_srli_epi16::<2>(q);
                    } else {
                        pk[8 * (2 * c) + k] = lo;
                        pk[8 * (2 * c + 1) + k] = hi;
                    }
                }
            }
        }
        k4_pack8_meta(wb, row_bytes, pk);
    }
}

/// The per-row parts of a Q4_K (or Q5_K: the same bytes) super-block of eight rows packed as
/// [`k4_pack8`] lays them out: `pk[PK_SCALES..]`, `pk[PK_MINS..]`, `pk[PK_D]` and `pk[PK_DMIN]`.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; the first 16 bytes of the eight blocks are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn k4_pack8_meta(
    wb: *const u8,
    row_bytes: usize,
    pk: &mut [__m256i; PACKED_VECS],
) {
    // SAFETY: per the contract: d / dmin are bytes 0..4 and the scales and mins bytes 4..16.
    unsafe {
        let row = |i: usize| wb.add(i * row_bytes);
        // Scales and mins: byte j of each u64 for sub-block j. Rows (0, 1, 4, 5) and
        // (2, 3, 6, 7) in the u64 lanes of two vectors; a byte shuffle makes each 128-bit half
        // the two rows' bytes side by side per j, and 16-bit unpacks of the two vectors then
        // give, per 128-bit half, 32-bit groups of rows 0..4 (low half) / 4..8 (high half) for
        // j = 0..4 (`lo`) and 4..8 (`hi`).
        let sm: [(u64, u64); 8] = std::array::from_fn(|i| scales_mins_k4(row(i)));
        let interleave = _mm256_setr_epi8(
            0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12,
            5, 13, 6, 14, 7, 15,
        );
        let by_sub = |v: [u64; 8]| {
            let q = |i: usize| v[i] as i64;
            let x = _mm256_shuffle_epi8(_mm256_set_epi64x(q(5), q(4), q(1), q(0)), interleave);
            let y = _mm256_shuffle_epi8(_mm256_set_epi64x(q(7), q(6), q(3), q(2)), interleave);
            (_mm256_unpacklo_epi16(x, y), _mm256_unpackhi_epi16(x, y))
        };
        // Sub-block j's eight bytes (rows 0..8) in the low 64 bits.
        let bytes_j = |(lo, hi): (__m256i, __m256i), j: usize| {
            let v = if j < 4 { lo } else { hi };
            let jj = (j % 4) as i32;
            let idx = _mm256_setr_epi32(jj, jj + 4, 0, 0, 0, 0, 0, 0);
            _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, idx))
        };
        let sc = by_sub(sm.map(|s| s.0));
        let mn = by_sub(sm.map(|s| s.1));
        for j in 0..8 {
            let x = bytes_j(sc, j);
            pk[PK_SCALES + j] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x, x));
        }
        for p in 0..4 {
            let (x, y) = (bytes_j(mn, 2 * p), bytes_j(mn, 2 * p + 1));
            pk[PK_MINS + p] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x, y));
        }
        // d | dmin << 16 of each row, then the eight d (low 128 bits) and dmin (high) as f16.
        let dd = _mm256_setr_epi32(
            row(0).cast::<i32>().read_unaligned(),
            row(1).cast::<i32>().read_unaligned(),
            row(2).cast::<i32>().read_unaligned(),
            row(3).cast::<i32>().read_unaligned(),
            row(4).cast::<i32>().read_unaligned(),
            row(5).cast::<i32>().read_unaligned(),
            row(6).cast::<i32>().read_unaligned(),
            row(7).cast::<i32>().read_unaligned(),
        );
        let split = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3,
            6, 7, 10, 11, 14, 15,
        );
        let dd = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(dd, split));
        pk[PK_D] = _mm256_castps_si256(_mm256_cvtph_ps(_mm256_castsi256_si128(dd)));
        pk[PK_DMIN] = _mm256_castps_si256(_mm256_cvtph_ps(_mm256_extracti128_si256::<1>(dd)));
    }
}

/// One packed Q4_K (`Q5`: Q5_K) super-block of eight rows ([`k4_pack8`]) against `T` tokens
/// (their Q8_K block at `ab + t·arb`, their min pairs at `pairs + t·pstride`): `acc[t] += …`,
/// row `i` in lane `i`, so no horizontal adds. Each packed vector of quants meets its four
/// activation bytes broadcast to every lane; `maddubs` of unsigned 4-bit quants gives pairs of
/// at most 2·15·128 = 3840, so a sub-block's eight add up in `i16` (≤ 30720); a `madd` with the
/// scale vector makes them the lane's `sc_j · Σ q·a` in `i32`. Q5_K's 5-bit quants give pairs of
/// at most 2·31·128 = 7936: four add up in `i16` (≤ 31744), two `madd`s a sub-block. The mins:
/// one `madd` per two sub-blocks with the activation's sums. The float step is the spec's, lane
/// by lane.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; `ab + t·arb` are whole Q8_K blocks, `pairs + t·pstride` hold 4
/// values and `acc + t` is a valid vector, for t < T.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_packed_tile<const T: usize, const Q5: bool>(
    pk: &[__m256i; PACKED_VECS],
    ab: *const u8,
    arb: usize,
    pairs: *const i32,
    pstride: usize,
    acc: *mut __m256,
) {
    // SAFETY: per the contract.
    unsafe {
        let mut isum = [_mm256_setzero_si256(); T];
        for j in 0..8 {
            let sc = pk[PK_SCALES + j];
            let mut s16 = [_mm256_setzero_si256(); T];
            for k in 0..8 {
                let wv = pk[8 * j + k];
                for t in 0..T {
                    let p = ab.add(t * arb + 4 + 32 * j + 4 * k);
                    let av = _mm256_set1_epi32(p.cast::<i32>().read_unaligned());
                    s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(wv, av));
                }
                if Q5 && k == 3 {
                    for t in 0..T {
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s16[t], sc));
                        s16[t] = _mm256_setzero_si256();
                    }
                }
            }
            for t in 0..T {
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s16[t], sc));
            }
        }
        let dw = _mm256_castsi256_ps(pk[PK_D]);
        let dmin = _mm256_castsi256_ps(pk[PK_DMIN]);
        for t in 0..T {
            let pt = pairs.add(t * pstride);
            let mut msum = _mm256_madd_epi16(pk[PK_MINS], _mm256_set1_epi32(*pt));
            for p in 1..4 {
                let m = _mm256_madd_epi16(pk[PK_MINS + p], _mm256_set1_epi32(*pt.add(p)));
                msum = _mm256_add_epi32(msum, m);
            }
            let da = _mm256_set1_ps(ab.add(t * arb).cast::<f32>().read_unaligned());
            let x = _mm256_mul_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum[t]));
            let y = _mm256_mul_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(msum));
            let o = acc.add(t);
            *o = _mm256_add_ps(*o, _mm256_sub_ps(x, y));
        }
    }
}

k4_lanes!(Q5K, 176, true);

// ---------------------------------------------------------------------------------------------
// Q6_K in lanes
// ---------------------------------------------------------------------------------------------

/// Q6_K's packed super-block of eight rows: `[4 j + k]` the unsigned quants `q + 32` (0..63) of
/// 16-element sub-block `j`, elements `4k..4k + 4` (so `[c]` holds elements `4c..4c + 4`);
/// `[64 + j]` the i8 scale of sub-block `j` in both `i16` halves; `[80 + p]` `32·sc` of
/// sub-blocks `2p` and `2p + 1` as an `i16` pair; `[88]` `d` as f32.
pub(super) const Q6_PK_SCALES: usize = 64;
pub(super) const Q6_PK_OFFSETS: usize = 80;
pub(super) const Q6_PK_D: usize = 88;
/// Q2_K's packed super-block is Q6_K's with its mins where Q6_K has its offsets, and `dmin` here.
pub(super) const Q2_PK_DMIN: usize = 89;

/// The scale part of a packed super-block of the sixteen-scale types (see [`Q6_PK_SCALES`]) from
/// the eight rows' 16 i8 scales `s[i]`: `[64 + j]` sub-block `j`'s scale in both `i16` halves of
/// each lane, `[80 + p]` `2^SHIFT · sc` of sub-blocks `2p` and `2p + 1` as an `i16` pair (the
/// offset that made the quants unsigned: Q6_K 32, Q3_K 4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_scales16<const SHIFT: i32>(s: [__m128i; 8], pk: &mut [__m256i; PACKED_VECS]) {
    pack_scales_offsets16::<SHIFT>(s, s, pk);
}

/// [`pack_scales16`] with the pairs at `[80 + p]` made from `o` (Q2_K: its mins) instead of `s`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_scales_offsets16<const SHIFT: i32>(
    s: [__m128i; 8],
    o: [__m128i; 8],
    pk: &mut [__m256i; PACKED_VECS],
) {
    let sc = transpose8x16(s);
    let off = transpose8x16(o);
    for q in 0..8 {
        let (x, y) = (sc[q], off[q]);
        let j = 2 * q;
        pk[Q6_PK_SCALES + j] = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x, x));
        pk[Q6_PK_SCALES + j + 1] = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x, x));
        let sp = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(y, _mm_srli_si128::<8>(y)));
        pk[Q6_PK_OFFSETS + q] = _mm256_slli_epi16::<SHIFT>(sp);
    }
}

/// An 8×16 byte transpose by unpacks: from the eight rows' 16 bytes, vector `q` holds bytes
/// `2q` (low 64 bits) and `2q + 1` (high) of rows 0..8, in row order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8x16(s: [__m128i; 8]) -> [__m128i; 8] {
    let mut out = [_mm_setzero_si128(); 8];
    for half in 0..2 {
        let pair = |x: __m128i, y: __m128i| {
            if half == 0 {
                _mm_unpacklo_epi8(x, y)
            } else {
                _mm_unpackhi_epi8(x, y)
            }
        };
        // Sub-blocks 8 half + 0..8, rows (0, 1), (2, 3), (4, 5), (6, 7) as byte pairs.
        let a = [
            pair(s[0], s[1]),
            pair(s[2], s[3]),
            pair(s[4], s[5]),
            pair(s[6], s[7]),
        ];
        let b0 = _mm_unpacklo_epi16(a[0], a[1]);
        let b1 = _mm_unpackhi_epi16(a[0], a[1]);
        let b2 = _mm_unpacklo_epi16(a[2], a[3]);
        let b3 = _mm_unpackhi_epi16(a[2], a[3]);
        let c = [
            _mm_unpacklo_epi32(b0, b2),
            _mm_unpackhi_epi32(b0, b2),
            _mm_unpacklo_epi32(b1, b3),
            _mm_unpackhi_epi32(b1, b3),
        ];
        for (q, x) in c.into_iter().enumerate() {
            out[4 * half + q] = x;
        }
    }
    out
}

/// The eight rows' f16 `d` at byte `off` of their blocks (row `i` at `wb + i·row_bytes`), as f32.
///
/// # Safety
/// The CPU has AVX2/F16C; the eight blocks are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_d8(wb: *const u8, row_bytes: usize, off: usize) -> __m256i {
    // SAFETY: as the caller vouches (unaligned reads).
    let d = |i: usize| unsafe { wb.add(i * row_bytes + off).cast::<i16>().read_unaligned() };
    let d = _mm_setr_epi16(d(0), d(1), d(2), d(3), d(4), d(5), d(6), d(7));
    _mm256_castps_si256(_mm256_cvtph_ps(d))
}

/// The [`Lanes`] impl of a sixteen-scale type (`$t`, `$bytes` a block): its pack function and
/// [`s16_packed_tile`] (`$mins`: with the min term, Q2_K).
macro_rules! s16_lanes {
    ($t:ty, $bytes:expr, $pack:ident, $mins:expr) => {
        impl Lanes for $t {
            type Vec = __m256i;
            type Acc = __m256;
            const ROWS: usize = 8;
            const TILE: usize = LANES_TOKENS;
            const BYTES: usize = $bytes;
            const PAIRS: usize = 0;

            fn acc_scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m256>>> {
                &LANES_ACC
            }

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn pack(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]) {
                // SAFETY: as the trait requires.
                unsafe { $pack(wb, row_bytes, pk) }
            }

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn tile<const T: usize>(
                pk: &[__m256i; PACKED_VECS],
                ab: *const u8,
                arb: usize,
                _: *const i32,
                _: usize,
                acc: *mut __m256,
            ) {
                // SAFETY: as the trait requires.
                unsafe { s16_packed_tile::<T, $mins>(pk, ab, arb, acc) }
            }
        }
    };
}

/// The quants of eight Q2_K (`HMASK` false) or Q3_K rows' super-block (row `i` at
/// `wb + i·row_bytes`, the two-bit parts at byte `qs` of each block, Q3_K's hmask at 0) into
/// Q6_K's packed layout: `[4 j + k]` the quants of 16-element sub-block `j`, elements `4k..4k + 4`.
/// The 16 bytes from `l = 16u` of the two-bit parts `qs + 32h ..` (and of the hmask), transposed,
/// give chunks `4u..4u + 4` of groups `4h..4h + 4` ([`crumbs4`]).
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; bytes `0..qs + 64` of the eight blocks are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_crumbs<const HMASK: bool>(
    wb: *const u8,
    row_bytes: usize,
    qs: usize,
    pk: &mut [__m256i; PACKED_VECS],
) {
    // SAFETY: per the contract.
    unsafe {
        for u in 0..2 {
            let hb = if HMASK {
                transpose8x4(wb, row_bytes, 16 * u)
            } else {
                [_mm256_setzero_si256(); 4]
            };
            for h in 0..2 {
                let ql = transpose8x4(wb, row_bytes, qs + 32 * h + 16 * u);
                for m in 0..4 {
                    let hm = if h == 0 {
                        hb[m]
                    } else {
                        _mm256_srli_epi16::<4>(hb[m])
                    };
                    // Group 4h + j, sub-block 2 (4h + j) + u, chunk m.
                    for (j, q) in crumbs4::<HMASK>(ql[m], hm).into_iter().enumerate() {
                        pk[4 * (2 * (4 * h + j) + u) + m] = q;
                    }
                }
            }
        }
    }
}

/// Q3_K in lanes: the quants `q + 4` (0..7) in Q6_K's packed layout, its scales with the offset 4,
/// and Q6_K's tile.
///
/// The quants by [`pack_crumbs`]: group `4h + j` (element `l` of it) has its low two bits at
/// bits `2j` of `qs[32h + l]` and its high bit at bit `4h + j` of `hmask[l]`.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; the eight 110-byte blocks at `wb + i·row_bytes` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3_k_pack_lanes(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]) {
    // SAFETY: per the contract: hmask is bytes 0..32 of each block, qs 32..96, the scales
    // 96..108 and d 108..110.
    unsafe {
        pack_crumbs::<true>(wb, row_bytes, 32, pk);
        let s: [__m128i; 8] = std::array::from_fn(|i| Q3K::pre(wb.add(i * row_bytes)));
        pack_scales16::<2>(s, pk);
        pk[Q6_PK_D] = pack_d8(wb, row_bytes, 108);
    }
}

s16_lanes!(Q3K, 110, q3_k_pack_lanes, false);

/// Q2_K in lanes: Q6_K's packed layout with the quants 0..3, the 4-bit scales, the 4-bit mins
/// where Q6_K has its offsets and `dmin` at [`Q2_PK_DMIN`]; Q6_K's tile with the min term.
///
/// The quants by [`pack_crumbs`]: group `4h + j` (element `l` of it) is bits `2j` of
/// `qs[32h + l]`.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; the eight 84-byte blocks at `wb + i·row_bytes` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2_k_pack_lanes(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]) {
    let m4 = _mm_set1_epi8(0x0f);
    // SAFETY: per the contract: the scales are bytes 0..16 of each block, qs 16..80, d and
    // dmin 80..84.
    unsafe {
        pack_crumbs::<false>(wb, row_bytes, 16, pk);
        let raw: [__m128i; 8] =
            std::array::from_fn(|i| _mm_loadu_si128(wb.add(i * row_bytes).cast()));
        let sc = raw.map(|x| _mm_and_si128(x, m4));
        let mins = raw.map(|x| _mm_and_si128(_mm_srli_epi16::<4>(x), m4));
        pack_scales_offsets16::<0>(sc, mins, pk);
        pk[Q6_PK_D] = pack_d8(wb, row_bytes, 80);
        pk[Q2_PK_DMIN] = pack_d8(wb, row_bytes, 82);
    }
}

s16_lanes!(Q2K, 84, q2_k_pack_lanes, true);

/// Q6_K in lanes: the quants `q + 32` (0..63), the i8 scales and the offset 32 (the AVX-512
/// kernel packs its sixteen rows with it too).
///
/// Element `128h + 32s + l` (group `4h + s`) has its low 4 bits in nibble `s / 2` of
/// `ql[64h + 32 (s % 2) + l]` and its high 2 bits at bits `2s..` of `qh[32h + l]` (see the
/// [`KBlock`] impl): the 16 bytes from `l = 16 u` of `ql[64h..]`, `ql[64h + 32..]` and
/// `qh[32h..]`, transposed, give chunks `4u..4u + 4` of all four groups `4h..4h + 4`.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; the eight 210-byte blocks at `wb + i·row_bytes` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6_k_pack_lanes(
    wb: *const u8,
    row_bytes: usize,
    pk: &mut [__m256i; PACKED_VECS],
) {
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x30);
    // SAFETY: per the contract: ql is bytes 0..128 of each block, qh 128..192, the scales
    // 192..208 and d 208..210 (16-bit shifts: the masks drop what crosses bytes).
    unsafe {
        let row = |i: usize| wb.add(i * row_bytes);
        for h in 0..2 {
            for u in 0..2 {
                let l0 = transpose8x4(wb, row_bytes, 64 * h + 16 * u);
                let l1 = transpose8x4(wb, row_bytes, 64 * h + 32 + 16 * u);
                let hb = transpose8x4(wb, row_bytes, 128 + 32 * h + 16 * u);
                for m in 0..4 {
                    let k = 4 * u + m;
                    let (a, b, q) = (l0[m], l1[m], hb[m]);
                    let hi = |v: __m256i| _mm256_and_si256(v, m2);
                    let g = 4 * h;
                    pk[8 * g + k] =
                        _mm256_or_si256(_mm256_and_si256(a, m4), hi(_mm256_slli_epi16::<4>(q)));
                    pk[8 * (g + 1) + k] =
                        _mm256_or_si256(_mm256_and_si256(b, m4), hi(_mm256_slli_epi16::<2>(q)));
                    pk[8 * (g + 2) + k] =
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(a), m4), hi(q));
                    pk[8 * (g + 3) + k] = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(b), m4),
                        hi(_mm256_srli_epi16::<2>(q)),
                    );
                }
            }
        }
        let s: [__m128i; 8] = std::array::from_fn(|i| _mm_loadu_si128(row(i).add(192).cast()));
        pack_scales16::<5>(s, pk);
        pk[Q6_PK_D] = pack_d8(wb, row_bytes, 208);
    }
}

s16_lanes!(Q6K, 210, q6_k_pack_lanes, false);

/// The tile of the sixteen-scale types in lanes (Q2_K, Q3_K, Q6_K) over `T` tokens (their Q8_K
/// blocks at `ab + t·arb`), added to `acc[t]`.
///
/// Each packed vector of quants meets its four activation bytes broadcast to every lane;
/// `maddubs` of the unsigned quants (at most 63) gives pairs of at most 2·63·128 = 16128, so two
/// add up in `i16` (≤ 32256) before a `madd` with the sub-block's scale vector widens them to
/// `i32` (two per sub-block). The `[80 + p]` pairs meet the activation's `bsums` pairs (two `i16`
/// side by side in the Q8_K block: one broadcast) in one `madd` per two sub-blocks: without
/// `MINS` that is the offset `2^k·Σ_j sc_j·bsum_j`, taken off the integer sum; with `MINS`
/// (Q2_K) the min sum `Σ_j m_j·bsum_j`, taken off in the float step with `dmin`. The float step
/// is the spec's, lane by lane.
///
/// # Safety
/// The CPU has AVX2/FMA/F16C; `pk` is a packed super-block of the type; the T activation blocks
/// are readable and `acc` holds T accumulators.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn s16_packed_tile<const T: usize, const MINS: bool>(
    pk: &[__m256i; PACKED_VECS],
    ab: *const u8,
    arb: usize,
    acc: *mut __m256,
) {
    // SAFETY: per the contract.
    unsafe {
        let bcast = |p: *const u8| _mm256_set1_epi32(p.cast::<i32>().read_unaligned());
        let mut isum = [_mm256_setzero_si256(); T];
        for j in 0..16 {
            let sc = pk[Q6_PK_SCALES + j];
            for u in 0..2 {
                let (w0, w1) = (pk[4 * j + 2 * u], pk[4 * j + 2 * u + 1]);
                for t in 0..T {
                    let p = ab.add(t * arb + 4 + 16 * j + 8 * u);
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(w0, bcast(p)),
                        _mm256_maddubs_epi16(w1, bcast(p.add(4))),
                    );
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s, sc));
                }
            }
        }
        let dw = _mm256_castsi256_ps(pk[Q6_PK_D]);
        for t in 0..T {
            let at = ab.add(t * arb);
            let mut off = _mm256_madd_epi16(pk[Q6_PK_OFFSETS], bcast(at.add(260)));
            for p in 1..8 {
                let m = _mm256_madd_epi16(pk[Q6_PK_OFFSETS + p], bcast(at.add(260 + 4 * p)));
                off = _mm256_add_epi32(off, m);
            }
            let da = _mm256_set1_ps(at.cast::<f32>().read_unaligned());
            let o = acc.add(t);
            if MINS {
                let dmin = _mm256_castsi256_ps(pk[Q2_PK_DMIN]);
                let x = _mm256_mul_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum[t]));
                let y = _mm256_mul_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(off));
                *o = _mm256_add_ps(*o, _mm256_sub_ps(x, y));
            } else {
                let isum = _mm256_sub_epi32(isum[t], off);
                let x = _mm256_mul_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum));
                *o = _mm256_add_ps(*o, x);
            }
        }
    }
}
