//! The sparse MoE feed-forward: a router picks `n_expert_used` of `n_expert` SwiGLU experts per
//! token, and only those run. Tokens are grouped by expert so each expert's weights are read once
//! for the whole batch.

use rayon::prelude::*;
use smoe_quant::matmul::{matmul, Activations};

use super::weights::Expert;
use crate::Result;
use smoe_quant::Matrix;

/// One routing choice: expert index and its mixing weight.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Route {
    pub expert: usize,
    pub weight: f32,
}

/// Router: `logits` [n_tok, n_expert] = router · xn; for each token keep the top `k` logits and
/// softmax over just those. `routes` [n_tok, k] receives the choices, best first.
pub fn route(
    router: &Matrix,
    xn: &Activations,
    k: usize,
    logits: &mut [f32],
    routes: &mut [Route],
) -> Result<()> {
    let (n_expert, n_tok) = (router.n_rows, xn.n_tok());
    matmul(router, xn, &mut logits[..n_tok * n_expert])?;
    for t in 0..n_tok {
        let lt = &logits[t * n_expert..(t + 1) * n_expert];
        let rt = &mut routes[t * k..(t + 1) * k];
        // Selection by repeated argmax: k is tiny (2); the lowest index wins ties, as torch.topk does.
        for i in 0..k {
            let mut best = usize::MAX;
            for (e, &l) in lt.iter().enumerate() {
                let taken = rt[..i].iter().any(|r| r.expert == e);
                if !taken && (best == usize::MAX || l > lt[best]) {
                    best = e;
                }
            }
            rt[i] = Route {
                expert: best,
                weight: lt[best],
            };
        }
        let max = rt[0].weight;
        let mut sum = 0.0f32;
        for r in rt.iter_mut() {
            r.weight = (r.weight - max).exp();
            sum += r.weight;
        }
        for r in rt.iter_mut() {
            r.weight /= sum;
        }
    }
    Ok(())
}

/// Scratch for [`experts`], sized for `n_tok` tokens.
#[derive(Debug)]
pub struct MoeScratch {
    /// Tokens routed to the current expert: their batch indices and weights.
    pub members: Vec<usize>,
    pub member_weights: Vec<f32>,
    /// [m, n_embd] inputs of the current expert's m tokens, gathered (already quantized).
    pub xe: Activations,
    /// [m, n_ff] silu(gate) * up, quantized for the down projection.
    pub hidden: Activations,
    /// [n_tok, n_ff] gate, then silu(gate) * up.
    pub gate: Vec<f32>,
    /// [n_tok, n_ff]
    pub up: Vec<f32>,
    /// [n_tok, n_embd] the expert's outputs.
    pub down: Vec<f32>,
}

impl MoeScratch {
    pub fn new(n_tok: usize, n_embd: usize, n_ff: usize) -> Self {
        MoeScratch {
            members: Vec::with_capacity(n_tok),
            member_weights: Vec::with_capacity(n_tok),
            xe: Activations::new(),
            hidden: Activations::new(),
            gate: vec![0.0; n_tok * n_ff],
            up: vec![0.0; n_tok * n_ff],
            down: vec![0.0; n_tok * n_embd],
        }
    }
}

/// Experts: `out` [n_tok, n_embd] = Σ over each token's routes of weight · down(silu(gate·x) * (up·x)).
/// Experts run in index order, so a token's sum has the same order in any batch.
/// `on_hidden(e, rows, n_ff)` sees expert `e`'s down-projection input `rows` [m, n_ff].
pub fn experts(
    experts: &[Expert],
    xn: &Activations,
    routes: &[Route],
    k: usize,
    s: &mut MoeScratch,
    out: &mut [f32],
    on_hidden: &mut dyn FnMut(usize, &[f32], usize),
) -> Result<()> {
    let (n_tok, n_embd) = (xn.n_tok(), xn.n_cols());
    out[..n_tok * n_embd].fill(0.0);
    for (e, ex) in experts.iter().enumerate() {
        s.members.clear();
        s.member_weights.clear();
        for t in 0..n_tok {
            if let Some(r) = routes[t * k..(t + 1) * k].iter().find(|r| r.expert == e) {
                s.members.push(t);
                s.member_weights.push(r.weight);
            }
        }
        let m = s.members.len();
        if m == 0 {
            continue;
        }
        let n_ff = ex.gate.n_rows;
        xn.gather_into(&s.members, &mut s.xe)?;
        matmul(&ex.gate, &s.xe, &mut s.gate[..m * n_ff])?;
        matmul(&ex.up, &s.xe, &mut s.up[..m * n_ff])?;
        swiglu(&mut s.gate[..m * n_ff], &s.up[..m * n_ff]);
        on_hidden(e, &s.gate[..m * n_ff], n_ff);
        s.hidden.set_rows(&s.gate[..m * n_ff], n_ff)?;
        matmul(&ex.down, &s.hidden, &mut s.down[..m * n_embd])?;
        for (i, (&t, &w)) in s.members.iter().zip(&s.member_weights).enumerate() {
            let o = &mut out[t * n_embd..(t + 1) * n_embd];
            for (o, d) in o.iter_mut().zip(&s.down[i * n_embd..(i + 1) * n_embd]) {
                *o += w * d;
            }
        }
    }
    Ok(())
}

/// `gate[i] = silu(gate[i]) * up[i]`, split across the pool when there is enough of it (each
/// element on its own, so the result does not depend on the split).
fn swiglu(gate: &mut [f32], up: &[f32]) {
    /// Elements per task: big enough that scheduling is noise, small enough to spread a
    /// prompt's expert over the pool.
    const CHUNK: usize = 16 * 1024;
    let f = |(g, u): (&mut [f32], &[f32])| {
        for (g, u) in g.iter_mut().zip(u) {
            *g = silu(*g) * u;
        }
    };
    if gate.len() > CHUNK {
        gate.par_chunks_mut(CHUNK)
            .zip(up.par_chunks(CHUNK))
            .for_each(f);
    } else {
        f((gate, up));
    }
}

/// SiLU: x · sigmoid(x).
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}
