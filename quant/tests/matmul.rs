//! The drivers against the dequantize-and-dot reference, across instruction sets, thread counts,
//! tilings and gathered token subsets.

#![allow(clippy::unwrap_used)]

use smoe_quant::format::{dequantize_row, quantize_row};
use smoe_quant::kernels::{self, Isa};
use smoe_quant::matmul::{gemm, gemv, gemv_ref, matmul, matmul_with, Activations, Matrix};
use smoe_quant::GgmlType;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn quantized(ty: GgmlType, x: &[f32], n_cols: usize) -> Vec<u8> {
    let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
    let mut out = vec![0u8; x.len() / n_cols * rb];
    for (xr, o) in x.chunks(n_cols).zip(out.chunks_mut(rb)) {
        quantize_row(ty, xr, o).unwrap();
    }
    out
}

fn dequantized(w: &Matrix) -> Vec<f32> {
    let mut out = vec![0.0; w.n_rows * w.n_cols];
    for (r, o) in out.chunks_mut(w.n_cols).enumerate() {
        w.dequantize_row_into(r, o).unwrap();
    }
    out
}

const TYPES: [GgmlType; 5] = [
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn matmul_matches_the_reference_everywhere() {
    for (n_rows, n_cols) in [(1, 32), (5, 96), (37, 64), (130, 256), (67, 4128)] {
        for ty in TYPES {
            let wf = values(n_rows * n_cols, n_rows as u64 * 31 + n_cols as u64);
            let wb = quantized(ty, &wf, n_cols);
            let w = Matrix::new(ty, &wb, n_rows, n_cols).unwrap();
            let wd = dequantized(&w); // [n_rows, n_cols]
            for n_tok in [1usize, 2, 5, 9] {
                let x = values(n_tok * n_cols, 7 + n_tok as u64);
                let acts = Activations::from_rows(&x, n_cols).unwrap();
                let mut y = vec![0.0; n_tok * n_rows];
                matmul(&w, &acts, &mut y).unwrap();

                // Against f64 dot products of the dequantized weights with the activations the
                // kernels see: Q8_0-dequantized for quantized weights, f32 for float weights.
                let quant = matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0);
                for t in 0..n_tok {
                    let xt = &x[t * n_cols..(t + 1) * n_cols];
                    let mut xq = xt.to_vec();
                    if quant {
                        dequantize_row(GgmlType::Q8_0, acts.q8_row(t).unwrap(), &mut xq).unwrap();
                    }
                    let mut yr = vec![0.0; n_rows];
                    gemv_ref(&w, xt, &mut yr).unwrap();
                    for r in 0..n_rows {
                        let wr = &wd[r * n_cols..(r + 1) * n_cols];
                        let exact: f64 = wr
                            .iter()
                            .zip(&xq)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum();
                        let mag: f64 = wr
                            .iter()
                            .zip(&xq)
                            .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                            .sum();
                        let got = f64::from(y[t * n_rows + r]);
                        assert!(
                            (got - exact).abs() <= 1e-6 * mag + 1e-30,
                            "{ty} {n_rows}x{n_cols} t{t} r{r}: {got} vs {exact}"
                        );
                        // Against the f32 reference with unquantized activations: the Q8_0
                        // rounding error is at most |w| · d_a / 2 per element.
                        let tol = if quant {
                            wr.iter()
                                .zip(xt)
                                .map(|(&a, &b)| {
                                    f64::from(a.abs()) * (f64::from(b.abs()) / 127.0 + 1e-6)
                                })
                                .sum::<f64>()
                        } else {
                            2e-6 * mag
                        };
                        let yref = f64::from(yr[r]);
                        assert!(
                            (got - yref).abs() <= tol + 1e-30,
                            "{ty} vs f32 ref: {got} vs {yref} (tol {tol})"
                        );
                    }
                }

                // Every instruction set, thread count and the legacy entry points: same bits.
                for isa in kernels::available() {
                    let mut yi = vec![0.0; y.len()];
                    matmul_with(kernels::table(isa).unwrap(), &w, &acts, &mut yi).unwrap();
                    assert_eq!(bits(&yi), bits(&y), "{ty} {isa} differs");
                }
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut yt = vec![0.0; y.len()];
                    pool.install(|| matmul(&w, &acts, &mut yt)).unwrap();
                    assert_eq!(bits(&yt), bits(&y), "{ty}: {threads} threads differ");
                }
                let mut yl = vec![0.0; y.len()];
                gemm(&w, &x, n_tok, &mut yl).unwrap();
                assert_eq!(bits(&yl), bits(&y), "{ty}: legacy gemm differs");
                for t in 0..n_tok {
                    let mut yv = vec![0.0; n_rows];
                    gemv(&w, &x[t * n_cols..(t + 1) * n_cols], &mut yv).unwrap();
                    assert_eq!(
                        bits(&yv),
                        bits(&y[t * n_rows..(t + 1) * n_rows]),
                        "{ty}: gemv vs tiled gemm"
                    );
                }
            }
        }
    }
}

#[test]
fn gathered_tokens_give_the_same_rows() {
    let (n_rows, n_cols, n_tok) = (45, 128, 11);
    let wf = values(n_rows * n_cols, 3);
    let wb = quantized(GgmlType::Q4_0, &wf, n_cols);
    let w = Matrix::new(GgmlType::Q4_0, &wb, n_rows, n_cols).unwrap();
    let x = values(n_tok * n_cols, 4);
    let acts = Activations::from_rows(&x, n_cols).unwrap();
    let mut y = vec![0.0; n_tok * n_rows];
    matmul(&w, &acts, &mut y).unwrap();
    let pick = [10usize, 0, 3, 3, 7];
    let mut sub = Activations::new();
    acts.gather_into(&pick, &mut sub).unwrap();
    assert_eq!(sub.n_tok(), pick.len());
    let mut ys = vec![0.0; pick.len() * n_rows];
    matmul(&w, &sub, &mut ys).unwrap();
    for (i, &t) in pick.iter().enumerate() {
        assert_eq!(
            bits(&ys[i * n_rows..(i + 1) * n_rows]),
            bits(&y[t * n_rows..(t + 1) * n_rows])
        );
    }
    assert!(acts.gather_into(&[11], &mut sub).is_err());
}

#[test]
fn odd_widths_and_other_types() {
    // Float weights with a width that is not whole Q8_0 blocks: no quantized rows needed.
    let (n_rows, n_cols) = (9, 45);
    let wf = values(n_rows * n_cols, 5);
    let wb = quantized(GgmlType::F16, &wf, n_cols);
    let w = Matrix::new(GgmlType::F16, &wb, n_rows, n_cols).unwrap();
    let x = values(2 * n_cols, 6);
    let acts = Activations::from_rows(&x, n_cols).unwrap();
    assert!(acts.q8_row(0).is_none());
    let mut y = vec![0.0; 2 * n_rows];
    matmul(&w, &acts, &mut y).unwrap();
    let mut yr = vec![0.0; n_rows];
    gemv_ref(&w, &x[n_cols..], &mut yr).unwrap();
    for (a, b) in y[n_rows..].iter().zip(&yr) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
    }
    // Q8_K weights (no kernel of their own) keep the dequantize path: close to the reference.
    let n_cols = 256;
    let wf = values(3 * n_cols, 8);
    let mut wb = vec![0u8; 3 * 292];
    quantize_row(GgmlType::Q8K, &wf, &mut wb).unwrap();
    let w = Matrix::new(GgmlType::Q8K, &wb, 3, n_cols).unwrap();
    let x = values(n_cols, 9);
    let (mut y, mut yr) = (vec![0.0; 3], vec![0.0; 3]);
    gemv(&w, &x, &mut y).unwrap();
    gemv_ref(&w, &x, &mut yr).unwrap();
    for (a, b) in y.iter().zip(&yr) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
    }
    // Shapes are checked.
    let acts = Activations::from_rows(&x[..128], 128).unwrap();
    assert!(matmul(&w, &acts, &mut y).is_err());
    assert!(Activations::from_rows(&x[..100], 32).is_err());
    assert_eq!(kernels::table(Isa::Scalar).unwrap().isa, Isa::Scalar);
}

#[test]
fn bandwidth_probe_runs() {
    let gbps = smoe_quant::bandwidth::measure_read_gbps(1 << 20, 1).unwrap();
    assert!(gbps > 0.0 && gbps.is_finite());
}
