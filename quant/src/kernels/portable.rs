//! Kernels on the `wide` crate's vector types: what ARM (NEON) and x86-64 without AVX2 (SSE2)
//! run. No `unsafe`; every function gives the same bits as its scalar spec.

use wide::{f32x8, i16x16, i32x8, i8x16, u8x16, CmpEq, CmpGe, CmpLe};

use super::scalar::{block_scale, check_float, check_quant, fold_lanes};
use super::{FloatKernels, Isa, Kernels, Q4_0_BYTES, Q8_0_BYTES, QK};
use crate::format::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_f16_bits};

/// The portable table (always available).
pub(super) fn kernels() -> Kernels {
    Kernels {
        isa: Isa::Portable,
        quantize_row_q8_0,
        q4_0: quant_kernels_by_4!(
            |n, w, a| quant_x::<Q4, 1>(n, [w], a)[0],
            quant_x::<Q4, 4>,
            |n, w, a| a.map(|a| quant_x::<Q4, 4>(n, w, a)),
            (QK, Q4_0_BYTES, Q8_0_BYTES)
        ),
        q8_0: quant_kernels_by_4!(
            |n, w, a| quant_x::<Q8, 1>(n, [w], a)[0],
            quant_x::<Q8, 4>,
            |n, w, a| a.map(|a| quant_x::<Q8, 4>(n, w, a)),
            (QK, Q8_0_BYTES, Q8_0_BYTES)
        ),
        f32: FloatKernels {
            dot: |n, w, x| float_x::<4, 1>(n, [w], x, f32_at)[0],
            dot_x4: |n, w, x| float_x::<4, 4>(n, w, x, f32_at),
            axpy: |n, p, w, out| axpy::<4>(n, p, w, out, f32_at),
        },
        f16: FloatKernels {
            dot: |n, w, x| float_x::<2, 1>(n, [w], x, f16_at)[0],
            dot_x4: |n, w, x| float_x::<2, 4>(n, w, x, f16_at),
            axpy: |n, p, w, out| axpy::<2>(n, p, w, out, f16_at),
        },
        bf16: FloatKernels {
            dot: |n, w, x| float_x::<2, 1>(n, [w], x, bf16_at)[0],
            dot_x4: |n, w, x| float_x::<2, 4>(n, w, x, bf16_at),
            axpy: |n, p, w, out| axpy::<2>(n, p, w, out, bf16_at),
        },
        k_quants: super::kquant_portable::kernels(),
    }
}

fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) {
    assert_eq!(x.len() % QK, 0, "quantize_row_q8_0: not whole blocks");
    assert_eq!(
        out.len(),
        x.len() / QK * Q8_0_BYTES,
        "quantize_row_q8_0: output size"
    );
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        // The scale: the largest magnitude, NaNs skipped (as the scalar fold does).
        let amax = xb
            .iter()
            .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        ob[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        for (xs, os) in xb.chunks_exact(8).zip(ob[2..].chunks_exact_mut(8)) {
            let mut v = [0.0f32; 8];
            v.copy_from_slice(xs);
            let p = f32x8::new(v) * f32x8::splat(id);
            // `as i8` after rounding: NaN → 0, clamp, then round half away from zero.
            let p = p & p.cmp_eq(p);
            let p = p.max(f32x8::splat(-128.0)).min(f32x8::splat(127.0));
            let t = p.trunc_int();
            let frac = p - f32x8::from_i32x8(t);
            let up: i32x8 = bytemuck::cast(frac.cmp_ge(f32x8::splat(0.5)));
            let down: i32x8 = bytemuck::cast(frac.cmp_le(f32x8::splat(-0.5)));
            // Mask lanes are -1 where true.
            let r = (t - up + down).min(i32x8::splat(127));
            for (o, q) in os.iter_mut().zip(r.to_array()) {
                *o = q as i8 as u8;
            }
        }
    }
}

/// A quantized weight block type as 16-bit lanes.
trait QuantBlock {
    const BYTES: usize;
    /// The block's 32 quants as signed values, elements 0..16 and 16..32.
    fn quants(block: &[u8]) -> (i16x16, i16x16);
}

struct Q4;
struct Q8;

impl QuantBlock for Q4 {
    const BYTES: usize = Q4_0_BYTES;
    fn quants(block: &[u8]) -> (i16x16, i16x16) {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&block[2..18]);
        let v = i16x16::from(u8x16::new(qs));
        let eight = i16x16::splat(8);
        ((v & i16x16::splat(0x0f)) - eight, (v >> 4) - eight)
    }
}

impl QuantBlock for Q8 {
    const BYTES: usize = Q8_0_BYTES;
    fn quants(block: &[u8]) -> (i16x16, i16x16) {
        let half = |r: &[u8]| {
            let mut q = [0i8; 16];
            for (d, &s) in q.iter_mut().zip(r) {
                *d = s as i8;
            }
            i16x16::from(i8x16::new(q))
        };
        (half(&block[2..18]), half(&block[18..34]))
    }
}

/// `R` weight rows against one Q8_0 activation row.
fn quant_x<B: QuantBlock, const R: usize>(n: usize, w: [&[u8]; R], a: &[u8]) -> [f32; R] {
    for wr in w {
        check_quant(n, wr.len(), B::BYTES, a.len());
    }
    let mut sum = [0.0f32; R];
    for (b, ab) in a.chunks_exact(Q8_0_BYTES).enumerate() {
        let (alo, ahi) = Q8::quants(ab);
        let da = block_scale(ab);
        for (s, wr) in sum.iter_mut().zip(w) {
            let wb = &wr[b * B::BYTES..(b + 1) * B::BYTES];
            let (wlo, whi) = B::quants(wb);
            let isum = (wlo.dot(alo) + whi.dot(ahi)).reduce_add();
            *s += (block_scale(wb) * da) * isum as f32;
        }
    }
    sum
}

fn f32_at(w: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
}

fn f16_at(w: &[u8], i: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]))
}

fn bf16_at(w: &[u8], i: usize) -> f32 {
    bf16_bits_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]))
}

/// `out += p · w`, eight lanes at a time (`E` bytes an element, read by `get`).
fn axpy<const E: usize>(n: usize, p: f32, w: &[u8], out: &mut [f32], get: fn(&[u8], usize) -> f32) {
    check_float(n, w.len(), E, out.len());
    let pv = f32x8::splat(p);
    let mut chunks = out.chunks_exact_mut(8);
    for (c, o) in (&mut chunks).enumerate() {
        let wv = f32x8::new(std::array::from_fn(|l| get(w, 8 * c + l)));
        let mut ov = [0.0f32; 8];
        ov.copy_from_slice(o);
        o.copy_from_slice(&(f32x8::new(ov) + pv * wv).to_array());
    }
    let done = n / 8 * 8;
    for (i, o) in chunks.into_remainder().iter_mut().enumerate() {
        *o += p * get(w, done + i);
    }
}

/// `R` float weight rows (`E` bytes an element, read by `get`) against `x`: two 8-lane sets.
fn float_x<const E: usize, const R: usize>(
    n: usize,
    w: [&[u8]; R],
    x: &[f32],
    get: fn(&[u8], usize) -> f32,
) -> [f32; R] {
    for wr in w {
        check_float(n, wr.len(), E, x.len());
    }
    let mut acc = [[f32x8::ZERO; 2]; R];
    let chunks = n / 8;
    for c in 0..chunks {
        let mut xv = [0.0f32; 8];
        xv.copy_from_slice(&x[8 * c..8 * c + 8]);
        let xv = f32x8::new(xv);
        for (acc_r, wr) in acc.iter_mut().zip(w) {
            let wv = f32x8::new(std::array::from_fn(|l| get(wr, 8 * c + l)));
            acc_r[c % 2] += wv * xv;
        }
    }
    std::array::from_fn(|r| {
        let mut lanes = acc[r].map(|v| v.to_array());
        for (j, &xv) in x.iter().enumerate().skip(chunks * 8) {
            lanes[(j / 8) % 2][j % 8] += get(w[r], j) * xv;
        }
        fold_lanes(lanes)
    })
}
