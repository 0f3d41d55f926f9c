//! Grouped-query causal attention of one token over its sequence's KV cache.

use rayon::prelude::*;
use smoe_quant::kernels::{self, FloatKernels};

use super::kv_cache::{KvCache, KvStore};

/// Shapes and position of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Sequence slot and layer whose cache rows are read.
    pub seq: usize,
    pub il: usize,
    /// Attend to cache positions `first..=last`.
    pub first: usize,
    pub last: usize,
}

/// `out` [n_head × head_dim] = for each head h: softmax(q_h · K_g / √head_dim) · V_g over positions
/// `first..=last`, g = h / (n_head / n_head_kv). `scores` is scratch of n_head × n_ctx.
pub fn attend(q: &[f32], kv: &KvCache, s: AttnShape, scores: &mut [f32], out: &mut [f32]) {
    let hd = s.head_dim;
    let group = s.n_head / s.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let n_pos = s.last + 1 - s.first;
    let base = kv.offset(s.seq, s.il, s.first);
    let k = kernels::kernels();
    out.par_chunks_mut(hd)
        .zip(scores.par_chunks_mut(kv.n_ctx))
        .enumerate()
        .for_each(|(h, (out_h, sc))| {
            let q_h = &q[h * hd..(h + 1) * hd];
            let kv_off = (h / group) * hd;
            let sc = &mut sc[..n_pos];
            for (j, s_j) in sc.iter_mut().enumerate() {
                let at = base + j * kv.kv_dim + kv_off;
                *s_j = dot_cache(k, q_h, &kv.k, at) * scale;
            }
            softmax(sc);
            out_h.fill(0.0);
            for (j, &p) in sc.iter().enumerate() {
                let at = base + j * kv.kv_dim + kv_off;
                axpy_cache(k, p, &kv.v, at, out_h);
            }
        });
}

/// The float kernels for the cache's element type and the bytes of `n` elements at `at`.
fn cache_row<'a>(
    k: &kernels::Kernels,
    store: &'a KvStore,
    at: usize,
    n: usize,
) -> (FloatKernels, &'a [u8]) {
    match store {
        KvStore::F32(v) => (k.f32, bytemuck::cast_slice(&v[at..at + n])),
        KvStore::F16(v) => (k.f16, bytemuck::cast_slice(&v[at..at + n])),
    }
}

/// `q · K[at..at + head_dim]` with the SIMD float dot.
fn dot_cache(k: &kernels::Kernels, q: &[f32], store: &KvStore, at: usize) -> f32 {
    let (fk, row) = cache_row(k, store, at, q.len());
    (fk.dot)(q.len(), row, q)
}

/// `out += p · V[at..at + head_dim]` with the SIMD float axpy.
fn axpy_cache(k: &kernels::Kernels, p: f32, store: &KvStore, at: usize, out: &mut [f32]) {
    let (fk, row) = cache_row(k, store, at, out.len());
    (fk.axpy)(out.len(), p, row, out);
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
