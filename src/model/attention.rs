//! Grouped-query causal attention of one token over its sequence's KV cache.

use half::f16;
use rayon::prelude::*;

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
    out.par_chunks_mut(hd)
        .zip(scores.par_chunks_mut(kv.n_ctx))
        .enumerate()
        .for_each(|(h, (out_h, sc))| {
            let q_h = &q[h * hd..(h + 1) * hd];
            let kv_off = (h / group) * hd;
            let sc = &mut sc[..n_pos];
            for (j, s_j) in sc.iter_mut().enumerate() {
                let at = base + j * kv.kv_dim + kv_off;
                *s_j = dot_cache(q_h, &kv.k, at) * scale;
            }
            softmax(sc);
            out_h.fill(0.0);
            for (j, &p) in sc.iter().enumerate() {
                let at = base + j * kv.kv_dim + kv_off;
                axpy_cache(p, &kv.v, at, out_h);
            }
        });
}

fn dot_cache(q: &[f32], store: &KvStore, at: usize) -> f32 {
    match store {
        KvStore::F32(v) => q.iter().zip(&v[at..at + q.len()]).map(|(a, b)| a * b).sum(),
        KvStore::F16(v) => q
            .iter()
            .zip(&v[at..at + q.len()])
            .map(|(a, b)| a * f16::to_f32(*b))
            .sum(),
    }
}

fn axpy_cache(p: f32, store: &KvStore, at: usize, out: &mut [f32]) {
    let n = out.len();
    match store {
        KvStore::F32(v) => {
            for (o, x) in out.iter_mut().zip(&v[at..at + n]) {
                *o += p * x;
            }
        }
        KvStore::F16(v) => {
            for (o, x) in out.iter_mut().zip(&v[at..at + n]) {
                *o += p * x.to_f32();
            }
        }
    }
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
