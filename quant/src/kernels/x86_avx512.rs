//! x86-64 kernels for AVX-512 with VNNI (AVX-512 F, BW and VNNI, on top of AVX2/FMA/F16C):
//! the many-token Q4_0, Q8_0, Q4_K and Q6_K kernels. Everything else in the table (decode, the
//! other types, float weights) is the AVX2 kernels'.
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
//! - **Q4_K, Q6_K** (prompts): sixteen rows of a super-block packed as the AVX2 kernels pack
//!   eight (twice, joined); per sub-block the `vpdpbusd` sums are multiplied by the rows' scales
//!   (`vpmulld`) into the super-block's `isum`; the mins (Q4_K) and offsets (Q6_K) terms are the
//!   AVX2 kernels' `madd`s.
//!
//! [`kernels`] returns a table only when the CPU has every feature used here.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::kquant_avx2::{
    k4_pack8, q4_k_lanes_rows8, q6_k_lanes_rows8, q6_k_pack8, q8_k_min_pairs, LANES_CHUNK,
    PACKED_VECS, PK_D, PK_DMIN, PK_MINS, PK_SCALES, Q6_PK_D, Q6_PK_OFFSETS, Q6_PK_SCALES,
};
use super::x86_avx2::{
    lanes_rows, prefetch_rows_ahead, q4_0_rows_with, q8_0_rows_with, scales8, transpose8x4,
    LaneFormat,
};
use super::{check_tokens, row_span, Isa, Kernels, Q4_0_BYTES, Q8_0_BYTES, Q8_K_BYTES, QK_K};

/// The AVX-512 table, if this CPU has AVX-512 F/BW/VNNI (and AVX2/FMA/F16C): the AVX2 table
/// with the many-token Q4_0, Q8_0, Q4_K and Q6_K kernels replaced.
pub(super) fn kernels() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni");
    if !ok {
        return None;
    }
    let mut k = super::x86_avx2::kernels()?;
    k.isa = Isa::Avx512;
    k.q4_0.rows = |n, w, rb, a, y| q4_0_rows_with(lanes_rows::<Q4>, Q4::MIN_TOKENS, n, w, rb, a, y);
    k.q8_0.rows = |n, w, rb, a, y| q8_0_rows_with(lanes_rows::<Q8>, Q8::MIN_TOKENS, n, w, rb, a, y);
    k.k_quants.q4_k.gemm_8 = Some(k_rows16::<Q4K>);
    k.k_quants.q6_k.gemm_8 = Some(k_rows16::<Q6K>);
    Some(k)
}

/// Tokens per tile: each packed vector is loaded once for this many tokens.
const TILE: usize = 8;

thread_local! {
    /// Each thread's packed rows for [`lanes_rows`] (grown once to the widest matrix).
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
        ) -> [__m512; T] {
            // SAFETY: as the trait requires.
            unsafe { tile::<Self, T>(nb, packed, a, terms) }
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

/// The scales of sixteen rows' blocks at `wb` (stride `row_bytes`) as f32, row `i` in lane `i`.
///
/// # Safety
/// The CPU has the features of [`kernels`]; two bytes at `wb + i·row_bytes` are readable for
/// i < 16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn scales16(wb: *const u8, row_bytes: usize) -> __m512i {
    // SAFETY: per the contract.
    unsafe {
        let lo = _mm256_castps_si256(scales8(wb, row_bytes));
        let hi = _mm256_castps_si256(scales8(wb.add(8 * row_bytes), row_bytes));
        join(lo, hi)
    }
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
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn pack(nb: usize, w0: *const u8, row_bytes: usize, out: *mut __m512i) {
        let m4 = _mm512_set1_epi8(0x0f);
        // SAFETY: per the contract.
        unsafe {
            for b in 0..nb {
                let wb = w0.add(b * Q4_0_BYTES);
                prefetch_rows_ahead(b, wb, row_bytes);
                prefetch_rows_ahead(b, wb.add(8 * row_bytes), row_bytes);
                let lo = transpose8x4(wb, row_bytes, 2);
                let hi = transpose8x4(wb.add(8 * row_bytes), row_bytes, 2);
                let o = out.add(b * Self::VECS);
                for k in 0..4 {
                    let p = join(lo[k], hi[k]);
                    _mm512_storeu_si512(o.add(2 * k).cast(), _mm512_and_si512(p, m4));
                    let h = _mm512_and_si512(_mm512_srli_epi16::<4>(p), m4);
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
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
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
                    let lo = transpose8x4(wb, row_bytes, 2 + 16 * half);
                    let hi = transpose8x4(wb.add(8 * row_bytes), row_bytes, 2 + 16 * half);
                    for k in 0..4 {
                        let p = join(lo[k], hi[k]);
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
/// rows' outputs per token, row `i` in lane `i`.
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
) -> [__m512; T] {
    let mut acc = [_mm512_setzero_ps(); T];
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

/// A K-quant type with a sixteen-row VNNI kernel: its AVX2 eight-row packing, used twice, and
/// a tile over the joined vectors.
trait KLanes16 {
    /// Bytes per weight block.
    const BYTES: usize;
    /// Whether the tile reads the activation's min pairs (`q8_k_min_pairs`).
    const PAIRS: bool;
    /// The packed vectors the tile reads (`[..VECS]` of the AVX2 layout).
    const VECS: usize;
    /// The AVX2 eight-row kernel, for a last group of eight rows.
    const ROWS8: super::KQuantGemm8;
    /// Packs eight rows' super-block as the AVX2 kernel does.
    ///
    /// # Safety
    /// The CPU has AVX2/FMA/F16C; the eight blocks at `wb + i·row_bytes` are readable.
    unsafe fn pack8(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]);
    /// Turns the joined AVX2 layout's scale vectors (an `i16` in both halves of each lane) into
    /// one `i32` a lane.
    ///
    /// # Safety
    /// The CPU has the features of [`kernels`].
    unsafe fn widen_scales(pk: &mut [__m512i; PACKED_VECS]);
    /// One packed super-block of sixteen rows against `T` tokens: `acc[t] += …` as the spec.
    ///
    /// # Safety
    /// As [`q4_k_tile16`].
    unsafe fn tile<const T: usize>(
        pk: &[__m512i; PACKED_VECS],
        ab: *const u8,
        arb: usize,
        pairs: *const i32,
        pstride: usize,
        acc: *mut __m512,
    );
}

/// Q4_K: the AVX2 Q4_K packing (no Q5 bits); scales are 6-bit, so the low `i16` is the `i32`.
struct Q4K;
/// Q6_K: the AVX2 Q6_K packing (quants plus 32, 0..63; `32·sc` pairs for the offset); scales
/// are `i8`, sign-extended.
struct Q6K;

impl KLanes16 for Q4K {
    const BYTES: usize = 144;
    const PAIRS: bool = true;
    const VECS: usize = PK_DMIN + 1;
    const ROWS8: super::KQuantGemm8 = q4_k_lanes_rows8;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack8(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]) {
        // SAFETY: as the trait requires.
        unsafe { k4_pack8::<false>(wb, row_bytes, pk) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn widen_scales(pk: &mut [__m512i; PACKED_VECS]) {
        for v in &mut pk[PK_SCALES..PK_SCALES + 8] {
            *v = _mm512_and_si512(*v, _mm512_set1_epi32(0xffff));
        }
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
        unsafe { q4_k_tile16::<T>(pk, ab, arb, pairs, pstride, acc) }
    }
}

impl KLanes16 for Q6K {
    const BYTES: usize = 210;
    const PAIRS: bool = false;
    const VECS: usize = Q6_PK_D + 1;
    const ROWS8: super::KQuantGemm8 = q6_k_lanes_rows8;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack8(wb: *const u8, row_bytes: usize, pk: &mut [__m256i; PACKED_VECS]) {
        // SAFETY: as the trait requires.
        unsafe { q6_k_pack8(wb, row_bytes, pk) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn widen_scales(pk: &mut [__m512i; PACKED_VECS]) {
        for v in &mut pk[Q6_PK_SCALES..Q6_PK_SCALES + 16] {
            *v = _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(*v));
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    unsafe fn tile<const T: usize>(
        pk: &[__m512i; PACKED_VECS],
        ab: *const u8,
        arb: usize,
        _: *const i32,
        _: usize,
        acc: *mut __m512,
    ) {
        // SAFETY: as the trait requires.
        unsafe { q6_k_tile16::<T>(pk, ab, arb, acc) }
    }
}

thread_local! {
    /// Each thread's f32 accumulators for [`k_rows16`], one vector (sixteen rows) a token.
    static K_ACC: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
}

/// [`super::KQuantGemm8`] for a [`KLanes16`] type: groups of sixteen rows here, a last group of
/// eight by the AVX2 kernel. For each chunk of up to `LANES_CHUNK` tokens, each group runs
/// super-block by super-block: the sixteen rows' block is packed once ([`k_lanes16`]) and read
/// by every tile of [`TILE`] tokens, the outputs accumulating in super-block order, as the spec.
fn k_rows16<K: KLanes16>(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
    assert_eq!(n % QK_K, 0, "q4_k lanes16: {n} is not whole super-blocks");
    let nb = n / QK_K;
    let arb = nb * Q8_K_BYTES;
    let n_tok = check_tokens(a.len(), arb, out.len());
    if n_tok == 0 {
        return;
    }
    let n_rows = out.len() / n_tok;
    assert_eq!(
        n_rows % 8,
        0,
        "q4_k lanes16: {n_rows} rows are not groups of 8"
    );
    row_span(n, QK_K, K::BYTES, w.len(), row_bytes, n_rows);
    let r16 = n_rows / 16 * 16;
    if r16 > 0 {
        let pairs = if K::PAIRS {
            q8_k_min_pairs(a, n_tok, nb)
        } else {
            Vec::new()
        };
        let ps = if K::PAIRS { 4 * nb } else { 0 };
        K_ACC.with_borrow_mut(|acc| {
            if acc.len() < LANES_CHUNK {
                // SAFETY: all-zero bits are a valid __m512.
                acc.resize(LANES_CHUNK, unsafe { std::mem::zeroed() });
            }
            for t0 in (0..n_tok).step_by(LANES_CHUNK) {
                let m = LANES_CHUNK.min(n_tok - t0);
                for r0 in (0..r16).step_by(16) {
                    // SAFETY: reachable only through `kernels()` (every feature checked); rows
                    // r0..r0 + 16 of nb blocks lie in `w` (row_span above), tokens t0..t0 + m
                    // have nb Q8_K blocks in `a` (check_tokens) and `ps` pairs each (none read
                    // without pairs: every offset into `pairs` is then 0), and `acc` holds
                    // LANES_CHUNK ≥ m vectors.
                    unsafe {
                        k_lanes16::<K>(
                            nb,
                            w.as_ptr().add(r0 * row_bytes),
                            row_bytes,
                            a.as_ptr().add(t0 * arb),
                            arb,
                            pairs.as_ptr().add(t0 * ps),
                            &mut acc[..m],
                        )
                    };
                    for (j, v) in acc[..m].iter().enumerate() {
                        // SAFETY: a __m512 is sixteen f32.
                        let o = unsafe { std::mem::transmute::<__m512, [f32; 16]>(*v) };
                        for (i, x) in o.iter().enumerate() {
                            out[(r0 + i) * n_tok + t0 + j] = *x;
                        }
                    }
                }
            }
        });
    }
    if r16 < n_rows {
        (K::ROWS8)(
            n,
            &w[r16 * row_bytes..],
            row_bytes,
            a,
            &mut out[r16 * n_tok..],
        );
    }
}

/// Sixteen rows of `K` (row `i` at `w0 + i·row_bytes`, `nb` blocks each) against `acc.len()`
/// tokens (their Q8_K rows at `a`, `arb` apart, and their min pairs at `pairs`, `4·nb` apart):
/// `acc[t]` lane `i` = the spec's dot of row `i` and token `t`.
///
/// # Safety
/// The CPU has the features of [`kernels`]; the sixteen rows of `nb` blocks are readable; `a`
/// holds `acc.len()` rows of `nb` Q8_K blocks at stride `arb`, and `pairs` `4·nb` values a token
/// where `K::PAIRS` (none read otherwise).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn k_lanes16<K: KLanes16>(
    nb: usize,
    w0: *const u8,
    row_bytes: usize,
    a: *const u8,
    arb: usize,
    pairs: *const i32,
    acc: &mut [__m512],
) {
    let ps = if K::PAIRS { 4 * nb } else { 0 };
    let n_tok = acc.len();
    acc.fill(_mm512_setzero_ps());
    let mut lo = [_mm256_setzero_si256(); PACKED_VECS];
    let mut hi = [_mm256_setzero_si256(); PACKED_VECS];
    let mut pk = [_mm512_setzero_si512(); PACKED_VECS];
    let acc = acc.as_mut_ptr();
    let pstep = if K::PAIRS { 4 } else { 0 };
    // SAFETY: per the contract, every block b < nb of the sixteen rows, every Q8_K block b of a
    // token t < n_tok and its pairs are readable; `acc` holds n_tok vectors.
    unsafe {
        for b in 0..nb {
            let wb = w0.add(b * K::BYTES);
            for i in 0..16 {
                // The same rows' next super-block (a prefetch never faults).
                let p = wb.wrapping_add(i * row_bytes + K::BYTES);
                let mut off = 0;
                while off < K::BYTES {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast());
                    off += 64;
                }
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(K::BYTES - 1).cast());
            }
            K::pack8(wb, row_bytes, &mut lo);
            K::pack8(wb.add(8 * row_bytes), row_bytes, &mut hi);
            for v in 0..K::VECS {
                pk[v] = join(lo[v], hi[v]);
            }
            K::widen_scales(&mut pk);
            let ab = a.add(b * Q8_K_BYTES);
            let pb = pairs.add(pstep * b);
            let mut t = 0;
            macro_rules! tiles {
                ($($n:literal)*) => {
                    loop {
                        match (n_tok - t).min(TILE) {
                            $($n => {
                                K::tile::<$n>(&pk, ab.add(t * arb), arb, pb.add(t * ps), ps, acc.add(t));
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

/// One packed Q4_K super-block of sixteen rows against `T` tokens (their Q8_K block at
/// `ab + t·arb`, their four min pairs at `pairs + t·pstride`): `acc[t] += …` as the spec, row
/// `i` in lane `i`. Per sub-block, eight `vpdpbusd` give each lane's `Σ q·a` (unsigned 4-bit
/// quants against signed activations) and `vpmulld` scales it into the exact `isum`; the mins
/// take one `madd` per two sub-blocks with the activation's sums.
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
        let dw = _mm512_castsi512_ps(pk[PK_D]);
        let dmin = _mm512_castsi512_ps(pk[PK_DMIN]);
        for t in 0..T {
            let pt = pairs.add(t * pstride);
            let mut msum = _mm512_madd_epi16(pk[PK_MINS], _mm512_set1_epi32(*pt));
            for p in 1..4 {
                let m = _mm512_madd_epi16(pk[PK_MINS + p], _mm512_set1_epi32(*pt.add(p)));
                msum = _mm512_add_epi32(msum, m);
            }
            let da = _mm512_set1_ps(ab.add(t * arb).cast::<f32>().read_unaligned());
            let x = _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum[t]));
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
/// `32·sc` pairs with the activation's `bsums` pair).
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
