//! Matmul throughput of one weight type (one token, or `tokens=N`), in GB/s of weights read, against the
//! machine's read bandwidth: the quick probe behind the decode-kernel figures in the README.
//!
//! ```sh
//! cargo run --release -p smoe-quant --example decode_probe -- q4_k            # 14336 x 4096, from memory
//! cargo run --release -p smoe-quant --example decode_probe -- q4_k 64 1 direct # 64 rows, in cache
//! ```
//! Arguments: `TYPE [ROWS] [THREADS] [direct|tokens=N]` — TYPE one of q4_0, q8_0, q2_k … q6_k;
//! ROWS of 4096 columns (default 14336, Mixtral's n_ff); with ROWS small (e.g. 64, 150 KB) the
//! weights stay in L2 and the figure is the kernel's compute rate. From 1024 rows, enough
//! matrices to pass 1 GiB are cycled, so the big case reads from memory (not from a last-level
//! cache of hundreds of MB). `direct` calls the table's row kernel without the matmul driver (no rayon, no task
//! split). `tokens=N` multiplies N activation rows at once (the prompt and batch path) and also
//! reports multiply-adds a second. The best of 7 timed passes is reported.

use std::time::Instant;

use smoe_quant::bandwidth::measure_read_gbps;
use smoe_quant::kernels;
use smoe_quant::matmul::{matmul_with, Activations, Matrix};
use smoe_quant::GgmlType;

#[path = "../benches/common/random_weights.rs"]
mod random_weights;
use random_weights::random_weights;

fn main() {
    if let Err(e) = run() {
        eprintln!("decode_probe: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ty = match args.first().map(String::as_str).unwrap_or("q4_k") {
        "q4_0" => GgmlType::Q4_0,
        "q8_0" => GgmlType::Q8_0,
        "q2_k" => GgmlType::Q2K,
        "q3_k" => GgmlType::Q3K,
        "q4_k" => GgmlType::Q4K,
        "q5_k" => GgmlType::Q5K,
        "q6_k" => GgmlType::Q6K,
        other => return Err(format!("unknown type '{other}'")),
    };
    let num = |i: usize, d: usize| -> Result<usize, String> {
        args.get(i).map_or(Ok(d), |s| {
            s.parse().map_err(|_| format!("bad number '{s}'"))
        })
    };
    let (n_rows, threads) = (num(1, 14336)?.max(1), num(2, 1)?.max(1));
    let direct = args.get(3).is_some_and(|s| s == "direct");
    let n_tok = match args.get(3).and_then(|s| s.strip_prefix("tokens=")) {
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| format!("bad token count '{n}'"))?
            .max(1),
        None => 1,
    };
    let n_cols = 4096;
    let rb = ty.row_bytes(n_cols as u64).ok_or("row size")? as usize;
    // Enough matrices to pass 1 GiB, so the big case streams from memory, not from a large L3.
    let n_mats = if n_rows < 1024 {
        1
    } else {
        (1usize << 30).div_ceil(rb * n_rows).max(4)
    };
    let mats: Vec<Vec<u8>> = (0..n_mats as u64)
        .map(|i| random_weights(ty, n_rows, n_cols, 0x2545_f491_4f6c_dd1d + i))
        .collect();
    let x: Vec<f32> = (0..n_cols * n_tok).map(|i| (i as f32).sin()).collect();
    let a = Activations::from_rows(&x, n_cols).map_err(|e| e.to_string())?;
    let k = kernels::kernels();
    let ws = mats
        .iter()
        .map(|m| Matrix::new(ty, m, n_rows, n_cols))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut y = vec![0.0f32; n_rows * n_tok];
    let bytes = rb * n_rows;
    let iters = (2_000_000_000 / bytes).clamp(n_mats, 100_000);
    let mut best = f64::MAX;
    if direct {
        let rows = match ty {
            GgmlType::Q4_0 => k.q4_0.rows,
            GgmlType::Q8_0 => k.q8_0.rows,
            GgmlType::Q2K => k.k_quants.q2_k.kernels.rows,
            GgmlType::Q3K => k.k_quants.q3_k.kernels.rows,
            GgmlType::Q4K => k.k_quants.q4_k.kernels.rows,
            GgmlType::Q5K => k.k_quants.q5_k.kernels.rows,
            _ => k.k_quants.q6_k.kernels.rows,
        };
        let act = match ty {
            GgmlType::Q4_0 | GgmlType::Q8_0 => a.q8_row(0),
            _ => a.q8k_row(0),
        }
        .ok_or("no quantized activation row")?;
        for _ in 0..7 {
            let t0 = Instant::now();
            for i in 0..iters {
                rows(n_cols, &mats[i % n_mats], rb, act, &mut y);
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        pool.install(|| -> Result<(), String> {
            for _ in 0..7 {
                let t0 = Instant::now();
                for i in 0..iters {
                    matmul_with(k, &ws[i % n_mats], &a, &mut y).map_err(|e| e.to_string())?;
                }
                best = best.min(t0.elapsed().as_secs_f64());
            }
            Ok(())
        })?;
    }
    let gbps = (iters * bytes) as f64 / best / 1e9;
    let probe = measure_read_gbps(512 << 20, threads).map_err(|e| e.to_string())?;
    let gmacs = (iters * n_rows * n_cols * n_tok) as f64 / best / 1e9;
    println!(
        "{ty} {n_rows}x{n_cols}, {n_tok} token(s), {threads} thread(s){}, {} kernels: {gbps:.2} GB/s, \
         {gmacs:.1} GMAC/s ({:.1} us a matmul); read bandwidth {probe:.2} GB/s ({:.0}%)",
        if direct { ", direct" } else { "" },
        k.isa,
        best / iters as f64 * 1e6,
        gbps / probe * 100.0
    );
    Ok(())
}
