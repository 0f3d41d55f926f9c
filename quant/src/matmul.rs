//! Row-parallel matrix drivers on rayon: `gemv` (one token, decode) and `gemm` (many tokens).
//!
//! A [`Matrix`] is a view of `n_rows` rows of `n_cols` elements in one block type, borrowed from
//! wherever the bytes live (a GGUF mmap). Work is split across the pool by output rows only, so each
//! output is one dot product with a fixed reduction order: results do not depend on the thread count.

use rayon::prelude::*;

use crate::format::dequantize_row;
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

/// Output rows handed to one rayon task.
const ROWS_PER_TASK: usize = 16;

/// `y[r] = Σ_c W[r, c] · x[c]`: one token through a matrix. `x` [n_cols], `y` [n_rows].
pub fn gemv(w: &Matrix, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_dims(w, x.len(), y.len(), 1)?;
    y.par_chunks_mut(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(t, ys)| {
            for (i, yv) in ys.iter_mut().enumerate() {
                *yv = dot_row_ref(w.ty, w.row(t * ROWS_PER_TASK + i), x);
            }
        });
    Ok(())
}

/// `y[t, r] = Σ_c W[r, c] · x[t, c]` for `n_tok` tokens: `x` [n_tok, n_cols], `y` [n_tok, n_rows].
/// Each weight row is dequantized once and reused across all tokens.
pub fn gemm(w: &Matrix, x: &[f32], n_tok: usize, y: &mut [f32]) -> Result<()> {
    check_dims(w, x.len(), y.len(), n_tok)?;
    if n_tok == 1 {
        return gemv(w, x, y);
    }
    let n_rows = w.n_rows;
    let n_cols = w.n_cols;
    // Split output rows across tasks; each task writes a strided set of y, so collect per-task
    // results first and scatter them afterwards (keeps the dot products' order fixed).
    let parts: Vec<(usize, Vec<f32>)> = (0..n_rows)
        .into_par_iter()
        .step_by(ROWS_PER_TASK)
        .map(|r0| {
            let r1 = (r0 + ROWS_PER_TASK).min(n_rows);
            let mut out = vec![0.0f32; (r1 - r0) * n_tok];
            let mut row = vec![0.0f32; n_cols];
            for r in r0..r1 {
                if dequantize_row(w.ty, w.row(r), &mut row).is_err() {
                    row.fill(f32::NAN);
                }
                for t in 0..n_tok {
                    let xs = &x[t * n_cols..(t + 1) * n_cols];
                    let mut acc = 0.0f32;
                    for (a, b) in row.iter().zip(xs) {
                        acc += a * b;
                    }
                    out[(r - r0) * n_tok + t] = acc;
                }
            }
            (r0, out)
        })
        .collect();
    for (r0, out) in parts {
        let n = out.len() / n_tok;
        for i in 0..n {
            for t in 0..n_tok {
                y[t * n_rows + r0 + i] = out[i * n_tok + t];
            }
        }
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
