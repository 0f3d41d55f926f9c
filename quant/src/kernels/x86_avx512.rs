//! x86-64 kernels for AVX-512 with VNNI (AVX-512 F, BW, VL and VNNI, and GFNI, on top of
//! AVX2/FMA/F16C): the many-token Q4_0, Q8_0, Q4_K, Q5_K and Q6_K kernels, and the Q4_0 kernel
//! for one to three tokens (decode, small batches). Everything else in the table (the other
//! decode kernels, the other types, float weights) is the AVX2 kernels'.
//! Every function gives the same bits as its scalar spec (see the module docs of [`super`]).
//!
//! The kernels follow the AVX2 lane kernels (`x86_avx2.rs`), sixteen rows wide: sixteen weight
//! rows are packed once per call with row `i` in 32-bit lane `i` of a 512-bit vector, and each
//! group of four activation bytes, broadcast to every lane, meets all sixteen rows in one
//! `vpdpbusd`, which multiplies unsigned by signed bytes and adds the four products of a lane
//! into its `i32` accumulator: one instruction where AVX2 needs `maddubs`, an `i16` add and a
//! `madd`. Integer sums are exact, so only the float step (the spec's, lane by lane) decides the
//! bits.
//!
//! - **Q4_0**: the packed quants are the unsigned nibbles `q'` (0..15); a block's integer dot
//!   is `Σ q'·a − 8·Σa`, the correction from the activation.
//! - **Q8_0**: the packed quants are the signed bytes `q` as they are, against the activation
//!   bytes plus 128 (unsigned, made once per call): `Σ q·(a + 128) − 128·Σq`, the correction from
//!   the weights, made when they are packed.
//! - **Q5_K, Q6_K** (prompts): sixteen rows of a super-block packed as the AVX2 kernels pack
//!   eight (twice, joined); per sub-block the `vpdpbusd` sums are multiplied by the rows' scales
//!   (`vpmulld`) into the super-block's `isum`; the mins (Q5_K) and offsets (Q6_K) terms are the
//!   AVX2 kernels' `madd`s.
//! - **Q4_K** (prompts): a row's eight quants of a sub-block sit in a 64-bit lane (a lane pair),
//!   so each lane sums 16 products (|Σ| ≤ 16·15·128, an `i16`); `vpackssdw` puts a row's two
//!   sums side by side and one `vpdpwssd` with the scale pairs adds `sc_j·Σ` to its `i32` sum,
//!   where `vpmulld` costs two uops on the one 512-bit multiply port of some Xeons (147 → 177
//!   GMAC/s in cache on one core of the development machine).
//!
//! [`kernels`] returns a table only when the CPU has every feature used here.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::kquant_avx2::{
    k4_pack8, k4_pack8_meta, lanes_rows as k_lanes_rows, q4_k_lanes_rows8, q5_k_lanes_rows8,
    q6_k_lanes_rows8, q6_k_pack_lanes, Lanes, PACKED_VECS, PK_D, PK_DMIN, PK_MINS, PK_SCALES,
    Q6_PK_D, Q6_PK_OFFSETS, Q6_PK_SCALES,
};
use super::x86_avx2::{
    lanes_rows, prefetch_next_rows8, prefetch_rows_ahead, q4_0_rows_with, q8_0_rows_with,
    rows_in_order, scales8, Avx2X8, LaneFormat, Q4x8, Q8Row,
};
use super::{Isa, Kernels, Q4_0_BYTES, Q8_0_BYTES, Q8_K_BYTES, QK_K};

/// The AVX-512 table, if this CPU has AVX-512 F/BW/VNNI (and AVX2/FMA/F16C): the AVX2 table
/// with the many-token Q4_0, Q8_0, Q4_K, Q5_K and Q6_K kernels replaced.
pub(super) fn kernels() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("gfni");
    if !ok {
        return None;
    }
    let mut k = super::x86_avx2::kernels()?;
    k.isa = Isa::Avx512;
    k.q4_0.rows =
        |n, w, rb, a, y| q4_0_rows_with::<VnniX8>(lanes_rows::<Q4>, Q4::MIN_TOKENS, n, w, rb, a, y);
    k.q8_0.rows = |n, w, rb, a, y| q8_0_rows_with(lanes_rows::<Q8>, Q8::MIN_TOKENS, n, w, rb, a, y);
    k.k_quants.q4_k.gemm_8 =
        Some(|n, w, rb, a, y| k_rows16::<Q4K>(q4_k_lanes_rows8, n, w, rb, a, y));
    k.k_quants.q5_k.gemm_8 =
        Some(|n, w, rb, a, y| k_rows16::<Q5K>(q5_k_lanes_rows8, n, w, rb, a, y));
    k.k_quants.q6_k.gemm_8 =
        Some(|n, w, rb, a, y| k_rows16::<Q6K>(q6_k_lanes_rows8, n, w, rb, a, y));
    Some(k)
}

// ---------------------------------------------------------------------------------------------
// Decode and small batches (Q4_0): eight rows, one to three tokens, no packing
// ---------------------------------------------------------------------------------------------

/// The longest row whose eight-row scale gather offsets fit an i32.
const GATHER_MAX_ROW_BYTES: usize = (i32::MAX / 8) as usize;

/// This table's eight-row Q4_0 kernel: eight rows against `T` Q8_0 rows, `[token][row]`, the AVX2
/// kernel's ([`Avx2X8`]) layout and bits with 256-bit `vpdpbusd`.
///
/// Two rows share a vector (row `2k` in the low 128-bit lane, `2k + 1` in the high one), the
/// nibbles are split once per block for all `T` tokens, and per token the low and high nibbles
/// meet the broadcast activation halves in two `vpdpbusd` into one accumulator: two
/// instructions where AVX2 needs two `maddubs`, an `i16` add and a `madd`. Four such vectors
/// reduce to one exact `i32` per row with in-lane unpacks (which the CPU runs on two ports,
/// where `hadd` needs three uops), rows ordered `[0 2 4 6 | 1 3 5 7]`. 256 bits rather than
/// 512: on CPUs with one 512-bit multiply port (such as the two-core Xeon this was tuned on),
/// 256-bit `vpdpbusd` issue on two ports and so multiply as fast, and the shuffles keep a port
/// of their own.
///
/// Safety (of [`Q4x8::x8`] here): the CPU has the features of [`kernels`].
struct VnniX8;

impl Q4x8 for VnniX8 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
    unsafe fn x8<const T: usize>(
        nb: usize,
        w0: *const u8,
        row_bytes: usize,
        a: [Q8Row<'_>; T],
    ) -> [[f32; 8]; T] {
        if row_bytes > GATHER_MAX_ROW_BYTES {
            // The scale gather takes `7·row_bytes` as an i32 offset; rows too long for that (never a
            // real model's) take the AVX2 kernel.
            // SAFETY: as the trait requires (this CPU has AVX2/FMA/F16C too).
            return unsafe { Avx2X8::x8::<T>(nb, w0, row_bytes, a) };
        }
        let m4 = _mm256_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        let shr4 = _mm256_set1_epi64x(SHR4);
        let rb = row_bytes as i32;
        let gather_idx = _mm256_setr_epi32(0, 2 * rb, 4 * rb, 6 * rb, rb, 3 * rb, 5 * rb, 7 * rb);
        let ap = a.map(|(a, da, sums)| (a.as_ptr(), da.as_ptr(), sums.as_ptr()));
        let mut acc = [_mm256_setzero_ps(); T];
        // SAFETY: per the contract, every row pointer + b·18 (+18), every a[t] + b·34 (+34) and
        // every term b with b < nb is readable.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q4_0_BYTES);
                prefetch_next_rows8(b, wb, row_bytes);
                let mut lo = [zero; 4];
                let mut hi = [zero; 4];
                for k in 0..4 {
                    let lo_row = wb.add(2 * k * row_bytes + 2);
                    let hi_row = wb.add((2 * k + 1) * row_bytes + 2);
                    let x = _mm256_loadu2_m128i(hi_row.cast(), lo_row.cast());
                    lo[k] = _mm256_and_si256(x, m4);
                    // Each byte's high nibble, shifted down: one GF(2) affine map per byte.
                    hi[k] = _mm256_gf2p8affine_epi64_epi8::<0>(x, shr4);
                }
                // The eight scales in one gather (the dword at each block's start; its low half is
                // the f16 scale), in the rows' order [0 2 4 6 | 1 3 5 7].
                let g = _mm256_i32gather_epi32::<1>(wb.cast(), gather_idx);
                let dw = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(g));
                for t in 0..T {
                    let (ab, da, sums) = ap[t];
                    let ab = ab.add(b * Q8_0_BYTES);
                    let alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(ab.add(2).cast()));
                    let ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(ab.add(18).cast()));
                    // Unsigned nibbles first, signed activations second, as `vpdpbusd` takes them.
                    let p: [__m256i; 4] = std::array::from_fn(|k| {
                        _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(zero, lo[k], alo), hi[k], ahi)
                    });
                    let p01 = _mm256_add_epi32(
                        _mm256_unpacklo_epi32(p[0], p[1]),
                        _mm256_unpackhi_epi32(p[0], p[1]),
                    );
                    let p23 = _mm256_add_epi32(
                        _mm256_unpacklo_epi32(p[2], p[3]),
                        _mm256_unpackhi_epi32(p[2], p[3]),
                    );
                    let h = _mm256_add_epi32(
                        _mm256_unpacklo_epi64(p01, p23),
                        _mm256_unpackhi_epi64(p01, p23),
                    );
                    let h = _mm256_sub_epi32(h, _mm256_set1_epi32(*sums.add(b)));
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(*da.add(b)));
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(h)));
                }
            }
        }
        rows_in_order(acc)
    }
}

/// Tokens per tile: each packed vector is loaded once for this many tokens.
const TILE: usize = 8;

thread_local! {
    /// Each thread's packed rows for [`lanes_rows`] (a run of blocks, or a row group).
    static PACK: RefCell<Vec<__m512i>> = const { RefCell::new(Vec::new()) };
}

/// What [`tile`] needs beyond [`LaneFormat`].
trait Vnni: LaneFormat<Packed = __m512i, Out = __m512> {
    /// Block `b`'s exact integer dots for `T` tokens from their `vpdpbusd` sums `s`: the sums
    /// less the corrections (`corr[t]` the activation's, from the block terms).
    ///
    /// # Safety
    /// The CPU has the features of [`kernels`]; `pb` is the packed block.
    unsafe fn isums<const T: usize>(
        s: [__m512i; T],
        pb: *const __m512i,
        corr: [i32; T],
    ) -> [__m512i; T];
}

/// [`LaneFormat::tile`] for a [`Vnni`] format: the generic [`tile`].
macro_rules! vnni_tile {
    () => {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
        unsafe fn tile<const T: usize>(
            nb: usize,
            packed: *const __m512i,
            a: [*const u8; T],
            terms: [(*const f32, *const i32); T],
            init: [__m512; T],
        ) -> [__m512; T] {
            // SAFETY: as the trait requires.
            unsafe { tile::<Self, T>(nb, packed, a, terms, init) }
        }
    };
}

/// Q4_0: per block, `[2k]` the low nibbles (elements `4k..4k+4`) and `[2k + 1]` the high nibbles
/// (`16+4k..`) of group `k` as unsigned bytes, `[8]` the sixteen scales as f32.
struct Q4;
/// Q8_0: per block, `[k]` the quants of elements `4k..4k+4` as they are, `[8]` the scales as
/// f32, `[9]` `128·Σq` of each row's block as i32.
struct Q8;

/// Packed vector `k` of rows 0..8 (`lo`) and 8..16 (`hi`) as one 512-bit vector.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// `x >> 4` on each byte as a bit matrix for `gf2p8affine`: output bit i is the parity of the
/// input and matrix byte 7 − i, so bytes 7, 6, 5, 4 select input bits 4, 5, 6, 7.
const SHR4: i64 = 0x1020_4080_0000_0000;

/// The scales of sixteen rows' blocks at `wb` (stride `row_bytes`) as f32, row `i` in lane `i`:
/// one gather of the dword at each block's start (its low half is the f16 scale), or, for rows
/// too long for the gather's i32 offsets (never a real model's), two eight-row scalar packings.
///
/// # Safety
/// The CPU has the features of [`kernels`]; four bytes at `wb + i·row_bytes` are readable for
/// i < 16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn scales16(wb: *const u8, row_bytes: usize) -> __m512i {
    // SAFETY: per the contract.
    unsafe {
        if row_bytes <= GATHER_MAX_ROW_BYTES / 2 {
            let rb = row_bytes as i32;
            let idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(rb),
            );
            let g = _mm512_i32gather_epi32::<1>(idx, wb.cast());
            _mm512_castps_si512(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)))
        } else {
            let lo = _mm256_castps_si256(scales8(wb, row_bytes));
            let hi = _mm256_castps_si256(scales8(wb.add(8 * row_bytes), row_bytes));
            join(lo, hi)
        }
    }
}

/// Group `k` (bytes `off + 4k .. off + 4k + 4`) of sixteen rows from `wb` (stride
/// `row_bytes`), for `k` in 0..4: `[k]` with row `i` in 32-bit lane `i`. Vector `j` takes rows
/// `j`, `4 + j`, `8 + j`, `12 + j` in its 128-bit lanes; a 4×4 transpose of 32-bit groups within
/// each lane then puts row `4l + j` at lane `4l + j`.
///
/// # Safety
/// The CPU has the features of [`kernels`]; 16 bytes at `wb + i·row_bytes + off` are readable
/// for i < 16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn transpose16x4(wb: *const u8, row_bytes: usize, off: usize) -> [__m512i; 4] {
    // SAFETY: per the contract.
    let v: [__m512i; 4] = std::array::from_fn(|j| unsafe {
        let row = |l: usize| _mm_loadu_si128(wb.add((4 * l + j) * row_bytes + off).cast());
        let x = _mm512_castsi128_si512(row(0));
        let x = _mm512_inserti32x4::<1>(x, row(1));
        let x = _mm512_inserti32x4::<2>(x, row(2));
        _mm512_inserti32x4::<3>(x, row(3))
    });
    let t0 = _mm512_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm512_unpackhi_epi32(v[0], v[1]);
    let t2 = _mm512_unpacklo_epi32(v[2], v[3]);
    let t3 = _mm512_unpackhi_epi32(v[2], v[3]);
    [
        _mm512_unpacklo_epi64(t0, t2),
        _mm512_unpackhi_epi64(t0, t2),
        _mm512_unpacklo_epi64(t1, t3),
        _mm512_unpackhi_epi64(t1, t3),
    ]
}

impl LaneFormat for Q4 {
    type Packed = __m512i;
    type Out = __m512;
    const ROWS: usize = 16;
    const TILE: usize = TILE;
    const BYTES: usize = Q4_0_BYTES;
    const VECS: usize = 9;
    const CORR: i32 = 8;
    /// As the AVX2 Q4_0 kernel's; not measured separately for this one.
    const MIN_TOKENS: usize = 4;

    fn scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m512i>>> {
        &PACK
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
    unsafe fn pack(nb: usize, w0: *const u8, row_bytes: usize, out: *mut __m512i) {
        let m4 = _mm512_set1_epi8(0x0f);
        let shr4 = _mm512_set1_epi64(SHR4);
        // SAFETY: per the contract.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q4_0_BYTES);
                prefetch_rows_ahead(b, wb, row_bytes);
                prefetch_rows_ahead(b, wb.add(8 * row_bytes), row_bytes);
                let o = out.add(b * Self::VECS);
                for (k, p) in transpose16x4(wb, row_bytes, 2).into_iter().enumerate() {
                    _mm512_storeu_si512(o.add(2 * k).cast(), _mm512_and_si512(p, m4));
                    let h = _mm512_gf2p8affine_epi64_epi8::<0>(p, shr4);
                    _mm512_storeu_si512(o.add(2 * k + 1).cast(), h);
                }
                _mm512_storeu_si512(o.add(8).cast(), scales16(wb, row_bytes));
            }
        }
    }

    vnni_tile!();
}

impl Vnni for Q4 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn isums<const T: usize>(
        s: [__m512i; T],
        _pb: *const __m512i,
        corr: [i32; T],
    ) -> [__m512i; T] {
        std::array::from_fn(|t| _mm512_sub_epi32(s[t], _mm512_set1_epi32(corr[t])))
    }
}

impl LaneFormat for Q8 {
    type Packed = __m512i;
    type Out = __m512;
    const ROWS: usize = 16;
    const TILE: usize = TILE;
    const BYTES: usize = Q8_0_BYTES;
    const VECS: usize = 10;
    const CORR: i32 = 0;
    const SHIFT_ACT: bool = true;
    /// As the AVX2 Q4_0 kernel's; not measured separately for this one.
    const MIN_TOKENS: usize = 4;

    fn scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m512i>>> {
        &PACK
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn pack(nb: usize, w0: *const u8, row_bytes: usize, out: *mut __m512i) {
        let ones = _mm512_set1_epi8(1);
        // SAFETY: per the contract.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q8_0_BYTES);
                prefetch_rows_ahead(b, wb, row_bytes);
                prefetch_rows_ahead(b, wb.add(8 * row_bytes), row_bytes);
                let o = out.add(b * Self::VECS);
                let mut sum = _mm512_setzero_si512();
                for half in 0..2 {
                    let p = transpose16x4(wb, row_bytes, 2 + 16 * half);
                    for (k, p) in p.into_iter().enumerate() {
                        _mm512_storeu_si512(o.add(4 * half + k).cast(), p);
                        sum = _mm512_dpbusd_epi32(sum, ones, p);
                    }
                }
                _mm512_storeu_si512(o.add(8).cast(), scales16(wb, row_bytes));
                _mm512_storeu_si512(o.add(9).cast(), _mm512_slli_epi32::<7>(sum));
            }
        }
    }

    vnni_tile!();
}

impl Vnni for Q8 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn isums<const T: usize>(
        s: [__m512i; T],
        pb: *const __m512i,
        _corr: [i32; T],
    ) -> [__m512i; T] {
        // SAFETY: per the contract, the packed block has its correction at [9].
        let c = unsafe { _mm512_loadu_si512(pb.add(9).cast()) };
        std::array::from_fn(|t| _mm512_sub_epi32(s[t], c))
    }
}

/// Element offset within a block of the four activation bytes that meet packed vector `v`.
const fn act_offset<F: LaneFormat>(v: usize) -> usize {
    if F::SHIFT_ACT {
        4 * v
    } else {
        // Q4_0: [2k] low nibbles (elements 4k..), [2k + 1] high nibbles (16 + 4k..).
        4 * (v / 2) + 16 * (v % 2)
    }
}

/// Sixteen packed rows against `T` tokens (`a[t]` their Q8_0 rows, plus 128 where
/// `F::SHIFT_ACT`; `terms[t]` their scales and corrections per block): one vector of the sixteen
/// rows' outputs per token, row `i` in lane `i`, going on from `init`.
///
/// # Safety
/// The CPU has the features of [`kernels`]; `packed` holds `nb` packed blocks; each `a[t]` holds
/// `nb` Q8_0 blocks and each `terms[t]` `nb` values.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn tile<F: Vnni, const T: usize>(
    nb: usize,
    packed: *const __m512i,
    a: [*const u8; T],
    terms: [(*const f32, *const i32); T],
    init: [__m512; T],
) -> [__m512; T] {
    let mut acc = init;
    // SAFETY: per the contract, packed + b·VECS (+VECS), every a[t] + b·34 (+34) and every
    // terms[t] + b with b < nb is readable.
    unsafe {
        for b in 0..nb {
            let pb = packed.add(b * F::VECS);
            let mut s = [_mm512_setzero_si512(); T];
            for v in 0..8 {
                let wv = _mm512_loadu_si512(pb.add(v).cast());
                for t in 0..T {
                    let p = a[t].add(b * Q8_0_BYTES + 2 + act_offset::<F>(v));
                    let av = _mm512_set1_epi32(p.cast::<i32>().read_unaligned());
                    // `vpdpbusd` takes its first operand as unsigned bytes, its second signed.
                    s[t] = if F::SHIFT_ACT {
                        _mm512_dpbusd_epi32(s[t], av, wv)
                    } else {
                        _mm512_dpbusd_epi32(s[t], wv, av)
                    };
                }
            }
            let corr: [i32; T] = std::array::from_fn(|t| *terms[t].1.add(b));
            let isum = F::isums(s, pb, corr);
            let dw = _mm512_castsi512_ps(_mm512_loadu_si512(pb.add(8).cast()));
            for t in 0..T {
                let d = _mm512_mul_ps(dw, _mm512_set1_ps(*terms[t].0.add(b)));
                acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t])));
            }
        }
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// K-quant prompt / batch (Q4_K, Q6_K): sixteen rows in lanes
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// Each thread's f32 accumulators for the sixteen-row K-quant kernels, one vector a token.
    static K_ACC: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
}

/// Sixteen rows of a K-quant super-block from the AVX2 kernel's eight-row packing, used twice
/// and joined: `VECS` vectors, of which `SCALES` (from `SCALES0`) have their scale in both `i16`
/// halves of each lane and become one `i32` a lane (`SIGNED`: sign-extended).
///
/// # Safety
/// The CPU has the features of [`kernels`]; the sixteen blocks at `wb + i·row_bytes` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn k_pack16<
    const VECS: usize,
    const SCALES0: usize,
    const SCALES: usize,
    const SIGNED: bool,
>(
    pack8: unsafe fn(*const u8, usize, &mut [__m256i; PACKED_VECS]),
    wb: *const u8,
    row_bytes: usize,
    pk: &mut [__m512i; PACKED_VECS],
) {
    let mut lo = [_mm256_setzero_si256(); PACKED_VECS];
    let mut hi = [_mm256_setzero_si256(); PACKED_VECS];
    // SAFETY: per the contract.
    unsafe {
        pack8(wb, row_bytes, &mut lo);
        pack8(wb.add(8 * row_bytes), row_bytes, &mut hi);
    }
    for v in 0..VECS {
        pk[v] = join(lo[v], hi[v]);
    }
    for v in &mut pk[SCALES0..SCALES0 + SCALES] {
        *v = if SIGNED {
            _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(*v))
        } else {
            _mm512_and_si512(*v, _mm512_set1_epi32(0xffff))
        };
    }
}

/// Q4_K, sixteen rows in pairs of lanes (see [`q4_k_pack16`]) and [`q4_k_tile16`].
struct Q4K;
/// Q5_K, sixteen rows: the AVX2 Q5_K packing (quants 0..31 with the fifth bit, row `i` in lane
/// `i`) and [`k5_tile16`].
struct Q5K;
/// Q6_K, sixteen rows: the AVX2 Q6_K packing (quants plus 32, 0..63; `32·sc` pairs for the
/// offset); scales are `i8`, sign-extended.
struct Q6K;

/// The [`Lanes`] impl of a sixteen-row type: `$bytes` a block, `$pairs` min pairs, its pack
/// and tile functions.
macro_rules! k_lanes16 {
    ($t:ty, $bytes:expr, $pairs:expr, $pack:ident, $tile:ident) => {
        impl Lanes for $t {
            type Vec = __m512i;
            type Acc = __m512;
            const ROWS: usize = 16;
            const TILE: usize = TILE;
            const BYTES: usize = $bytes;
            const PAIRS: usize = $pairs;

            fn acc_scratch() -> &'static std::thread::LocalKey<RefCell<Vec<__m512>>> {
                &K_ACC
            }

            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
            unsafe fn pack(wb: *const u8, row_bytes: usize, pk: &mut [__m512i; PACKED_VECS]) {
                // SAFETY: as the trait requires.
                unsafe { $pack(wb, row_bytes, pk) }
            }

            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
            unsafe fn tile<const T: usize>(
                pk: &[__m512i; PACKED_VECS],
                ab: *const u8,
                arb: usize,
                pairs: *const i32,
                pstride: usize,
                acc: *mut __m512,
            ) {
                // SAFETY: as the trait requires.
                unsafe { $tile::<T>(pk, ab, arb, pairs, pstride, acc) }
            }
        }
    };
}

k_lanes16!(Q4K, 144, 4, q4_k_pack16, q4_k_tile16);
k_lanes16!(Q5K, 176, 4, q5_k_pack16, k5_tile16);
k_lanes16!(Q6K, 210, 0, q6_k_pack16, q6_k_tile16);

/// Q5_K's sixteen rows: [`k4_pack8`] (with the fifth bit) twice, joined.
///
/// # Safety
/// The CPU has the features of [`kernels`]; the sixteen 176-byte blocks are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q5_k_pack16(wb: *const u8, row_bytes: usize, pk: &mut [__m512i; PACKED_VECS]) {
    // SAFETY: per the contract.
    unsafe { k_pack16::<{ PK_DMIN + 1 }, PK_SCALES, 8, false>(k4_pack8::<true>, wb, row_bytes, pk) }
}

/// Q6_K's sixteen rows: [`q6_k_pack_lanes`] twice, joined, the scales sign-extended.
///
/// # Safety
/// The CPU has the features of [`kernels`]; the sixteen 210-byte blocks are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_pack16(wb: *const u8, row_bytes: usize, pk: &mut [__m512i; PACKED_VECS]) {
    // SAFETY: per the contract.
    unsafe {
        k_pack16::<{ Q6_PK_D + 1 }, Q6_PK_SCALES, 16, true>(q6_k_pack_lanes, wb, row_bytes, pk)
    }
}

/// Row of each lane of [`q4_k_tile16`]'s sub-block sums: `vpackssdw` of rows 0..8 and 8..16
/// (each row's two halves in a lane pair) and `vpmaddwd` leave, per 128-bit lane `L`, rows
/// `2L, 2L + 1, 8 + 2L, 9 + 2L`. The scales are packed in this order.
#[inline]
#[target_feature(enable = "avx512f")]
fn q4k_pair_rows() -> __m512i {
    _mm512_setr_epi32(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15)
}

/// Lane of each row in [`q4k_pair_rows`] order: the permutation back to row `r` in lane `r`.
#[inline]
#[target_feature(enable = "avx512f")]
fn q4k_row_lanes() -> __m512i {
    _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15)
}

/// Packs one Q4_K super-block of sixteen rows (row `i`'s at `wb + i·row_bytes`) for
/// [`q4_k_tile16`]: `[8j + 2m + h]` holds, for rows `8h..8h + 8`, the unsigned quants of
/// elements `8m..8m + 8` of sub-block `j`, row `8h + i` in 64-bit lane `i` (so a lane pair is a
/// row's two groups of four); `[PK_SCALES + j]` the scale of sub-block `j` in both `i16` halves,
/// in [`q4k_pair_rows`] lane order; mins, `d` and `dmin` as [`k4_pack8`] lays them out (row `i`
/// in lane `i`). The quants: one 64-bit gather of eight rows per vector, the nibbles split.
///
/// # Safety
/// The CPU has the features of [`kernels`]; the sixteen 144-byte blocks are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_k_pack16(wb: *const u8, row_bytes: usize, pk: &mut [__m512i; PACKED_VECS]) {
    let mut lo = [_mm256_setzero_si256(); PACKED_VECS];
    let mut hi = [_mm256_setzero_si256(); PACKED_VECS];
    let m4 = _mm512_set1_epi8(0x0f);
    let rb = row_bytes as i64;
    let idx = _mm512_setr_epi64(0, rb, 2 * rb, 3 * rb, 4 * rb, 5 * rb, 6 * rb, 7 * rb);
    // SAFETY: per the contract: the quants are bytes 16..144 of each block; byte 32c + e holds
    // element e of sub-blocks 2c (low nibble) and 2c + 1 (high nibble).
    unsafe {
        k4_pack8_meta(wb, row_bytes, &mut lo);
        k4_pack8_meta(wb.add(8 * row_bytes), row_bytes, &mut hi);
        for h in 0..2 {
            let base = wb.add(8 * h * row_bytes + 16);
            for c in 0..4 {
                for m in 0..4 {
                    let g = _mm512_i64gather_epi64::<1>(idx, base.add(32 * c + 8 * m).cast());
                    pk[8 * (2 * c) + 2 * m + h] = _mm512_and_si512(g, m4);
                    pk[8 * (2 * c + 1) + 2 * m + h] =
                        _mm512_and_si512(_mm512_srli_epi16::<4>(g), m4);
                }
            }
        }
    }
    let order = q4k_pair_rows();
    for j in 0..8 {
        pk[PK_SCALES + j] =
            _mm512_permutexvar_epi32(order, join(lo[PK_SCALES + j], hi[PK_SCALES + j]));
    }
    for v in PK_MINS..=PK_DMIN {
        pk[v] = join(lo[v], hi[v]);
    }
}

/// [`super::KQuantGemm8`] for a sixteen-row type: its groups of sixteen rows, then a last group
/// of eight (if any) by the AVX2 kernel `rows8`.
fn k_rows16<L: Lanes>(
    rows8: super::KQuantGemm8,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    out: &mut [f32],
) {
    let done = k_lanes_rows::<L>(n, w, row_bytes, a, out);
    let n_tok = a.len() / (n / QK_K * Q8_K_BYTES).max(1);
    if n_tok > 0 && done * n_tok < out.len() {
        rows8(
            n,
            &w[done * row_bytes..],
            row_bytes,
            a,
            &mut out[done * n_tok..],
        );
    }
}

/// One packed Q4_K super-block of sixteen rows ([`q4_k_pack16`]) against `T` tokens (their
/// Q8_K block at `ab + t·arb`, their min pairs at `pairs + t·pstride`): `acc[t] += …` as the
/// spec, row `i` in lane `i`. Per sub-block, eight `vpdpbusd` (four for rows 0..8, four for
/// 8..16) of the quants against eight activation bytes broadcast to every 64-bit lane: each
/// lane sums 16 products of at most 15·128, so `vpackssdw` of the two is exact and puts a row's
/// two halves side by side as `i16`, and one `vpdpwssd` with the scale pairs adds
/// `sc_j · Σ q·a` of each row to its `i32` sum (no `vpmulld`: two uops on the FMA port).
/// The sums come out in [`q4k_pair_rows`] order and are put back in row order once a block;
/// the mins take one `madd` per two sub-blocks with the activation's sums; the float step is
/// the spec's, lane by lane.
///
/// # Safety
/// The CPU has the features of [`kernels`]; `ab + t·arb` are whole Q8_K blocks,
/// `pairs + t·pstride` hold 4 values and `acc + t` is a valid vector, for t < T.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_k_tile16<const T: usize>(
    pk: &[__m512i; PACKED_VECS],
    ab: *const u8,
    arb: usize,
    pairs: *const i32,
    pstride: usize,
    acc: *mut __m512,
) {
    // SAFETY: per the contract.
    unsafe {
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..8 {
            let mut s0 = [_mm512_setzero_si512(); T];
            let mut s1 = [_mm512_setzero_si512(); T];
            for m in 0..4 {
                let (w0, w1) = (pk[8 * j + 2 * m], pk[8 * j + 2 * m + 1]);
                for t in 0..T {
                    let p = ab.add(t * arb + 4 + 32 * j + 8 * m);
                    let av = _mm512_set1_epi64(p.cast::<i64>().read_unaligned());
                    s0[t] = _mm512_dpbusd_epi32(s0[t], w0, av);
                    s1[t] = _mm512_dpbusd_epi32(s1[t], w1, av);
                }
            }
            let sc = pk[PK_SCALES + j];
            for t in 0..T {
                isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_packs_epi32(s0[t], s1[t]), sc);
            }
        }
        let rows = q4k_row_lanes();
        for v in &mut isum {
            *v = _mm512_permutexvar_epi32(rows, *v);
        }
        k4_finish(pk, isum, ab, arb, pairs, pstride, acc);
    }
}

/// One packed Q5_K super-block of sixteen rows ([`k4_pack8`] twice) against `T` tokens, as
/// [`q4_k_tile16`] but with the eight-row layout: row `i` in lane `i`, four bytes of a sub-block
/// a vector; `vpmulld` scales each sub-block's `i32` sum (16 products of 5-bit quants can pass
/// `i16`, so Q4_K's pairing does not apply).
///
/// # Safety
/// As [`q4_k_tile16`]'s, with `pk` from [`k_pack16`] of [`k4_pack8`].
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn k5_tile16<const T: usize>(
    pk: &[__m512i; PACKED_VECS],
    ab: *const u8,
    arb: usize,
    pairs: *const i32,
    pstride: usize,
    acc: *mut __m512,
) {
    // SAFETY: per the contract.
    unsafe {
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..8 {
            let mut s = [_mm512_setzero_si512(); T];
            for k in 0..8 {
                let wv = pk[8 * j + k];
                for t in 0..T {
                    let p = ab.add(t * arb + 4 + 32 * j + 4 * k);
                    let av = _mm512_set1_epi32(p.cast::<i32>().read_unaligned());
                    s[t] = _mm512_dpbusd_epi32(s[t], wv, av);
                }
            }
            let sc = pk[PK_SCALES + j];
            for t in 0..T {
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], sc));
            }
        }
        k4_finish(pk, isum, ab, arb, pairs, pstride, acc);
    }
}

/// The end of a Q4_K or Q5_K super-block for `T` tokens, as the spec: each token's `msum` (one
/// `madd` per two sub-blocks of the rows' mins with its min pairs), then `acc[t] += d·da·isum −
/// dmin·da·msum`, lane by lane; `isum[t]` has row `i` in lane `i`.
///
/// # Safety
/// As the tiles': `ab + t·arb` are whole Q8_K blocks, `pairs + t·pstride` hold 4 values and
/// `acc + t` is a valid vector, for t < T.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn k4_finish<const T: usize>(
    pk: &[__m512i; PACKED_VECS],
    isum: [__m512i; T],
    ab: *const u8,
    arb: usize,
    pairs: *const i32,
    pstride: usize,
    acc: *mut __m512,
) {
    let dw = _mm512_castsi512_ps(pk[PK_D]);
    let dmin = _mm512_castsi512_ps(pk[PK_DMIN]);
    // SAFETY: per the contract.
    unsafe {
        for (t, isum) in isum.into_iter().enumerate() {
            let pt = pairs.add(t * pstride);
            let mut msum = _mm512_madd_epi16(pk[PK_MINS], _mm512_set1_epi32(*pt));
            for p in 1..4 {
                let m = _mm512_madd_epi16(pk[PK_MINS + p], _mm512_set1_epi32(*pt.add(p)));
                msum = _mm512_add_epi32(msum, m);
            }
            let da = _mm512_set1_ps(ab.add(t * arb).cast::<f32>().read_unaligned());
            let x = _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum));
            let y = _mm512_mul_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(msum));
            let o = acc.add(t);
            *o = _mm512_add_ps(*o, _mm512_sub_ps(x, y));
        }
    }
}

/// One packed Q6_K super-block of sixteen rows against `T` tokens (their Q8_K block at
/// `ab + t·arb`): `acc[t] += …` as the spec, row `i` in lane `i`. Per 16-element sub-block, four
/// `vpdpbusd` of the quants plus 32 (0..63) against the activations, scaled by `vpmulld`; the
/// offset `32·Σ_j sc_j·bsum_j` as in the AVX2 kernel (one `madd` per two sub-blocks of the
/// `32·sc` pairs with the activation's `bsums` pair). It takes the min pairs of the
/// [`Lanes::tile`] signature and reads none (Q6_K has no mins).
///
/// # Safety
/// The CPU has the features of [`kernels`]; `ab + t·arb` are whole Q8_K blocks and `acc + t` is a
/// valid vector, for t < T.
// Index loops over the small fixed arrays: after unrolling every index is a constant.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_tile16<const T: usize>(
    pk: &[__m512i; PACKED_VECS],
    ab: *const u8,
    arb: usize,
    _pairs: *const i32,
    _pstride: usize,
    acc: *mut __m512,
) {
    // SAFETY: per the contract.
    unsafe {
        let bcast = |p: *const u8| _mm512_set1_epi32(p.cast::<i32>().read_unaligned());
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..16 {
            let mut s = [_mm512_setzero_si512(); T];
            for v in 0..4 {
                let wv = pk[4 * j + v];
                for t in 0..T {
                    let p = ab.add(t * arb + 4 + 16 * j + 4 * v);
                    s[t] = _mm512_dpbusd_epi32(s[t], wv, bcast(p));
                }
            }
            let sc = pk[Q6_PK_SCALES + j];
            for t in 0..T {
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], sc));
            }
        }
        let dw = _mm512_castsi512_ps(pk[Q6_PK_D]);
        for t in 0..T {
            let at = ab.add(t * arb);
            let mut off = _mm512_madd_epi16(pk[Q6_PK_OFFSETS], bcast(at.add(260)));
            for p in 1..8 {
                let m = _mm512_madd_epi16(pk[Q6_PK_OFFSETS + p], bcast(at.add(260 + 4 * p)));
                off = _mm512_add_epi32(off, m);
            }
            let isum = _mm512_sub_epi32(isum[t], off);
            let da = _mm512_set1_ps(at.cast::<f32>().read_unaligned());
            let x = _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum));
            let o = acc.add(t);
            *o = _mm512_add_ps(*o, x);
        }
    }
}
