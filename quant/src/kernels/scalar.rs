//! The scalar kernels: the spec every SIMD kernel is tested against, written plainly.
//!
//! Reduction orders (see the module docs of [`super`]):
//! - quantized dots: per block an exact `i32` sum `isum`, then `sum = sum + (d_w * d_a) * isum as f32`
//!   over the blocks in order, starting from `0.0`, with separate multiplies and adds (no FMA);
//! - float dots: 16 lanes, element `i` into set `(i / 8) % 2`, lane `i % 8`, `acc = acc + w * x`;
//!   then the sets are added lane by lane and the 8 lanes folded as `l + (l + 4)`, `l + (l + 2)`,
//!   `l0 + l1`.

use crate::format::{bf16_bits_to_f32, f16_bits_to_f32, BlockQ8_0, QuantizeBlock};

use super::{FloatKernels, Isa, Kernels, Q4_0_BYTES, Q8_0_BYTES, QK};

/// The scalar table.
pub(super) fn kernels() -> Kernels {
    Kernels {
        isa: Isa::Scalar,
        quantize_row_q8_0,
        q4_0: rowwise_kernels!(vec_dot_q4_0_q8_0, (QK, Q4_0_BYTES, Q8_0_BYTES)),
        q8_0: rowwise_kernels!(vec_dot_q8_0_q8_0, (QK, Q8_0_BYTES, Q8_0_BYTES)),
        f32: FloatKernels {
            dot: vec_dot_f32_f32,
            dot_x4: |n, w, x| w.map(|w| vec_dot_f32_f32(n, w, x)),
            axpy: axpy_f32,
        },
        f16: FloatKernels {
            dot: vec_dot_f16_f32,
            dot_x4: |n, w, x| w.map(|w| vec_dot_f16_f32(n, w, x)),
            axpy: axpy_f16,
        },
        bf16: FloatKernels {
            dot: vec_dot_bf16_f32,
            dot_x4: |n, w, x| w.map(|w| vec_dot_bf16_f32(n, w, x)),
            axpy: axpy_bf16,
        },
        k_quants: super::kquant_scalar::kernels(),
    }
}

/// Quantizes `x` (a whole number of 32-element blocks) into Q8_0 blocks: the block format's
/// reference quantizer, one block at a time.
pub fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) {
    assert_eq!(x.len() % QK, 0, "quantize_row_q8_0: not whole blocks");
    assert_eq!(
        out.len(),
        x.len() / QK * Q8_0_BYTES,
        "quantize_row_q8_0: output size"
    );
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        let mut block = [0.0f32; QK];
        block.copy_from_slice(xb);
        ob.copy_from_slice(bytemuck::bytes_of(&BlockQ8_0::quantize(&block)));
    }
}

/// The f16 scale stored in the first two bytes of a block, as f32.
pub(super) fn block_scale(block: &[u8]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([block[0], block[1]]))
}

/// `Σ w·a` over `n` elements of a Q4_0 row and a Q8_0 row.
pub fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_quant(n, w.len(), Q4_0_BYTES, a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.chunks_exact(Q4_0_BYTES).zip(a.chunks_exact(Q8_0_BYTES)) {
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            let lo = i32::from(wb[2 + j] & 0x0f) - 8;
            let hi = i32::from(wb[2 + j] >> 4) - 8;
            isum += lo * i32::from(ab[2 + j] as i8) + hi * i32::from(ab[2 + j + QK / 2] as i8);
        }
        let d = block_scale(wb) * block_scale(ab);
        sum += d * isum as f32;
    }
    sum
}

/// `Σ w·a` over `n` elements of two Q8_0 rows.
pub fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_quant(n, w.len(), Q8_0_BYTES, a.len());
    let mut sum = 0.0f32;
    for (wb, ab) in w.chunks_exact(Q8_0_BYTES).zip(a.chunks_exact(Q8_0_BYTES)) {
        let isum: i32 = wb[2..]
            .iter()
            .zip(&ab[2..])
            .map(|(&x, &y)| i32::from(x as i8) * i32::from(y as i8))
            .sum();
        let d = block_scale(wb) * block_scale(ab);
        sum += d * isum as f32;
    }
    sum
}

/// Panics unless `w_len` and `a_len` hold the blocks of `n` elements (a caller bug).
pub(super) fn check_quant(n: usize, w_len: usize, w_block: usize, a_len: usize) {
    assert_eq!(n % QK, 0, "quantized dot: {n} is not whole blocks");
    assert_eq!(w_len, n / QK * w_block, "quantized dot: weight row size");
    assert_eq!(
        a_len,
        n / QK * Q8_0_BYTES,
        "quantized dot: activation row size"
    );
}

/// Panics unless `w_len` bytes hold `n` elements of `elem` bytes and `x_len == n` (a caller bug).
pub(super) fn check_float(n: usize, w_len: usize, elem: usize, x_len: usize) {
    assert_eq!(w_len, n * elem, "float dot: weight row size");
    assert_eq!(x_len, n, "float dot: activation length");
}

/// The float dots' fixed reduction over 16 lanes (2 sets of 8), element by element.
fn dot_lanes(n: usize, w: impl Fn(usize) -> f32, x: &[f32]) -> f32 {
    let mut acc = [[0.0f32; 8]; 2];
    for (i, &xv) in x.iter().enumerate().take(n) {
        acc[(i / 8) % 2][i % 8] += w(i) * xv;
    }
    fold_lanes(acc)
}

/// Folds 2 × 8 lane accumulators in the fixed order of the spec.
pub(super) fn fold_lanes(acc: [[f32; 8]; 2]) -> f32 {
    let v: [f32; 8] = std::array::from_fn(|l| acc[0][l] + acc[1][l]);
    let h: [f32; 4] = std::array::from_fn(|l| v[l] + v[l + 4]);
    let g: [f32; 2] = std::array::from_fn(|l| h[l] + h[l + 2]);
    g[0] + g[1]
}

/// `Σ w·x` for an F32 weight row (little-endian bytes, any alignment).
pub fn vec_dot_f32_f32(n: usize, w: &[u8], x: &[f32]) -> f32 {
    check_float(n, w.len(), 4, x.len());
    let wv = |i: usize| f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]);
    dot_lanes(n, wv, x)
}

/// `Σ w·x` for an F16 weight row.
pub fn vec_dot_f16_f32(n: usize, w: &[u8], x: &[f32]) -> f32 {
    check_float(n, w.len(), 2, x.len());
    let wv = |i: usize| f16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    dot_lanes(n, wv, x)
}

/// `out[i] = out[i] + p * w[i]` over `n` elements read by `get` (panics on a size mismatch).
fn axpy_with(n: usize, p: f32, w: &[u8], elem: usize, get: impl Fn(usize) -> f32, out: &mut [f32]) {
    check_float(n, w.len(), elem, out.len());
    for (i, o) in out.iter_mut().enumerate() {
        *o += p * get(i);
    }
}

/// `out += p · w` for an f32 row.
pub fn axpy_f32(n: usize, p: f32, w: &[u8], out: &mut [f32]) {
    let get = |i: usize| f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]);
    axpy_with(n, p, w, 4, get, out);
}

/// `out += p · w` for an F16 row.
pub fn axpy_f16(n: usize, p: f32, w: &[u8], out: &mut [f32]) {
    let get = |i: usize| f16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    axpy_with(n, p, w, 2, get, out);
}

/// `out += p · w` for a BF16 row.
pub fn axpy_bf16(n: usize, p: f32, w: &[u8], out: &mut [f32]) {
    let get = |i: usize| bf16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    axpy_with(n, p, w, 2, get, out);
}

/// `Σ w·x` for a BF16 weight row.
pub fn vec_dot_bf16_f32(n: usize, w: &[u8], x: &[f32]) -> f32 {
    check_float(n, w.len(), 2, x.len());
    let wv = |i: usize| bf16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    dot_lanes(n, wv, x)
}
