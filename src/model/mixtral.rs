//! The Mixtral forward pass over a batch of tokens, each at its own position in its own sequence
//! slot: embed → n_layer × (attention block, MoE block) → output norm → logits.

use smoe_quant::matmul::{matmul, Activations};

use super::attention::{attend, AttnShape};
use super::config::Config;
use super::kv_cache::KvCache;
use super::moe::{experts, route, MoeScratch, Route};
use super::norm::rms_norm;
use super::observe::{Hook, Site};
use super::pager::{dense_bytes, expert_budget, lock_dense, mark_experts, memory_available, Pager};
use super::rope::Rope;
use super::weights::{LayerWeights, Weights};
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// One token of a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchToken {
    pub id: u32,
    /// Position in its sequence (0-based); its key and value are stored at this cache row.
    pub pos: usize,
    /// KV cache slot of its sequence.
    pub seq: usize,
    /// Whether to compute logits for this token.
    pub logits: bool,
}

impl BatchToken {
    /// The tokens `ids` of sequence `seq` at positions `start..`, with logits where `want(i)` (i
    /// counts from 0 within `ids`).
    pub fn run<'a>(
        ids: &'a [u32],
        seq: usize,
        start: usize,
        want: impl Fn(usize) -> bool + 'a,
    ) -> impl Iterator<Item = BatchToken> + 'a {
        ids.iter().enumerate().map(move |(i, &id)| BatchToken {
            id,
            pos: start + i,
            seq,
            logits: want(i),
        })
    }
}

/// How much memory the model may keep resident.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemBudget {
    /// What the machine can spare (available memory, or the cgroup's limit).
    #[default]
    Auto,
    /// At most this many bytes (weights resident in the page cache).
    Bytes(u64),
    /// No paging machinery: plain mmap.
    Off,
}

/// Memory options for [`Mixtral::load_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    pub mem_budget: MemBudget,
    /// Pin the dense weights (attention, norms, routers, embeddings, output) in memory.
    pub mlock_dense: bool,
    /// Bytes to leave for the KV cache, scratch and the rest of the process (with `Auto`).
    pub reserve: u64,
}

/// A Mixtral model whose weights are borrowed from a GGUF file.
#[derive(Debug)]
pub struct Mixtral<'a> {
    pub cfg: Config,
    pub w: Weights<'a>,
    rope: Rope,
    /// Expert-aware paging, when the model does not fit in its memory budget.
    pub pager: Option<Pager<'a>>,
}

/// Buffers for one forward call of up to `n_batch` tokens, allocated once.
#[derive(Debug)]
pub struct Scratch {
    pub n_batch: usize,
    /// [n_batch, n_embd] the residual stream.
    x: Vec<f32>,
    /// [n_batch, n_embd] normalized input of the current block.
    xn: Vec<f32>,
    /// [n_batch, q_dim]
    q: Vec<f32>,
    /// [n_batch, kv_dim]
    k: Vec<f32>,
    /// [n_batch, kv_dim]
    v: Vec<f32>,
    /// [n_batch, q_dim] attention output before the output projection.
    attn: Vec<f32>,
    /// [n_batch, n_embd] output of a block before it joins the residual.
    proj: Vec<f32>,
    /// The current matmul input, quantized once and reused by every matrix that reads it.
    acts: Activations,
    /// [n_head, n_ctx] attention scores.
    scores: Vec<f32>,
    /// [n_batch, n_expert] router logits.
    router_logits: Vec<f32>,
    /// [n_batch, n_expert_used]
    routes: Vec<Route>,
    /// [n_batch, n_expert_used] the next layer's predicted routes (paging only).
    routes_next: Vec<Route>,
    /// [n_expert] experts chosen by the batch in one layer (paging only).
    expert_mask: Vec<bool>,
    /// [n_layer, n_expert] how many times each expert was chosen (routing statistics).
    pub expert_uses: Vec<u64>,
    moe: MoeScratch,
    /// Batch indices of the tokens that want logits.
    want: Vec<usize>,
    /// [n_batch, n_vocab] logits of the tokens that asked for them, in batch order.
    pub logits: Vec<f32>,
}

impl Scratch {
    pub fn new(cfg: &Config, n_batch: usize, n_ctx: usize) -> Self {
        let n_batch = n_batch.max(1);
        Scratch {
            n_batch,
            x: vec![0.0; n_batch * cfg.n_embd],
            xn: vec![0.0; n_batch * cfg.n_embd],
            q: vec![0.0; n_batch * cfg.q_dim()],
            k: vec![0.0; n_batch * cfg.kv_dim()],
            v: vec![0.0; n_batch * cfg.kv_dim()],
            attn: vec![0.0; n_batch * cfg.q_dim()],
            proj: vec![0.0; n_batch * cfg.n_embd],
            acts: Activations::new(),
            scores: vec![0.0; cfg.n_head * n_ctx],
            router_logits: vec![0.0; n_batch * cfg.n_expert],
            routes: vec![Route::default(); n_batch * cfg.n_expert_used],
            routes_next: vec![Route::default(); n_batch * cfg.n_expert_used],
            expert_mask: vec![false; cfg.n_expert],
            expert_uses: vec![0; cfg.n_layer * cfg.n_expert],
            moe: MoeScratch::new(n_batch, cfg.n_embd, cfg.n_ff),
            want: Vec::with_capacity(n_batch),
            logits: vec![0.0; n_batch * cfg.n_vocab],
        }
    }

    /// The busiest expert's share of its layer's choices, averaged over the layers that routed
    /// anything (1 / n_expert when routing is uniform).
    pub fn busiest_expert_share(&self, n_expert: usize) -> Option<f64> {
        let shares: Vec<f64> = self
            .expert_uses
            .chunks(n_expert.max(1))
            .filter_map(|l| {
                let total: u64 = l.iter().sum();
                (total > 0).then(|| *l.iter().max().unwrap_or(&0) as f64 / total as f64)
            })
            .collect();
        (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
    }

    /// Logits row `i` (the i-th token of the last batch that asked for logits).
    pub fn logits_row(&self, i: usize, n_vocab: usize) -> &[f32] {
        &self.logits[i * n_vocab..(i + 1) * n_vocab]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.x.len()
            + self.xn.len()
            + self.q.len()
            + self.k.len()
            + self.v.len()
            + self.attn.len()
            + self.proj.len()
            + self.scores.len()
            + self.router_logits.len()
            + self.moe.gate.len()
            + self.moe.up.len()
            + self.moe.down.len()
            + self.logits.len())
    }
}

impl<'a> Mixtral<'a> {
    /// Reads the configuration and maps the weights of `file`.
    pub fn load(file: &'a GgufFile) -> Result<Self> {
        Self::load_with(file, &LoadOptions::default())
    }

    /// [`Mixtral::load`] with memory options: an expert budget (paging when the file does not
    /// fit) and pinned dense weights.
    pub fn load_with(file: &'a GgufFile, opts: &LoadOptions) -> Result<Self> {
        let cfg = Config::from_gguf(file)?;
        let w = Weights::load(file, &cfg)?;
        let rope = Rope::new(cfg.n_rot, cfg.rope_freq_base);
        if opts.mlock_dense {
            lock_dense(file, &w);
        }
        let file_bytes = file.file_len();
        let budget = match opts.mem_budget {
            MemBudget::Off => None,
            MemBudget::Bytes(b) => expert_budget(file_bytes, dense_bytes(&w), b, 0),
            MemBudget::Auto => memory_available()
                .and_then(|avail| expert_budget(file_bytes, dense_bytes(&w), avail, opts.reserve)),
        };
        let pager = budget.map(|b| Pager::new(file, &w, b));
        Ok(Mixtral {
            cfg,
            w,
            rope,
            pager,
        })
    }

    /// Runs `batch` through the model, storing each token's key and value in `kv` at its slot and
    /// position; logits of the tokens that ask for them land in `s.logits`, in batch order.
    /// Tokens of one sequence must come in position order, and every earlier position of that
    /// sequence must already be in the cache (or in this batch, before it).
    pub fn forward(&self, batch: &[BatchToken], kv: &mut KvCache, s: &mut Scratch) -> Result<()> {
        self.forward_observed(batch, kv, s, &mut Hook::none())
    }

    /// [`Mixtral::forward`], reporting the input rows of every matrix multiplication to `hook`
    /// (for importance matrices).
    pub fn forward_observed(
        &self,
        batch: &[BatchToken],
        kv: &mut KvCache,
        s: &mut Scratch,
        hook: &mut Hook,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        self.check_batch(batch, kv, s)?;
        let n_embd = cfg.n_embd;
        for (t, tok) in batch.iter().enumerate() {
            self.w
                .token_embd
                .dequantize_row_into(tok.id as usize, &mut s.x[t * n_embd..(t + 1) * n_embd])?;
        }
        for (il, lw) in self.w.layers.iter().enumerate() {
            self.attention_block(il, lw, batch, kv, s, hook)?;
            self.moe_block(il, lw, n, s, hook)?;
        }
        s.want.clear();
        s.want.extend((0..n).filter(|&t| batch[t].logits));
        for (i, &t) in s.want.iter().enumerate() {
            rms_norm(
                &s.x[t * n_embd..(t + 1) * n_embd],
                &self.w.output_norm,
                cfg.rms_eps,
                &mut s.xn[i * n_embd..(i + 1) * n_embd],
            );
        }
        let m = s.want.len();
        if m == 0 {
            return Ok(());
        }
        s.acts.set_rows(&s.xn[..m * n_embd], n_embd)?;
        hook.see(0, Site::Output, None, &s.xn[..m * n_embd], n_embd);
        matmul(&self.w.output, &s.acts, &mut s.logits[..m * cfg.n_vocab])?;
        Ok(())
    }

    /// x += attn_output(attention(rope(q), rope(k), v)) for every token of the batch.
    fn attention_block(
        &self,
        il: usize,
        lw: &LayerWeights,
        batch: &[BatchToken],
        kv: &mut KvCache,
        s: &mut Scratch,
        hook: &mut Hook,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let (n, n_embd, q_dim, kv_dim) = (batch.len(), cfg.n_embd, cfg.q_dim(), cfg.kv_dim());
        norm_rows(&s.x, &lw.attn_norm, cfg.rms_eps, n, &mut s.xn);
        s.acts.set_rows(&s.xn[..n * n_embd], n_embd)?;
        for site in [Site::AttnQ, Site::AttnK, Site::AttnV] {
            hook.see(il, site, None, &s.xn[..n * n_embd], n_embd);
        }
        matmul(&lw.wq, &s.acts, &mut s.q[..n * q_dim])?;
        matmul(&lw.wk, &s.acts, &mut s.k[..n * kv_dim])?;
        matmul(&lw.wv, &s.acts, &mut s.v[..n * kv_dim])?;
        for (t, tok) in batch.iter().enumerate() {
            self.rope
                .apply(&mut s.q[t * q_dim..(t + 1) * q_dim], cfg.head_dim, tok.pos);
            self.rope.apply(
                &mut s.k[t * kv_dim..(t + 1) * kv_dim],
                cfg.head_dim,
                tok.pos,
            );
            let (k, v) = (
                &s.k[t * kv_dim..(t + 1) * kv_dim],
                &s.v[t * kv_dim..(t + 1) * kv_dim],
            );
            kv.store(tok.seq, il, tok.pos, k, v);
        }
        for (t, tok) in batch.iter().enumerate() {
            let first = cfg
                .sliding_window
                .map_or(0, |w| (tok.pos + 1).saturating_sub(w));
            let shape = AttnShape {
                n_head: cfg.n_head,
                n_head_kv: cfg.n_head_kv,
                head_dim: cfg.head_dim,
                seq: tok.seq,
                il,
                first,
                last: tok.pos,
            };
            attend(
                &s.q[t * q_dim..(t + 1) * q_dim],
                kv,
                shape,
                &mut s.scores,
                &mut s.attn[t * q_dim..(t + 1) * q_dim],
            );
        }
        s.acts.set_rows(&s.attn[..n * q_dim], q_dim)?;
        hook.see(il, Site::AttnOutput, None, &s.attn[..n * q_dim], q_dim);
        matmul(&lw.wo, &s.acts, &mut s.proj[..n * n_embd])?;
        add_into(&mut s.x[..n * n_embd], &s.proj[..n * n_embd]);
        Ok(())
    }

    /// x += Σ_chosen weight · expert(ffn_norm(x)).
    fn moe_block(
        &self,
        il: usize,
        lw: &LayerWeights,
        n: usize,
        s: &mut Scratch,
        hook: &mut Hook,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let (n_embd, k) = (cfg.n_embd, cfg.n_expert_used);
        norm_rows(&s.x, &lw.ffn_norm, cfg.rms_eps, n, &mut s.xn);
        s.acts.set_rows(&s.xn[..n * n_embd], n_embd)?;
        hook.see(il, Site::Router, None, &s.xn[..n * n_embd], n_embd);
        route(&lw.router, &s.acts, k, &mut s.router_logits, &mut s.routes)?;
        for r in &s.routes[..n * k] {
            if let Some(u) = s.expert_uses.get_mut(il * cfg.n_expert + r.expert) {
                *u += 1;
            }
        }
        if hook.is_on() {
            // Each token's normalized input goes into the gate and up matrices of its experts.
            for (t, rt) in s.routes[..n * k].chunks_exact(k).enumerate() {
                let row = &s.xn[t * n_embd..(t + 1) * n_embd];
                for r in rt {
                    hook.see(il, Site::FfnGateExps, Some(r.expert), row, n_embd);
                    hook.see(il, Site::FfnUpExps, Some(r.expert), row, n_embd);
                }
            }
        }
        if let Some(pager) = &self.pager {
            mark_experts(cfg, &s.routes[..n * k], &mut s.expert_mask);
            pager.use_experts(il, &s.expert_mask);
            // Predict the next layer's experts from this hidden state and request them now.
            if let Some(next) = self.w.layers.get(il + 1) {
                route(
                    &next.router,
                    &s.acts,
                    k,
                    &mut s.router_logits,
                    &mut s.routes_next,
                )?;
                mark_experts(cfg, &s.routes_next[..n * k], &mut s.expert_mask);
                pager.prefetch(il + 1, &s.expert_mask);
            }
        }
        experts(
            &lw.experts,
            &s.acts,
            &s.routes[..n * k],
            k,
            &mut s.moe,
            &mut s.proj[..n * n_embd],
            &mut |e, hidden, n_ff| hook.see(il, Site::FfnDownExps, Some(e), hidden, n_ff),
        )?;
        add_into(&mut s.x[..n * n_embd], &s.proj[..n * n_embd]);
        Ok(())
    }

    fn check_batch(&self, batch: &[BatchToken], kv: &KvCache, s: &Scratch) -> Result<()> {
        let bad = |what: String| Err(Error::Model { what });
        if batch.len() > s.n_batch {
            return bad(format!(
                "batch of {} tokens exceeds the scratch size {}",
                batch.len(),
                s.n_batch
            ));
        }
        if s.scores.len() < self.cfg.n_head * kv.n_ctx {
            return bad("scratch was sized for a smaller context than the KV cache".into());
        }
        for tok in batch {
            if tok.id as usize >= self.cfg.n_vocab {
                return bad(format!(
                    "token id {} is outside the vocabulary of {}",
                    tok.id, self.cfg.n_vocab
                ));
            }
            if tok.pos >= kv.n_ctx {
                return bad(format!(
                    "position {} is beyond the context of {} tokens",
                    tok.pos, kv.n_ctx
                ));
            }
            if tok.seq >= kv.n_seq {
                return bad(format!(
                    "sequence slot {} does not exist (the cache has {})",
                    tok.seq, kv.n_seq
                ));
            }
        }
        Ok(())
    }
}

/// RMSNorm of the first `n` rows of `x` [.., n_embd] into `out`.
fn norm_rows(x: &[f32], w: &[f32], eps: f32, n: usize, out: &mut [f32]) {
    let d = w.len();
    for t in 0..n {
        rms_norm(&x[t * d..(t + 1) * d], w, eps, &mut out[t * d..(t + 1) * d]);
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
