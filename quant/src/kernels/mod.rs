//! The one dispatch point for the compute kernels.
//!
//! The CPU is probed once, at first use; the table of function pointers ([`Kernels`]) for the best
//! instruction set it has is chosen then and never again. The environment variable
//! `SMOE_ISA=scalar|portable|avx2|avx512` overrides the choice; asking for an instruction set the
//! CPU (or this build) lacks prints a warning on stderr and falls back to the detected one.
//! Nothing outside this module names an instruction set.
//!
//! | [`Isa`] | module | what runs it |
//! |---|---|---|
//! | `Scalar` | `scalar.rs` | the spec: plain Rust, always built; only chosen by `SMOE_ISA=scalar` |
//! | `Portable` | `portable.rs` | the `wide` crate (SSE2 on x86-64, NEON on aarch64): ARM, older x86 |
//! | `Avx2` | `x86_avx2.rs` | x86-64 with AVX2 + FMA + F16C |
//! | `Avx512` | `x86_avx512.rs` | AVX-512 F/BW/VL/VNNI + GFNI: the AVX2 table with VNNI kernels for many-token Q4_0, Q8_0, Q4_K, Q5_K, Q6_K and for Q4_0 decode |
//!
//! On AVX2, prompts and batches (from 2 to 6 tokens a matrix, by type) take *lane* kernels for
//! Q4_0, Q8_0, Q4_K, Q5_K and Q6_K: eight weight rows are packed once per call (per super-block
//! for the K-quants) so that row `i` sits in 32-bit lane `i` of every vector, and each group of
//! four activation bytes, broadcast to all lanes, meets all eight rows in one `maddubs`. A
//! block's products then sum in `i16` lanes with no horizontal adds, and a tile of four tokens
//! shares each packed vector. The AVX-512 table (`x86_avx512.rs`) does the same sixteen rows a
//! vector with `vpdpbusd`. Decode (one token) keeps the row-at-a-time kernels, which stream the
//! weights once; the AVX-512 table's Q4_0 one multiplies with 256-bit `vpdpbusd`.
//!
//! The K-quant kernels live beside them: `kquant_scalar.rs` (the spec), `kquant_portable.rs`,
//! `kquant_avx2.rs` (Q2_K … Q6_K; the lane kernels for prompts cover Q4_K, Q5_K and Q6_K).
//!
//! # Reduction orders (the spec)
//! Every kernel of every table gives the same bits as the scalar one, so results do not depend on
//! the instruction set, on how rows are grouped into multi-row kernels, or on the thread count:
//! - **Quantized weights × Q8_0 activations** (`q4_0`, `q8_0`): for each 32-element block an exact
//!   `i32` dot `isum`; then, over the blocks in order, `sum = sum + (d_w * d_a) * (isum as f32)`
//!   starting from `0.0`, each operation rounded to f32 (no fused multiply-add). SIMD kernels
//!   compute several blocks' `isum` at once but accumulate each output in this order.
//! - **Float weights × f32 activations** (`f32`, `f16`, `bf16`): 16 lanes; element `i` goes to
//!   set `(i / 8) % 2`, lane `i % 8`, as `acc = acc + w * x` (no FMA). At the end the two sets are
//!   added lane by lane, then lanes folded `l + (l+4)`, `l + (l+2)`, `l0 + l1`. This is the order of
//!   two 8-lane vector accumulators.
//! - **`quantize_row_q8_0`** is bit-identical to `format::quantize_row(Q8_0, …)` (round half away
//!   from zero, saturating, NaN → 0).
//! - **K-quant weights × Q8_K activations** (`q2_k` … `q6_k`, [`KQuantKernels`]): per 256-element
//!   super-block, two exact `i32` sums over its sub-blocks `j` (16 or 32 elements each):
//!   `isum = Σ_j sc_j · Σ_l q_l·a_l` (`q` the sub-block's quant with its offset removed: Q4_K 0..15,
//!   Q5_K 0..31, Q6_K -32..31, Q2_K 0..3, Q3_K -4..3; `sc` its integer scale: 6-bit, 4-bit or i8)
//!   and, for the types with mins (Q2_K, Q4_K, Q5_K), `msum = Σ_j m_j · Σ_l a_l` (`m` the integer
//!   min). Both are exact in `i32` for every input, so kernels may split them any way (e.g. `Σ a`
//!   from the activation's `bsums`; Q6_K as `Σ q'·a − 32·Σ a` with `q' = q + 32`). Then, over the
//!   super-blocks in order, starting from `0.0`, each operation rounded to f32, no FMA:
//!   `sum = sum + ((d_w * d_a) * isum as f32 - (dmin_w * d_a) * msum as f32)` with mins, or
//!   `sum = sum + (d_w * d_a) * isum as f32` without (Q3_K, Q6_K). `d_w`, `dmin_w` are the block's
//!   f16 scales as f32, `d_a` the Q8_K block's f32 scale. Precondition: the Q8_K rows' `bsums` are
//!   the sums of their quants, as [`KQuantKernels::quantize_row_q8_k`] writes them.
//! - **`quantize_row_q8_k`** is bit-identical to `format::quantize_row(Q8_K, …)` (llama.cpp's
//!   `quantize_row_q8_K_ref`).

use std::sync::OnceLock;

/// A [`QuantKernels`] from a table's 1-row, 4-row and 4×4 kernels (non-capturing closures or fn
/// items), its `rows` built from the same three by [`rows_by_4`] for blocks of `$geom` =
/// (elements, weight block bytes, activation block bytes).
macro_rules! quant_kernels_by_4 {
    ($dot:expr, $x4:expr, $tile:expr, $geom:expr) => {
        super::QuantKernels {
            dot: $dot,
            dot_x4: $x4,
            tile_4x4: $tile,
            rows: |n, w, rb, a, y| super::rows_by_4(($dot, $x4, $tile), $geom, n, w, rb, a, y),
        }
    };
}

/// [`quant_kernels_by_4!`] for a type whose only kernel is a scalar dot: one dot per output.
macro_rules! rowwise_kernels {
    ($dot:path, $geom:expr) => {
        quant_kernels_by_4!(
            $dot,
            |n, w, a| w.map(|w| $dot(n, w, a)),
            |n, w, a| a.map(|a| w.map(|w| $dot(n, w, a))),
            $geom
        )
    };
}

pub mod kquant_scalar;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod kquant_avx2;
mod kquant_portable;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

/// Elements per Q4_0 / Q8_0 block.
pub const QK: usize = 32;
/// Bytes per Q4_0 block.
pub const Q4_0_BYTES: usize = 18;
/// Bytes per Q8_0 block.
pub const Q8_0_BYTES: usize = 34;
/// Elements per K-quant super-block (and Q8_K block).
pub const QK_K: usize = crate::QK_K;
/// Bytes per Q8_K block: f32 scale, 256 i8 quants, 16 i16 sums of 16 quants.
pub const Q8_K_BYTES: usize = 292;

/// An instruction set with a kernel table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    Scalar,
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// Every instruction set, slowest first.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The name `SMOE_ISA` uses.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a `SMOE_ISA` value.
    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == s.trim().to_ascii_lowercase())
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `n` elements of a quantized weight row (`w`, bytes) against Q8_0 activation rows (`a`, bytes).
pub type QuantDot = fn(n: usize, w: &[u8], a: &[u8]) -> f32;
/// Four weight rows against one activation row: `[row]`.
pub type QuantDotX4 = fn(n: usize, w: [&[u8]; 4], a: &[u8]) -> [f32; 4];
/// Four weight rows against four activation rows: `[token][row]`.
pub type QuantTile4x4 = fn(n: usize, w: [&[u8]; 4], a: [&[u8]; 4]) -> [[f32; 4]; 4];
/// A run of consecutive weight rows (row `r` starts at `w[r * row_bytes]`, `n` elements each)
/// against `n_tok` Q8_0 activation rows (`a`, back to back): `y` [n_rows, n_tok]. The drivers'
/// entry point, so a kernel may share work (unpacked weights, activation loads, scales) across
/// as many rows and tokens as it likes; `n_tok` is `a.len()` / the bytes of one activation row.
pub type QuantRows = fn(n: usize, w: &[u8], row_bytes: usize, a: &[u8], y: &mut [f32]);
/// `n` elements of a float weight row (`w`, little-endian bytes, any alignment) against f32 `x`.
pub type FloatDot = fn(n: usize, w: &[u8], x: &[f32]) -> f32;
/// Four float weight rows against one `x`: `[row]`.
pub type FloatDotX4 = fn(n: usize, w: [&[u8]; 4], x: &[f32]) -> [f32; 4];
/// `out[i] = out[i] + p * w[i]` for `n` float elements (no FMA: the same bits on every ISA).
pub type FloatAxpy = fn(n: usize, p: f32, w: &[u8], out: &mut [f32]);

/// The kernels for one quantized weight type against Q8_0 activations (Q8_K for the K-quants). All
/// panic if the slices do not hold exactly `n` elements (`n` a multiple of 32, of 256 for the
/// K-quants): the drivers check shapes first.
#[derive(Clone, Copy, Debug)]
pub struct QuantKernels {
    pub dot: QuantDot,
    /// Decode: the activation row is loaded once for four weight rows.
    pub dot_x4: QuantDotX4,
    /// Prompt / batch: each weight block loaded is used for four tokens.
    pub tile_4x4: QuantTile4x4,
    /// Decode over a run of rows (see [`QuantRows`]).
    pub rows: QuantRows,
}

/// The kernels for one float weight type against f32 activations.
#[derive(Clone, Copy, Debug)]
pub struct FloatKernels {
    pub dot: FloatDot,
    pub dot_x4: FloatDotX4,
    /// Attention's weighted sum of V rows.
    pub axpy: FloatAxpy,
}

/// Four K-quant weight rows against `out.len() / 4` Q8_K activation rows stored back to back in
/// `a`: `out` [n_tok][4] (`out[4 t + r]`), each output the spec's dot of row `r` and token `t`.
pub type KQuantGemm4 = fn(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32]);
/// A run of K-quant weight rows (row `r` at `w[r * row_bytes]`, `n` elements each; their number
/// `out.len() / n_tok` a multiple of 8) against `n_tok` Q8_K activation rows back to back in `a`:
/// `out` [n_rows][n_tok] (`out[r * n_tok + t]`), each output the spec's dot of row `r` and token
/// `t`. Note the layout: row-major by weight row, as the drivers keep it (not [`KQuantGemm4`]'s).
pub type KQuantGemm8 = fn(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]);

/// The kernels for one K-quant weight type against Q8_K activations.
#[derive(Clone, Copy, Debug)]
pub struct KQuantOps {
    /// One token (decode) as for the other quantized types.
    pub kernels: QuantKernels,
    /// Prompt / batch: each weight super-block is decoded once for every token.
    pub gemm_4: KQuantGemm4,
    /// Prompt / batch over groups of eight rows, where a table has a faster kernel for them (the
    /// drivers take [`KQuantOps::gemm_4`] for the rest, and where this is `None`).
    pub gemm_8: Option<KQuantGemm8>,
}

/// The K-quant kernels of one instruction set: weights against Q8_K activation rows.
#[derive(Clone, Copy, Debug)]
pub struct KQuantKernels {
    /// `x` [n] (n a multiple of 256) → `out` [n / 256 × 292 bytes] of Q8_K blocks.
    pub quantize_row_q8_k: fn(x: &[f32], out: &mut [u8]),
    pub q2_k: KQuantOps,
    pub q3_k: KQuantOps,
    pub q4_k: KQuantOps,
    pub q5_k: KQuantOps,
    pub q6_k: KQuantOps,
}

/// One instruction set's kernel table.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// The instruction set these kernels use.
    pub isa: Isa,
    /// `x` [n] (n a multiple of 32) → `out` [n / 32 × 34 bytes] of Q8_0 blocks.
    pub quantize_row_q8_0: fn(x: &[f32], out: &mut [u8]),
    pub q4_0: QuantKernels,
    pub q8_0: QuantKernels,
    pub f32: FloatKernels,
    pub f16: FloatKernels,
    pub bf16: FloatKernels,
    /// Q2_K … Q6_K against Q8_K activations.
    pub k_quants: KQuantKernels,
}

/// [`QuantRows`] from a table's 4×4, 4-row and 1-row kernels, for blocks of `geom` = (elements,
/// weight block bytes, activation block bytes) (tables without a wider kernel use this).
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_by_4(
    (dot, dot_x4, tile_4x4): (QuantDot, QuantDotX4, QuantTile4x4),
    (elems, block, a_block): (usize, usize, usize),
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    y: &mut [f32],
) {
    let arb = n / elems * a_block;
    let n_tok = check_tokens(a.len(), arb, y.len());
    if n_tok == 0 {
        return;
    }
    let n_rows = y.len() / n_tok;
    let wb = row_span(n, elems, block, w.len(), row_bytes, n_rows);
    let row = |r: usize| &w[r * row_bytes..r * row_bytes + wb];
    let at = |t: usize| &a[t * arb..(t + 1) * arb];
    let mut r = 0;
    while r + 4 <= n_rows {
        let wr: [&[u8]; 4] = std::array::from_fn(|i| row(r + i));
        let mut t = 0;
        while t + 4 <= n_tok {
            let tile = tile_4x4(n, wr, std::array::from_fn(|j| at(t + j)));
            for (j, tj) in tile.iter().enumerate() {
                for (i, v) in tj.iter().enumerate() {
                    y[(r + i) * n_tok + t + j] = *v;
                }
            }
            t += 4;
        }
        for t in t..n_tok {
            for (i, v) in dot_x4(n, wr, at(t)).iter().enumerate() {
                y[(r + i) * n_tok + t] = *v;
            }
        }
        r += 4;
    }
    for r in r..n_rows {
        for t in 0..n_tok {
            y[r * n_tok + t] = dot(n, row(r), at(t));
        }
    }
}

/// The number of tokens in `a_len` bytes of activation rows of `arb` bytes, checking that it
/// divides both `a_len` and `y_len` (panics on a caller bug).
pub(super) fn check_tokens(a_len: usize, arb: usize, y_len: usize) -> usize {
    assert!(
        arb > 0 && a_len.is_multiple_of(arb),
        "quantized rows: activation size {a_len}"
    );
    let n_tok = a_len / arb;
    assert!(
        (n_tok == 0 && y_len == 0) || (n_tok > 0 && y_len.is_multiple_of(n_tok)),
        "quantized rows: {y_len} outputs for {n_tok} tokens"
    );
    n_tok
}

/// The bytes of one row of `n` elements in `block`-byte blocks of `elems` elements, after
/// checking that `w_len` bytes hold `n_rows` such rows at stride `row_bytes` (panics on a caller
/// bug, like the other shape checks of the kernels).
pub(super) fn row_span(
    n: usize,
    elems: usize,
    block: usize,
    w_len: usize,
    row_bytes: usize,
    n_rows: usize,
) -> usize {
    assert!(
        elems > 0 && n.is_multiple_of(elems),
        "quantized rows: {n} is not whole blocks"
    );
    let span = n / elems * block;
    assert!(
        row_bytes >= span,
        "quantized rows: stride {row_bytes} < row {span}"
    );
    assert!(
        n_rows == 0 || (n_rows - 1) * row_bytes + span <= w_len,
        "quantized rows: {n_rows} rows of stride {row_bytes} overrun {w_len} bytes"
    );
    span
}

/// The tables this CPU and build can run, indexed like [`Isa::ALL`].
fn tables() -> &'static [Option<Kernels>; 4] {
    static TABLES: OnceLock<[Option<Kernels>; 4]> = OnceLock::new();
    TABLES.get_or_init(|| Isa::ALL.map(build))
}

fn build(isa: Isa) -> Option<Kernels> {
    match isa {
        Isa::Scalar => Some(scalar::kernels()),
        Isa::Portable => Some(portable::kernels()),
        Isa::Avx2 => avx2_kernels(),
        Isa::Avx512 => avx512_kernels(),
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_kernels() -> Option<Kernels> {
    x86_avx512::kernels()
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_kernels() -> Option<Kernels> {
    None
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernels() -> Option<Kernels> {
    x86_avx2::kernels()
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_kernels() -> Option<Kernels> {
    None
}

/// The table for `isa`, if this CPU and build can run it (tests loop over these).
pub fn table(isa: Isa) -> Option<&'static Kernels> {
    let i = Isa::ALL.iter().position(|&x| x == isa)?;
    tables()[i].as_ref()
}

/// The instruction sets this CPU and build can run, slowest first.
pub fn available() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&i| table(i).is_some())
        .collect()
}

/// The best instruction set this CPU and build can run.
pub fn detected() -> Isa {
    available().last().copied().unwrap_or(Isa::Scalar)
}

/// The table in use: the best available, or `SMOE_ISA`'s choice when the CPU has it.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let best = detected();
        let isa = match std::env::var("SMOE_ISA") {
            Ok(v) if !v.is_empty() => match Isa::from_name(&v) {
                Some(want) if table(want).is_some() => want,
                Some(want) => {
                    eprintln!("smoe: SMOE_ISA={want}: this CPU or build lacks it; using {best}");
                    best
                }
                None => {
                    eprintln!("smoe: SMOE_ISA={v:?} is not one of scalar, portable, avx2, avx512; using {best}");
                    best
                }
            },
            _ => best,
        };
        match table(isa) {
            Some(k) => k,
            None => scalar_table(),
        }
    })
}

/// The scalar table (always there).
fn scalar_table() -> &'static Kernels {
    static SCALAR: OnceLock<Kernels> = OnceLock::new();
    SCALAR.get_or_init(scalar::kernels)
}
