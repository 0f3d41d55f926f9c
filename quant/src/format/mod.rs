//! Block formats: one module per ggml block type, each with a `#[repr(C)]` block struct (size
//! asserted against [`GgmlType::type_size`]) and scalar quantize / dequantize. The scalar code is
//! the spec: it is bit-identical to the `gguf` Python package, and the K-quant quantizers to
//! llama.cpp's `ggml-quants.c` (see `quant/tests/vectors.rs`).
//!
//! The byte-level entry points [`dequantize_row`] and [`quantize_row`] take GGUF tensor data as
//! `&[u8]`, aligned or not.

use bytemuck::Pod;

use crate::{GgmlType, QuantError, Result};

pub mod f16;
pub mod k_search;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_k;

pub use self::f16::{
    bf16_bits_to_f32, f16_bits_to_f32, f16_to_f32, f32_to_bf16_bits, f32_to_f16, f32_to_f16_bits,
};
pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_k::BlockQ8K;

// Blocks are read in the host's byte order and GGUF data is little-endian.
#[cfg(target_endian = "big")]
compile_error!("smoe-quant reads GGUF blocks in place and supports little-endian targets only");

/// A block of `N` elements of one ggml type, stored as `TYPE.type_size()` bytes.
pub trait Block<const N: usize>: Pod {
    /// The ggml type this block stores.
    const TYPE: GgmlType;

    /// Writes the block's `N` values to `out`.
    fn dequantize(&self, out: &mut [f32; N]);
}

/// A block type with a reference quantizer.
pub trait QuantizeBlock<const N: usize>: Block<N> {
    /// Quantizes `N` values into one block.
    fn quantize(x: &[f32; N]) -> Self;
}

/// A block type with an importance-weighted quantizer (llama.cpp's `quantize_q*` given an
/// importance matrix).
pub trait QuantizeWeighted<const N: usize>: QuantizeBlock<N> {
    /// Quantizes `N` values with per-element importances `qw`. `row_sigma2` is the mean of `x²`
    /// over the whole row the block belongs to (the 32-element types use it; the K-quants use
    /// their own super-block's).
    fn quantize_weighted(x: &[f32; N], qw: &[f32; N], row_sigma2: f32) -> Self;
}

/// Dequantizes one row of `dst.len()` elements stored as `ty` in `src`.
///
/// `src.len()` must be exactly `ty.row_bytes(dst.len())`; `src` need not be aligned.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    use GgmlType as T;
    check_len(ty, src.len(), dst.len())?;
    match ty {
        T::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        T::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        T::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        T::Q4_0 => dequantize_blocks::<BlockQ4_0, 32>(src, dst)?,
        T::Q4_1 => dequantize_blocks::<BlockQ4_1, 32>(src, dst)?,
        T::Q5_0 => dequantize_blocks::<BlockQ5_0, 32>(src, dst)?,
        T::Q5_1 => dequantize_blocks::<BlockQ5_1, 32>(src, dst)?,
        T::Q8_0 => dequantize_blocks::<BlockQ8_0, 32>(src, dst)?,
        T::Q2K => dequantize_blocks::<BlockQ2K, 256>(src, dst)?,
        T::Q3K => dequantize_blocks::<BlockQ3K, 256>(src, dst)?,
        T::Q4K => dequantize_blocks::<BlockQ4K, 256>(src, dst)?,
        T::Q5K => dequantize_blocks::<BlockQ5K, 256>(src, dst)?,
        T::Q6K => dequantize_blocks::<BlockQ6K, 256>(src, dst)?,
        T::Q8K => dequantize_blocks::<BlockQ8K, 256>(src, dst)?,
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

/// Quantizes one row `src` into `dst` as `ty` (the reference quantizers).
///
/// `dst.len()` must be exactly `ty.row_bytes(src.len())`; `dst` need not be aligned.
/// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (bit-identical to the `gguf` package),
/// Q2_K..Q6_K (llama.cpp's `quantize_row_q*_K_ref`) and Q8_K (`quantize_row_q8_K_ref`).
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    use GgmlType as T;
    check_len(ty, dst.len(), src.len())?;
    match ty {
        T::F32 => {
            for (b, x) in dst.chunks_exact_mut(4).zip(src) {
                b.copy_from_slice(&x.to_le_bytes());
            }
        }
        T::F16 => {
            for (b, &x) in dst.chunks_exact_mut(2).zip(src) {
                b.copy_from_slice(&f32_to_f16_bits(x).to_le_bytes());
            }
        }
        T::BF16 => {
            for (b, &x) in dst.chunks_exact_mut(2).zip(src) {
                b.copy_from_slice(&f32_to_bf16_bits(x).to_le_bytes());
            }
        }
        T::Q4_0 => quantize_blocks::<BlockQ4_0, 32>(src, dst)?,
        T::Q4_1 => quantize_blocks::<BlockQ4_1, 32>(src, dst)?,
        T::Q5_0 => quantize_blocks::<BlockQ5_0, 32>(src, dst)?,
        T::Q5_1 => quantize_blocks::<BlockQ5_1, 32>(src, dst)?,
        T::Q8_0 => quantize_blocks::<BlockQ8_0, 32>(src, dst)?,
        T::Q2K => quantize_blocks::<BlockQ2K, 256>(src, dst)?,
        T::Q3K => quantize_blocks::<BlockQ3K, 256>(src, dst)?,
        T::Q4K => quantize_blocks::<BlockQ4K, 256>(src, dst)?,
        T::Q5K => quantize_blocks::<BlockQ5K, 256>(src, dst)?,
        T::Q6K => quantize_blocks::<BlockQ6K, 256>(src, dst)?,
        T::Q8K => quantize_blocks::<BlockQ8K, 256>(src, dst)?,
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

/// Quantizes one row `src` into `dst` as `ty`, weighting each column by its importance
/// `qw[c]` (an importance matrix's mean squared activation of input channel `c`), as llama.cpp's
/// `quantize_q*(src, dst, 1, n, qw)` does. `qw.len()` must equal `src.len()`.
///
/// Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K..Q6_K have weighted quantizers; every other type ignores
/// `qw` and quantizes as [`quantize_row`] (llama.cpp's Q8_0 ignores it too).
pub fn quantize_row_weighted(ty: GgmlType, src: &[f32], dst: &mut [u8], qw: &[f32]) -> Result<()> {
    use GgmlType as T;
    check_len(ty, dst.len(), src.len())?;
    if qw.len() != src.len() {
        return Err(QuantError::Shape {
            ty,
            what: format!(
                "importance weights: {} for a row of {} elements",
                qw.len(),
                src.len()
            ),
        });
    }
    // The 32-element types weigh by the row's mean square, the K-quants by their super-block's.
    let row_sigma2 = || k_search::sum_squares(src) / src.len() as f32;
    match ty {
        T::Q4_0 => quantize_blocks_weighted::<BlockQ4_0, 32>(src, dst, qw, row_sigma2())?,
        T::Q4_1 => quantize_blocks_weighted::<BlockQ4_1, 32>(src, dst, qw, row_sigma2())?,
        T::Q5_0 => quantize_blocks_weighted::<BlockQ5_0, 32>(src, dst, qw, row_sigma2())?,
        T::Q5_1 => quantize_blocks_weighted::<BlockQ5_1, 32>(src, dst, qw, row_sigma2())?,
        T::Q2K => quantize_blocks_weighted::<BlockQ2K, 256>(src, dst, qw, 0.0)?,
        T::Q3K => quantize_blocks_weighted::<BlockQ3K, 256>(src, dst, qw, 0.0)?,
        T::Q4K => quantize_blocks_weighted::<BlockQ4K, 256>(src, dst, qw, 0.0)?,
        T::Q5K => quantize_blocks_weighted::<BlockQ5K, 256>(src, dst, qw, 0.0)?,
        T::Q6K => quantize_blocks_weighted::<BlockQ6K, 256>(src, dst, qw, 0.0)?,
        _ => return quantize_row(ty, src, dst),
    }
    Ok(())
}

/// Checks that `n_bytes` holds exactly `n_elems` elements of `ty`.
fn check_len(ty: GgmlType, n_bytes: usize, n_elems: usize) -> Result<()> {
    let want = ty
        .row_bytes(n_elems as u64)
        .ok_or_else(|| QuantError::Shape {
            ty,
            what: format!(
                "row of {n_elems} elements is not a whole number of {}-element blocks",
                ty.block_size()
            ),
        })?;
    if want != n_bytes as u64 {
        return Err(QuantError::Shape {
            ty,
            what: format!("row of {n_elems} elements needs {want} bytes, got {n_bytes}"),
        });
    }
    Ok(())
}

/// Internal: a chunk that `chunks_exact_mut(N)` produced did not have `N` elements.
fn chunk_error(ty: GgmlType) -> QuantError {
    QuantError::Shape {
        ty,
        what: "internal: block chunk has the wrong length".into(),
    }
}

/// Dequantizes whole blocks; `src` and `dst` lengths were checked by the caller.
fn dequantize_blocks<B: Block<N>, const N: usize>(src: &[u8], dst: &mut [f32]) -> Result<()> {
    let outs = dst.chunks_exact_mut(N);
    match bytemuck::try_cast_slice::<u8, B>(src) {
        Ok(blocks) => {
            for (b, out) in blocks.iter().zip(outs) {
                let out: &mut [f32; N] = out.try_into().map_err(|_| chunk_error(B::TYPE))?;
                b.dequantize(out);
            }
        }
        // Unaligned (or otherwise not castable) input: copy each block out first.
        Err(_) => {
            for (bytes, out) in src.chunks_exact(size_of::<B>()).zip(outs) {
                let b: B = bytemuck::pod_read_unaligned(bytes);
                let out: &mut [f32; N] = out.try_into().map_err(|_| chunk_error(B::TYPE))?;
                b.dequantize(out);
            }
        }
    }
    Ok(())
}

/// Quantizes whole blocks; `src` and `dst` lengths were checked by the caller.
fn quantize_blocks<B: QuantizeBlock<N>, const N: usize>(src: &[f32], dst: &mut [u8]) -> Result<()> {
    for (x, bytes) in src
        .chunks_exact(N)
        .zip(dst.chunks_exact_mut(size_of::<B>()))
    {
        let x: &[f32; N] = x.try_into().map_err(|_| chunk_error(B::TYPE))?;
        bytes.copy_from_slice(bytemuck::bytes_of(&B::quantize(x)));
    }
    Ok(())
}

/// Quantizes whole blocks with importance weights; lengths were checked by the caller.
fn quantize_blocks_weighted<B: QuantizeWeighted<N>, const N: usize>(
    src: &[f32],
    dst: &mut [u8],
    qw: &[f32],
    row_sigma2: f32,
) -> Result<()> {
    for ((x, w), bytes) in src
        .chunks_exact(N)
        .zip(qw.chunks_exact(N))
        .zip(dst.chunks_exact_mut(size_of::<B>()))
    {
        let x: &[f32; N] = x.try_into().map_err(|_| chunk_error(B::TYPE))?;
        let w: &[f32; N] = w.try_into().map_err(|_| chunk_error(B::TYPE))?;
        bytes.copy_from_slice(bytemuck::bytes_of(&B::quantize_weighted(x, w, row_sigma2)));
    }
    Ok(())
}

/// Index of the first element of largest magnitude, as numpy's `abs(x).argmax()` picks it
/// (the first NaN wins, as numpy's argmax propagates NaN).
pub(crate) fn argmax_abs(x: &[f32]) -> usize {
    let mut best = 0;
    let mut best_abs = match x.first() {
        Some(v) => v.abs(),
        None => return 0,
    };
    if best_abs.is_nan() {
        return 0;
    }
    for (i, v) in x.iter().enumerate().skip(1) {
        let a = v.abs();
        if a.is_nan() {
            return i;
        }
        if a > best_abs {
            best_abs = a;
            best = i;
        }
    }
    best
}

/// `1/d`, or 0 when `d == 0` (the reference quantizers' `id`).
#[inline]
pub(crate) fn inv_or_zero(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// (min, max) of a block, as numpy's `min` / `max` (the block is never empty).
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let first = x.first().copied().unwrap_or(0.0);
    x.iter().fold((first, first), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// Bit 4 of each of 32 quants, element `j` at bit `j` (the `qh` of Q5_0 / Q5_1).
pub(crate) fn pack_high_bits(q: &[u8; 32]) -> u32 {
    q.iter()
        .enumerate()
        .fold(0u32, |h, (j, &v)| h | (u32::from((v >> 4) & 1) << j))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        let mut out = [0f32; 32];
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut out),
            Err(QuantError::Shape { .. })
        ));
        assert!(dequantize_row(GgmlType::Q4_0, &[0u8; 18], &mut out).is_ok());
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0u8; 18], &mut out[..31]),
            Err(QuantError::Shape { .. })
        ));
        assert!(matches!(
            dequantize_row(GgmlType::Iq2Xxs, &[], &mut []),
            Err(QuantError::Unsupported(GgmlType::Iq2Xxs))
        ));
        assert!(matches!(
            quantize_row(GgmlType::Iq4Xs, &[0.0; 256], &mut [0u8; 136]),
            Err(QuantError::Unsupported(GgmlType::Iq4Xs))
        ));
        assert!(matches!(
            quantize_row_weighted(GgmlType::Q4K, &[0.0; 256], &mut [0u8; 144], &[1.0; 255]),
            Err(QuantError::Shape { .. })
        ));
    }

    #[test]
    fn unaligned_input_gives_the_same_values() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.37).collect();
        let mut q = [0u8; 68 + 1];
        quantize_row(GgmlType::Q8_0, &x, &mut q[1..]).unwrap();
        let mut shifted = [0u8; 68 + 1];
        shifted[..68].copy_from_slice(&q[1..]);
        let (mut a, mut b) = ([0f32; 64], [0f32; 64]);
        dequantize_row(GgmlType::Q8_0, &q[1..], &mut a).unwrap();
        dequantize_row(GgmlType::Q8_0, &shifted[..68], &mut b).unwrap();
        assert_eq!(a, b);
    }
}
