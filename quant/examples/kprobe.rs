#![allow(clippy::unwrap_used)]
use smoe_quant::kernels;
use smoe_quant::matmul::Activations;
use smoe_quant::GgmlType;
fn main() {
    let k = kernels::kernels();
    let n_cols = 4096;
    let env = |k: &str, d: usize| std::env::var(k).map(|v| v.parse().unwrap()).unwrap_or(d);
    let n_rows = env("KP_ROWS", 256);
    let n_tok = env("KP_TOK", 1);
    let mode = std::env::var("KP_MODE").unwrap_or("rows".into());
    let ty = GgmlType::Q4_0;
    let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
    let wb: Vec<u8> = (0..n_rows * rb)
        .map(|i| {
            if i % 18 < 2 {
                0x10
            } else {
                (i * 7919 % 251) as u8
            }
        })
        .collect();
    let x: Vec<f32> = (0..n_cols * n_tok).map(|i| (i as f32).sin()).collect();
    let acts = Activations::from_rows(&x, n_cols).unwrap();
    let arb = n_cols / 32 * 34;
    let a: Vec<u8> = (0..n_tok)
        .flat_map(|t| acts.q8_row(t).unwrap().to_vec())
        .collect();
    let mut y = vec![0.0f32; n_rows * n_tok];
    let iters = (200_000_000 / wb.len() / n_tok).max(1);
    let mut best = f64::MAX;
    for _rep in 0..40 {
        let t0 = std::time::Instant::now();
        for _ in 0..iters {
            if mode == "rows" {
                (k.q4_0.rows)(n_cols, &wb, rb, &a, &mut y);
            } else {
                for r in (0..n_rows).step_by(4) {
                    let wr = std::array::from_fn(|i| &wb[(r + i) * rb..(r + i + 1) * rb]);
                    for t in (0..n_tok).step_by(4) {
                        if n_tok >= 4 {
                            let o = (k.q4_0.tile_4x4)(
                                n_cols,
                                wr,
                                std::array::from_fn(|j| &a[(t + j) * arb..(t + j + 1) * arb]),
                            );
                            y[r] += o[0][0];
                        } else {
                            let o = (k.q4_0.dot_x4)(n_cols, wr, &a[..arb]);
                            y[r] += o[0];
                        }
                    }
                }
            }
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let s = best;
    let blocks = iters * n_rows * n_cols / 32 * n_tok;
    println!(
        "{mode} rows {n_rows} tok {n_tok}: {:.2} GB/s weights, {:.2} ns/output-block",
        (iters * wb.len() * n_tok) as f64 / s / 1e9,
        s * 1e9 / blocks as f64
    );
}
