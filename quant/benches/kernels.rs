//! Kernels at Mixtral 8x7B shapes: gemv (decode) and 64-token gemm (prompt) for Q4_0 / Q8_0 and
//! Q4_K / Q6_K weights, per instruction set and thread count, plus the memory read roofline.
//!
//! `cargo bench -p smoe-quant --bench kernels -- --measurement-time 3 --warm-up-time 1`
//! gemv throughput is in bytes of weights read per second; gemm in multiply-adds ×2 (FLOP) per
//! second. The roofline (the read-bandwidth probe) is printed first.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smoe_quant::bandwidth::measure_read_gbps;
use smoe_quant::kernels::{self, Isa, Kernels};
use smoe_quant::matmul::{matmul_with, Activations, Matrix};
use smoe_quant::GgmlType;

#[path = "common/random_weights.rs"]
mod random_weights;
use random_weights::random_weights;

/// (n_rows, n_cols): gate/up [n_ff, n_embd] and down [n_embd, n_ff].
const SHAPES: [(usize, usize, &str); 2] = [(14336, 4096, "gate_up"), (4096, 14336, "down")];

/// Random quant bytes with every block scale set to a small finite f16.
fn weights(ty: GgmlType, n_rows: usize, n_cols: usize) -> Vec<u8> {
    random_weights(ty, n_rows, n_cols, 0x2545_f491_4f6c_dd1d)
}

/// The quantized weight types benched.
const TYPES: [GgmlType; 4] = [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K];

fn acts(n_tok: usize, n_cols: usize) -> Activations {
    let x: Vec<f32> = (0..n_tok * n_cols)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
        .collect();
    Activations::from_rows(&x, n_cols).unwrap_or_default()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("thread pool: {e}"))
}

fn table(isa: Isa) -> Option<&'static Kernels> {
    kernels::table(isa)
}

fn roofline() {
    for threads in [1, 2] {
        match measure_read_gbps(512 << 20, threads) {
            Ok(g) => eprintln!("read bandwidth probe, {threads} thread(s): {g:.2} GB/s"),
            Err(e) => eprintln!("read bandwidth probe failed: {e}"),
        }
    }
    eprintln!("detected ISA: {}", kernels::detected());
}

fn gemv(c: &mut Criterion) {
    roofline();
    let best = kernels::kernels();
    let mut g = c.benchmark_group("gemv");
    g.sample_size(10);
    for ty in TYPES {
        for (n_rows, n_cols, name) in SHAPES {
            let wb = weights(ty, n_rows, n_cols);
            let Ok(w) = Matrix::new(ty, &wb, n_rows, n_cols) else {
                continue;
            };
            let a = acts(1, n_cols);
            let mut y = vec![0.0f32; n_rows];
            g.throughput(Throughput::Bytes(wb.len() as u64));
            for threads in [1, 2] {
                let p = pool(threads);
                let id =
                    BenchmarkId::new(format!("{ty}/{name}/{}", best.isa), format!("{threads}t"));
                g.bench_function(id, |b| {
                    p.install(|| b.iter(|| matmul_with(best, &w, black_box(&a), &mut y)))
                });
            }
            // The other instruction sets, one thread, gate/up only (the speedup table).
            if name == "gate_up" {
                let p = pool(1);
                for isa in [Isa::Portable, Isa::Scalar] {
                    let Some(k) = table(isa) else { continue };
                    let id = BenchmarkId::new(format!("{ty}/{name}/{isa}"), "1t");
                    g.bench_function(id, |b| {
                        p.install(|| b.iter(|| matmul_with(k, &w, black_box(&a), &mut y)))
                    });
                }
            }
        }
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let best = kernels::kernels();
    let n_tok = 64;
    let mut g = c.benchmark_group("gemm64");
    g.sample_size(10);
    for ty in TYPES {
        for (n_rows, n_cols, name) in SHAPES {
            let wb = weights(ty, n_rows, n_cols);
            let Ok(w) = Matrix::new(ty, &wb, n_rows, n_cols) else {
                continue;
            };
            let a = acts(n_tok, n_cols);
            let mut y = vec![0.0f32; n_rows * n_tok];
            g.throughput(Throughput::Elements((2 * n_rows * n_cols * n_tok) as u64));
            for threads in [1, 2] {
                let p = pool(threads);
                let id =
                    BenchmarkId::new(format!("{ty}/{name}/{}", best.isa), format!("{threads}t"));
                g.bench_function(id, |b| {
                    p.install(|| b.iter(|| matmul_with(best, &w, black_box(&a), &mut y)))
                });
            }
        }
    }
    g.finish();
}

fn quantize(c: &mut Criterion) {
    let mut g = c.benchmark_group("quantize_q8_0");
    let x: Vec<f32> = (0..4096).map(|i| ((i % 97) as f32 - 48.0) * 0.01).collect();
    let mut out = vec![0u8; 4096 / 32 * 34];
    g.throughput(Throughput::Elements(4096));
    for isa in kernels::available() {
        let Some(k) = table(isa) else { continue };
        g.bench_function(isa.name(), |b| {
            b.iter(|| (k.quantize_row_q8_0)(black_box(&x), &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, gemv, gemm, quantize);
criterion_main!(benches);
