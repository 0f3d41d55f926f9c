//! One MoE layer and one decode step of a Mixtral-width model, in GB/s of weights read.
//!
//! `cargo bench --bench model -- --measurement-time 5 --warm-up-time 2`
//!
//! The model is `SMOE_BENCH_MODEL` (any Mixtral GGUF, e.g. one from `smoe synth`), or else a
//! 1-layer Q4_0 model of Mixtral 8x7B's widths that the bench writes with `smoe synth` into a
//! temporary folder (about 0.9 GB; `SMOE_BENCH_TYPE=q8_0|f16` for another type).
//! - `moe_layer/decode`: layer 0's router and its two chosen experts for one token; throughput
//!   is the two experts' bytes.
//! - `moe_layer/prompt64`: the same for 64 tokens grouped by expert; throughput is the bytes of
//!   every expert the tokens chose (each read once).
//! - `decode_step`: the whole forward pass of one token (attention, MoE, output); throughput is
//!   `smoe bench`'s weight bytes per token, so GB/s here over the machine's read bandwidth is
//!   the roofline share.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smoe::bench::decode_bytes_per_token;
use smoe::gguf::GgufFile;
use smoe::model::moe::{experts, route, MoeScratch, Route};
use smoe::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};
use smoe::quant::matmul::Activations;

/// The model file, written once if not given (the folder is kept for the process's lifetime).
fn model_path() -> (PathBuf, Option<tempfile::TempDir>) {
    if let Ok(p) = std::env::var("SMOE_BENCH_MODEL") {
        return (PathBuf::from(p), None);
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("mixtral-1l.gguf");
    let ty = std::env::var("SMOE_BENCH_TYPE").unwrap_or_else(|_| "q4_0".into());
    let status = Command::new(env!("CARGO_BIN_EXE_smoe"))
        .args(["synth", "--layers", "1", "--type", &ty])
        .arg(&path)
        .status()
        .unwrap_or_else(|e| panic!("smoe synth: {e}"));
    assert!(status.success(), "smoe synth failed");
    (path, Some(dir))
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("thread pool: {e}"))
}

/// Deterministic hidden states of unit-ish spread: [n_tok, n_embd].
fn hidden(n_tok: usize, n_embd: usize) -> Vec<f32> {
    (0..n_tok * n_embd)
        .map(|i| (i.wrapping_mul(2654435761) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn benches(c: &mut Criterion) {
    let (path, _dir) = model_path();
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = Mixtral::load(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cfg = &model.cfg;
    let layer = &model.w.layers[0];
    let ty = layer.experts[0].gate.ty;
    let expert_bytes = |e: usize| {
        let x = &layer.experts[e];
        (x.gate.data.len() + x.up.data.len() + x.down.data.len()) as u64
    };
    let k = cfg.n_expert_used;

    let mut g = c.benchmark_group("moe_layer");
    g.sample_size(10);
    for (name, n_tok) in [("decode", 1usize), ("prompt64", 64)] {
        let xn = Activations::from_rows(&hidden(n_tok, cfg.n_embd), cfg.n_embd)
            .unwrap_or_else(|e| panic!("activations: {e}"));
        let mut logits = vec![0.0f32; n_tok * cfg.n_expert];
        let mut routes = vec![Route::default(); n_tok * k];
        route(&layer.router, &xn, k, &mut logits, &mut routes)
            .unwrap_or_else(|e| panic!("route: {e}"));
        let mut chosen = vec![false; cfg.n_expert];
        for r in &routes {
            chosen[r.expert] = true;
        }
        let bytes: u64 = (0..cfg.n_expert)
            .filter(|&e| chosen[e])
            .map(expert_bytes)
            .sum();
        g.throughput(Throughput::Bytes(bytes));
        let mut s = MoeScratch::new(n_tok, cfg.n_embd, cfg.n_ff);
        let mut out = vec![0.0f32; n_tok * cfg.n_embd];
        for threads in [1, 2] {
            let p = pool(threads);
            let id = BenchmarkId::new(format!("{name}/{ty}"), format!("{threads}t"));
            g.bench_function(id, |b| {
                p.install(|| {
                    b.iter(|| {
                        route(&layer.router, &xn, k, &mut logits, &mut routes)
                            .and_then(|()| {
                                experts(
                                    &layer.experts,
                                    black_box(&xn),
                                    &routes,
                                    k,
                                    &mut s,
                                    &mut out,
                                    &mut |_, _, _| {},
                                )
                            })
                            .unwrap_or_else(|e| panic!("experts: {e}"))
                    })
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("decode_step");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(decode_bytes_per_token(&model)));
    let mut kv = KvCache::new(CacheType::F16, 1, cfg.n_layer, 16, cfg.kv_dim());
    let mut s = Scratch::new(cfg, 1, 16);
    for threads in [1, 2] {
        let p = pool(threads);
        let id = BenchmarkId::new(format!("{}l/{ty}", cfg.n_layer), format!("{threads}t"));
        let mut id_tok = 1u32;
        g.bench_function(id, |b| {
            p.install(|| {
                b.iter(|| {
                    // A new token each time (so a new route), always at position 0.
                    id_tok = (id_tok * 7919 + 13) % cfg.n_vocab as u32;
                    let t = BatchToken {
                        id: id_tok,
                        pos: 0,
                        seq: 0,
                        logits: true,
                    };
                    model
                        .forward(&[t], &mut kv, &mut s)
                        .unwrap_or_else(|e| panic!("forward: {e}"))
                })
            })
        });
    }
    g.finish();
}

criterion_group!(model, benches);
criterion_main!(model);
