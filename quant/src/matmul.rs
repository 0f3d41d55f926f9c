//! Row-parallel matrix drivers on rayon: one token (decode) and many tokens (prompt, batch).
//!
//! A [`Matrix`] is a view of `n_rows` rows of `n_cols` elements in one block type, borrowed from
//! wherever the bytes live (a GGUF mmap). Work is split across the pool by output rows only, and
//! every output is one dot product with the fixed reduction order of [`crate::kernels`]: results do
//! not depend on the thread count, the instruction set, or how rows and tokens are tiled.
//!
//! # Activations: quantize once, multiply many times
//! Q4_0 / Q8_0 weights are multiplied against activations quantized to Q8_0 (an exact integer dot
//! per 32-element block, as llama.cpp does). [`Activations`] holds `n_tok` rows in f32 (for float
//! weights) and as Q8_0, so a token's input is quantized once and reused for the router, gate, up
//! and every chosen expert; [`Activations::gather_into`] picks the tokens routed to one expert
//! without quantizing again.
//!
//! K-quant weights (Q2_K … Q6_K) multiply activations quantized to Q8_K (256-element blocks with
//! their 16-element sums). Those rows are made lazily, at the first K-quant matmul that reads the
//! activations, and then kept until the next [`Activations::set_rows`]; a gather carries them, and
//! once a gathered set has been multiplied by a K-quant matrix, later gathers into it make the
//! source's Q8_K rows first (once) and copy them, so a token is still quantized once per input.
//!
//! ```
//! use smoe_quant::matmul::{matmul, Activations, Matrix};
//! use smoe_quant::{format::quantize_row, GgmlType};
//!
//! let (n_ff, n_embd, n_tok) = (64, 32, 3);
//! let w_f32: Vec<f32> = (0..n_ff * n_embd).map(|i| (i % 7) as f32 - 3.0).collect();
//! let mut gate = vec![0u8; n_ff * 18]; // Q4_0: 18 bytes per 32 columns
//! quantize_row(GgmlType::Q4_0, &w_f32, &mut gate)?;
//! let gate = Matrix::new(GgmlType::Q4_0, &gate, n_ff, n_embd)?; // [n_ff, n_embd]
//!
//! let x: Vec<f32> = (0..n_tok * n_embd).map(|i| (i as f32).sin()).collect(); // [n_tok, n_embd]
//! let mut acts = Activations::new();
//! acts.set_rows(&x, n_embd)?; // quantized once, here
//! let mut y = vec![0.0; n_tok * n_ff]; // [n_tok, n_ff]
//! matmul(&gate, &acts, &mut y)?; // reuse `acts` for up, the router, ...
//!
//! // Tokens 0 and 2 chose this expert: gather them (no re-quantization), multiply.
//! let mut picked = Activations::new();
//! acts.gather_into(&[0, 2], &mut picked)?;
//! let mut y2 = vec![0.0; 2 * n_ff]; // [2, n_ff]
//! matmul(&gate, &picked, &mut y2)?;
//! assert_eq!(y2[n_ff..], y[2 * n_ff..]);
//! # Ok::<(), smoe_quant::QuantError>(())
//! ```
//!
//! [`gemv`] and [`gemm`] keep the f32-input entry points: they quantize internally (allocating)
//! for Q4_0 / Q8_0 and K-quant weights. Float weights (F32, F16, BF16) use f32 activations
//! directly; other block types (Q4_1, Q5_0, …) still take the scalar dequantize-and-dot path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rayon::prelude::*;

use crate::format::dequantize_row;
use crate::kernels::{
    self, FloatKernels, KQuantOps, Kernels, QuantKernels, Q8_0_BYTES, Q8_K_BYTES, QK, QK_K,
};
use crate::{GgmlType, QuantError, Result};

/// A row-major matrix of `n_rows` × `n_cols` elements of type `ty`, viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub n_rows: usize,
    pub n_cols: usize,
    /// Bytes per row.
    pub row_bytes: usize,
}

impl<'a> Matrix<'a> {
    /// Checks that `data` holds exactly `n_rows` rows of `n_cols` elements of `ty`.
    pub fn new(ty: GgmlType, data: &'a [u8], n_rows: usize, n_cols: usize) -> Result<Self> {
        let row_bytes = ty
            .row_bytes(n_cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| QuantError::Shape {
                ty,
                what: format!("a row of {n_cols} elements is not a whole number of blocks"),
            })?;
        let want = row_bytes.checked_mul(n_rows);
        if want != Some(data.len()) {
            return Err(QuantError::Shape {
                ty,
                what: format!(
                    "{n_rows} rows × {n_cols} columns need {} bytes, the view has {}",
                    want.map_or("more than usize".to_string(), |w| w.to_string()),
                    data.len()
                ),
            });
        }
        Ok(Matrix {
            ty,
            data,
            n_rows,
            n_cols,
            row_bytes,
        })
    }

    /// The bytes of row `r`. Panics if `r >= n_rows` (a caller bug, not an input error).
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Rows `r0..r1` as a matrix of their own (e.g. one expert of a stacked expert tensor).
    pub fn rows(&self, r0: usize, r1: usize) -> Matrix<'a> {
        Matrix {
            data: &self.data[r0 * self.row_bytes..r1 * self.row_bytes],
            n_rows: r1 - r0,
            ..*self
        }
    }

    /// Dequantizes row `r` into `out` [n_cols].
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) -> Result<()> {
        dequantize_row(self.ty, self.row(r), out)
    }
}

/// Elements dequantized at a time in the scalar reference dot product (a multiple of every block
/// size).
const CHUNK: usize = 256;

/// Dot product of one stored row with `x` [n_cols], by dequantizing CHUNK elements at a time.
/// The reference: every optimized kernel must agree with it.
fn dot_row_ref(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    let bs = ty.block_size();
    let ts = ty.type_size();
    let mut buf = [0.0f32; CHUNK];
    let mut acc = 0.0f32;
    let per_chunk = (CHUNK / bs).max(1);
    let mut col = 0;
    for bytes in row.chunks(per_chunk * ts) {
        let n = bytes.len() / ts * bs;
        // The matrix was validated, so every chunk holds whole blocks.
        if dequantize_row(ty, bytes, &mut buf[..n]).is_err() {
            return f32::NAN;
        }
        for (w, v) in buf[..n].iter().zip(&x[col..col + n]) {
            acc += w * v;
        }
        col += n;
    }
    acc
}

/// `n_tok` activation rows of `n_cols`: in f32, quantized to Q8_0 when `n_cols` is a multiple
/// of 32, and to Q8_K (lazily, for K-quant weights) when it is a multiple of 256. Buffers are
/// reused across [`Activations::set_rows`] calls (no allocation once they are large enough).
#[derive(Debug, Default)]
pub struct Activations {
    n_tok: usize,
    n_cols: usize,
    /// [n_tok, n_cols]
    x: Vec<f32>,
    /// [n_tok, n_cols / 32 × 34 bytes]; empty when `n_cols % 32 != 0`.
    q8: Vec<u8>,
    /// [n_tok, n_cols / 256 × 292 bytes], made at first use by a K-quant matrix.
    q8k: OnceLock<Vec<u8>>,
    /// The previous rows' Q8_K buffer, kept for reuse.
    q8k_spare: Mutex<Vec<u8>>,
    /// Set once a K-quant matrix has read these activations: gathers into them then carry Q8_K.
    wants_q8k: AtomicBool,
}

impl Clone for Activations {
    fn clone(&self) -> Self {
        Activations {
            n_tok: self.n_tok,
            n_cols: self.n_cols,
            x: self.x.clone(),
            q8: self.q8.clone(),
            q8k: self.q8k.clone(),
            q8k_spare: Mutex::default(),
            wants_q8k: AtomicBool::new(self.wants_q8k.load(Ordering::Relaxed)),
        }
    }
}

impl Activations {
    /// No rows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows `x` [n_tok, n_cols], quantized at once.
    pub fn from_rows(x: &[f32], n_cols: usize) -> Result<Self> {
        let mut a = Self::new();
        a.set_rows(x, n_cols)?;
        Ok(a)
    }

    /// Replaces the rows with `x` [n_tok, n_cols] and quantizes them to Q8_0.
    pub fn set_rows(&mut self, x: &[f32], n_cols: usize) -> Result<()> {
        self.set_rows_with(kernels::kernels(), x, n_cols)
    }

    /// [`Activations::set_rows`] with a given kernel table (every table gives the same bytes).
    pub fn set_rows_with(&mut self, k: &Kernels, x: &[f32], n_cols: usize) -> Result<()> {
        if n_cols == 0 || !x.len().is_multiple_of(n_cols) {
            return Err(QuantError::Shape {
                ty: GgmlType::F32,
                what: format!("{} activations are not rows of {n_cols}", x.len()),
            });
        }
        self.n_tok = x.len() / n_cols;
        self.n_cols = n_cols;
        self.drop_q8k();
        self.x.clear();
        self.x.extend_from_slice(x);
        self.q8.clear();
        if n_cols.is_multiple_of(QK) {
            let rb = self.q8_row_bytes();
            self.q8.resize(self.n_tok * rb, 0);
            let quantize = k.quantize_row_q8_0;
            if self.n_tok >= 4 {
                self.q8
                    .par_chunks_mut(rb)
                    .zip(x.par_chunks(n_cols))
                    .for_each(|(q, xr)| quantize(xr, q));
            } else {
                for (q, xr) in self.q8.chunks_mut(rb).zip(x.chunks(n_cols)) {
                    quantize(xr, q);
                }
            }
        }
        Ok(())
    }

    /// Copies rows `rows` (token indices) into `out` [rows.len(), n_cols], f32 and Q8_0 alike.
    pub fn gather_into(&self, rows: &[usize], out: &mut Activations) -> Result<()> {
        if let Some(&bad) = rows.iter().find(|&&t| t >= self.n_tok) {
            return Err(QuantError::Shape {
                ty: GgmlType::Q8_0,
                what: format!("token {bad} gathered from {} activation rows", self.n_tok),
            });
        }
        out.n_tok = rows.len();
        out.n_cols = self.n_cols;
        out.drop_q8k();
        out.x.clear();
        out.q8.clear();
        for &t in rows {
            out.x.extend_from_slice(self.row(t));
            out.q8.extend_from_slice(self.q8_row(t).unwrap_or(&[]));
        }
        // Q8_K: copied when the source has it, or made in the source (once for all its gathers)
        // when `out` has fed K-quant matrices before.
        let src = match self.q8k.get() {
            Some(q) => Some(q.as_slice()),
            None if out.wants_q8k.load(Ordering::Relaxed) => {
                Some(self.q8k_rows(kernels::kernels()))
            }
            None => None,
        };
        if let Some(src) = src.filter(|q| !q.is_empty()) {
            let rb = self.q8k_row_bytes();
            let spare = out
                .q8k_spare
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            let mut buf = std::mem::take(spare);
            for &t in rows {
                buf.extend_from_slice(&src[t * rb..(t + 1) * rb]);
            }
            // `out.q8k` was emptied above, so this cannot fail.
            let _ = out.q8k.set(buf);
        }
        Ok(())
    }

    /// Forgets the Q8_K rows (keeping their buffer for reuse).
    fn drop_q8k(&mut self) {
        if let Some(mut old) = self.q8k.take() {
            old.clear();
            *self
                .q8k_spare
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner) = old;
        }
    }

    /// The rows as Q8_K, made now (with `k`'s quantizer) if not yet; empty when `n_cols` is not a
    /// multiple of 256.
    fn q8k_rows(&self, k: &Kernels) -> &[u8] {
        self.q8k.get_or_init(|| {
            let mut buf = {
                let mut spare = self
                    .q8k_spare
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::take(&mut *spare)
            };
            buf.clear();
            if self.n_cols.is_multiple_of(QK_K) {
                let (rb, n) = (self.q8k_row_bytes(), self.n_cols);
                buf.resize(self.n_tok * rb, 0);
                let quantize = k.k_quants.quantize_row_q8_k;
                if self.n_tok >= 4 {
                    buf.par_chunks_mut(rb)
                        .zip(self.x.par_chunks(n))
                        .for_each(|(q, xr)| quantize(xr, q));
                } else {
                    for (q, xr) in buf.chunks_mut(rb).zip(self.x.chunks(n)) {
                        quantize(xr, q);
                    }
                }
            }
            buf
        })
    }

    /// Row `t` as Q8_K blocks (made now if not yet), or `None` when `n_cols` is not a multiple of
    /// 256. Panics if `t >= n_tok`.
    pub fn q8k_row(&self, t: usize) -> Option<&[u8]> {
        let rb = self.q8k_row_bytes();
        let q = self.q8k_rows(kernels::kernels());
        (!q.is_empty()).then(|| &q[t * rb..(t + 1) * rb])
    }

    fn q8k_row_bytes(&self) -> usize {
        self.n_cols / QK_K * Q8_K_BYTES
    }

    /// Number of rows (tokens).
    pub fn n_tok(&self) -> usize {
        self.n_tok
    }

    /// Elements per row.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Row `t` in f32 [n_cols]. Panics if `t >= n_tok`.
    pub fn row(&self, t: usize) -> &[f32] {
        &self.x[t * self.n_cols..(t + 1) * self.n_cols]
    }

    /// Row `t` as Q8_0 blocks, or `None` when `n_cols` is not a multiple of 32.
    pub fn q8_row(&self, t: usize) -> Option<&[u8]> {
        let rb = self.q8_row_bytes();
        (!self.q8.is_empty()).then(|| &self.q8[t * rb..(t + 1) * rb])
    }

    fn q8_row_bytes(&self) -> usize {
        self.n_cols / QK * Q8_0_BYTES
    }

    fn input(&self) -> Input<'_> {
        Input {
            n_tok: self.n_tok,
            x: &self.x,
            q8: &self.q8,
            q8k: &[],
        }
    }

    /// The view a matrix of type `ty` reads: with the Q8_K rows (made now if need be) for K-quants.
    fn input_for(&self, k: &Kernels, ty: GgmlType) -> Input<'_> {
        let mut input = self.input();
        if kquant_kernels(k, ty).is_some() {
            self.wants_q8k.store(true, Ordering::Relaxed);
            input.q8k = self.q8k_rows(k);
        }
        input
    }
}

/// A borrowed view of activations: `x` [n_tok, n_cols], `q8` [n_tok, Q8_0 row] or empty,
/// `q8k` [n_tok, Q8_K row] or empty.
#[derive(Clone, Copy)]
struct Input<'a> {
    n_tok: usize,
    x: &'a [f32],
    q8: &'a [u8],
    q8k: &'a [u8],
}

/// `y[t, r] = Σ_c W[r, c] · x[t, c]`: `x` [n_tok, n_cols] activations, `y` [n_tok, n_rows].
/// One token is a matrix-vector product (decode); more are tiled so that each weight block is read
/// once per four tokens.
pub fn matmul(w: &Matrix, x: &Activations, y: &mut [f32]) -> Result<()> {
    matmul_with(kernels::kernels(), w, x, y)
}

/// [`matmul`] with a given kernel table (benches and tests; every table gives the same bits).
pub fn matmul_with(k: &Kernels, w: &Matrix, x: &Activations, y: &mut [f32]) -> Result<()> {
    if x.n_cols != w.n_cols {
        return Err(QuantError::Shape {
            ty: w.ty,
            what: format!(
                "matrix of {} columns, activations of {}",
                w.n_cols, x.n_cols
            ),
        });
    }
    run(k, w, x.input_for(k, w.ty), y)
}

/// `y[r] = Σ_c W[r, c] · x[c]`: one token through a matrix. `x` [n_cols], `y` [n_rows].
/// Quantizes `x` (allocating) for Q4_0 / Q8_0 weights; prefer [`matmul`] with [`Activations`].
pub fn gemv(w: &Matrix, x: &[f32], y: &mut [f32]) -> Result<()> {
    gemm(w, x, 1, y)
}

/// `y[t, r] = Σ_c W[r, c] · x[t, c]` for `n_tok` tokens: `x` [n_tok, n_cols], `y` [n_tok, n_rows].
/// Quantizes `x` (allocating) for Q4_0 / Q8_0 weights; prefer [`matmul`] with [`Activations`].
pub fn gemm(w: &Matrix, x: &[f32], n_tok: usize, y: &mut [f32]) -> Result<()> {
    check_dims(w, x.len(), y.len(), n_tok)?;
    let k = kernels::kernels();
    if quant_kernels(k, w.ty).is_some() || kquant_kernels(k, w.ty).is_some() {
        let a = Activations::from_rows(x, w.n_cols)?;
        return run(k, w, a.input_for(k, w.ty), y);
    }
    let q = &[];
    run(
        k,
        w,
        Input {
            n_tok,
            x,
            q8: q,
            q8k: q,
        },
        y,
    )
}

/// The kernels for a quantized weight type, if it has them.
fn quant_kernels(k: &Kernels, ty: GgmlType) -> Option<QuantKernels> {
    match ty {
        GgmlType::Q4_0 => Some(k.q4_0),
        GgmlType::Q8_0 => Some(k.q8_0),
        _ => None,
    }
}

/// The kernels for a K-quant weight type (against Q8_K activations), if it has them.
fn kquant_kernels(k: &Kernels, ty: GgmlType) -> Option<KQuantOps> {
    match ty {
        GgmlType::Q2K => Some(k.k_quants.q2_k),
        GgmlType::Q3K => Some(k.k_quants.q3_k),
        GgmlType::Q4K => Some(k.k_quants.q4_k),
        GgmlType::Q5K => Some(k.k_quants.q5_k),
        GgmlType::Q6K => Some(k.k_quants.q6_k),
        _ => None,
    }
}

/// The kernels for a float weight type, if it has them.
fn float_kernels(k: &Kernels, ty: GgmlType) -> Option<FloatKernels> {
    match ty {
        GgmlType::F32 => Some(k.f32),
        GgmlType::F16 => Some(k.f16),
        GgmlType::BF16 => Some(k.bf16),
        _ => None,
    }
}

/// Output rows per rayon task: enough tasks to balance the pool (≥ 8 per thread), few enough
/// that scheduling stays cheap; a multiple of 8 (the widest multi-row kernel).
/// With many tokens a task does far more work per row, so fewer, longer tasks (≥ 4 per thread)
/// balance as well and repeat less per-task setup (the kernels' per-call activation terms and
/// packing).
fn rows_per_task(n_rows: usize, n_tok: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if n_tok == 1 {
        (n_rows / (threads * 8)).clamp(16, 256) / 8 * 8
    } else {
        (n_rows / (threads * 4)).clamp(16, 1024) / 8 * 8
    }
}

fn run(k: &Kernels, w: &Matrix, x: Input, y: &mut [f32]) -> Result<()> {
    check_dims(w, x.x.len(), y.len(), x.n_tok)?;
    let n_tok = x.n_tok;
    if n_tok == 0 || w.n_rows == 0 {
        return Ok(());
    }
    let chunk = rows_per_task(w.n_rows, n_tok);
    if n_tok == 1 {
        // Decode: output rows straight into `y`.
        y.par_chunks_mut(chunk).enumerate().for_each(|(c, ys)| {
            rows_block(k, w, x, c * chunk, ys);
        });
        return Ok(());
    }
    // Many tokens: each task fills out[r, t] for its rows (row-major by weight row, so tasks own
    // disjoint slices), then y[t, r] is written from it. `out` is this thread's buffer, taken
    // (so a nested call on this thread finds none and makes its own) and put back, grown but
    // never cleared: every element is written before it is read.
    let mut out = ROWS_OUT.take(); // [n_rows, n_tok]
    if out.len() < w.n_rows * n_tok {
        out.resize(w.n_rows * n_tok, 0.0);
    }
    let out_rows = &mut out[..w.n_rows * n_tok];
    out_rows
        .par_chunks_mut(chunk * n_tok)
        .enumerate()
        .for_each(|(c, o)| rows_block(k, w, x, c * chunk, o));
    let out_rows = &*out_rows;
    y.par_chunks_mut(w.n_rows).enumerate().for_each(|(t, yt)| {
        for (r, v) in yt.iter_mut().enumerate() {
            *v = out_rows[r * n_tok + t];
        }
    });
    ROWS_OUT.set(out);
    Ok(())
}

thread_local! {
    /// Each calling thread's many-token output buffer for [`run`] (kept, so calls do not
    /// allocate and zero megabytes each time).
    static ROWS_OUT: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Rows `r0..r0 + out.len() / n_tok` of `w` against every token of `x`: `out` [rows, n_tok].
fn rows_block(k: &Kernels, w: &Matrix, x: Input, r0: usize, out: &mut [f32]) {
    let n_tok = x.n_tok;
    let n = w.n_cols;
    let n_rows = out.len() / n_tok;
    if let Some(qk) = quant_kernels(k, w.ty) {
        let arb = n / QK * Q8_0_BYTES;
        // The whole run of rows and tokens to the kernel (it shares loads across both).
        let rows = &w.data[r0 * w.row_bytes..(r0 + n_rows) * w.row_bytes];
        (qk.rows)(n, rows, w.row_bytes, &x.q8[..n_tok * arb], out);
    } else if let Some(kk) = kquant_kernels(k, w.ty) {
        kquant_rows_block(kk, w, x.q8k, r0, out);
    } else if let Some(fk) = float_kernels(k, w.ty) {
        let xt = |t: usize| &x.x[t * n..(t + 1) * n];
        let mut r = 0;
        while r + 4 <= n_rows {
            let wr: [&[u8]; 4] = std::array::from_fn(|i| w.row(r0 + r + i));
            for t in 0..n_tok {
                for (i, v) in (fk.dot_x4)(n, wr, xt(t)).iter().enumerate() {
                    out[(r + i) * n_tok + t] = *v;
                }
            }
            r += 4;
        }
        for r in r..n_rows {
            for t in 0..n_tok {
                out[r * n_tok + t] = (fk.dot)(n, w.row(r0 + r), xt(t));
            }
        }
    } else {
        // Other block types: dequantize each row once, reuse it for every token.
        let mut row = vec![0.0f32; n];
        for r in 0..n_rows {
            if dequantize_row(w.ty, w.row(r0 + r), &mut row).is_err() {
                row.fill(f32::NAN);
            }
            for t in 0..n_tok {
                let mut acc = 0.0f32;
                for (p, q) in row.iter().zip(&x.x[t * n..(t + 1) * n]) {
                    acc += p * q;
                }
                out[r * n_tok + t] = acc;
            }
        }
    }
}

/// Tokens per K-quant `gemm_4` call: each weight super-block is decoded once per this many tokens.
const KQUANT_TOKENS: usize = 64;
/// Tokens from which the drivers take a table's `gemm_8`: it packs each super-block of eight rows
/// once per call, which fewer tokens do not repay (Q4_K on AVX2, 256 × 4096, one Zen 3 core:
/// 2 and 4 tokens slower than `gemm_4`, 5 tokens 6.8 → 6.0 ns per output super-block).
const KQUANT_LANES_MIN_TOKENS: usize = 5;

/// [`KQUANT_LANES_MIN_TOKENS`] for weights of type `ty` (AVX2, 256 × 4096, one Zen 3 core, ns
/// per output super-block, `gemm_4` → `gemm_8`). Q6_K's `gemm_4` pays more per token (its 16
/// scales, the horizontal adds), so its `gemm_8` wins from 2 tokens (2: 11.4 → 10.0, 3: 9.6 →
/// 7.5, 4: 8.2 → 7.0). Q5_K's packing (the fifth bits) pays from 6 (5: 6.6 → 7.1, 6: 6.1 → 5.7,
/// 7: 6.0 → 5.3). Q2_K and Q3_K share Q6_K's packed layout and tile, and their `gemm_4` decodes
/// the same 16 scales: they take Q6_K's cut-off (not measured on their own).
fn kquant_lanes_min_tokens(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q6K | GgmlType::Q3K | GgmlType::Q2K => 2,
        GgmlType::Q5K => 6,
        _ => KQUANT_LANES_MIN_TOKENS,
    }
}

/// Rows `r0..` of the K-quant matrix `w` against the tokens of `q8k` (their Q8_K rows, back to
/// back): `out` [rows, n_tok]. One token: four rows at a time (the decode kernel); from
/// [`kquant_lanes_min_tokens`], groups of eight rows through the table's `gemm_8` where it has
/// one; the other rows four at a time against up to [`KQUANT_TOKENS`] tokens per call. Leftover
/// rows take one dot each.
fn kquant_rows_block(kk: KQuantOps, w: &Matrix, q8k: &[u8], r0: usize, out: &mut [f32]) {
    let n = w.n_cols;
    let arb = n / QK_K * Q8_K_BYTES;
    let n_tok = q8k.len() / arb.max(1);
    let n_rows = out.len() / n_tok.max(1);
    let a = |t: usize| &q8k[t * arb..(t + 1) * arb];
    let mut r = 0;
    if let Some(gemm_8) = kk.gemm_8.filter(|_| n_tok >= kquant_lanes_min_tokens(w.ty)) {
        r = n_rows / 8 * 8;
        if r > 0 {
            let rows = &w.data[r0 * w.row_bytes..(r0 + r) * w.row_bytes];
            gemm_8(n, rows, w.row_bytes, q8k, &mut out[..r * n_tok]);
        }
    }
    while r + 4 <= n_rows {
        let wr: [&[u8]; 4] = std::array::from_fn(|i| w.row(r0 + r + i));
        if n_tok == 1 {
            out[r..r + 4].copy_from_slice(&(kk.kernels.dot_x4)(n, wr, a(0)));
        } else {
            let mut tile = [0.0f32; 4 * KQUANT_TOKENS]; // [tokens, 4]
            for t0 in (0..n_tok).step_by(KQUANT_TOKENS) {
                let m = KQUANT_TOKENS.min(n_tok - t0);
                (kk.gemm_4)(n, wr, &q8k[t0 * arb..(t0 + m) * arb], &mut tile[..4 * m]);
                for (t, v) in tile[..4 * m].chunks_exact(4).enumerate() {
                    for (i, &vi) in v.iter().enumerate() {
                        out[(r + i) * n_tok + t0 + t] = vi;
                    }
                }
            }
        }
        r += 4;
    }
    for r in r..n_rows {
        for t in 0..n_tok {
            out[r * n_tok + t] = (kk.kernels.dot)(n, w.row(r0 + r), a(t));
        }
    }
}

/// The reference: dequantize each row and dot in f32, one row at a time (tests compare to it).
pub fn gemv_ref(w: &Matrix, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_dims(w, x.len(), y.len(), 1)?;
    for (r, yv) in y.iter_mut().enumerate() {
        *yv = dot_row_ref(w.ty, w.row(r), x);
    }
    Ok(())
}

fn check_dims(w: &Matrix, x_len: usize, y_len: usize, n_tok: usize) -> Result<()> {
    if x_len != w.n_cols * n_tok || y_len != w.n_rows * n_tok {
        return Err(QuantError::Shape {
            ty: w.ty,
            what: format!(
                "matrix {}×{} with {n_tok} tokens needs x of {} and y of {}, got {x_len} and {y_len}",
                w.n_rows,
                w.n_cols,
                w.n_cols * n_tok,
                w.n_rows * n_tok
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f32_matrix(rows: usize, cols: usize) -> Vec<u8> {
        (0..rows * cols)
            .flat_map(|i| (((i * 7) % 13) as f32 - 6.0).to_le_bytes())
            .collect()
    }

    #[test]
    fn gemv_and_gemm_agree_with_naive_f32() {
        let (rows, cols, n_tok) = (37, 64, 3);
        let data = f32_matrix(rows, cols);
        let w = Matrix::new(GgmlType::F32, &data, rows, cols).unwrap();
        let x: Vec<f32> = (0..cols * n_tok).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut y = vec![0.0; rows * n_tok];
        gemm(&w, &x, n_tok, &mut y).unwrap();
        for t in 0..n_tok {
            let mut yv = vec![0.0; rows];
            gemv(&w, &x[t * cols..(t + 1) * cols], &mut yv).unwrap();
            for r in 0..rows {
                let naive: f32 = (0..cols)
                    .map(|c| (((r * cols + c) * 7 % 13) as f32 - 6.0) * x[t * cols + c])
                    .sum();
                assert_eq!(yv[r], naive);
                assert_eq!(y[t * rows + r], naive);
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let data = f32_matrix(2, 4);
        assert!(Matrix::new(GgmlType::F32, &data, 2, 5).is_err());
        assert!(Matrix::new(GgmlType::Q4_0, &data, 1, 30).is_err());
        let w = Matrix::new(GgmlType::F32, &data, 2, 4).unwrap();
        assert!(gemv(&w, &[0.0; 3], &mut [0.0; 2]).is_err());
    }
}
