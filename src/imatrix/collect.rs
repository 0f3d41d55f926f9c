//! Collecting an importance matrix: run the model over a text, as llama-imatrix does, and sum the
//! squared inputs of every weight matrix per channel (per expert for expert matrices).

use std::collections::BTreeMap;

use super::{Imatrix, ImatrixEntry};
use crate::model::{BatchToken, CacheType, Hook, KvCache, MatmulInput, Mixtral, Scratch, Site};
use crate::{Error, Result};

/// Running sums for one weight (f64 while collecting; the file holds f32).
#[derive(Clone, Debug)]
struct Stats {
    n_cols: usize,
    /// [n_mat, n_cols]
    sum2: Vec<f64>,
    /// [n_mat]
    counts: Vec<u64>,
}

/// Accumulates [`MatmulInput`]s into per-weight statistics.
#[derive(Clone, Debug)]
pub struct ImatrixCollector {
    n_expert: usize,
    /// Also collect the output matrix's input (llama-imatrix's `--process-output`).
    process_output: bool,
    stats: BTreeMap<String, Stats>,
}

impl ImatrixCollector {
    pub fn new(n_expert: usize, process_output: bool) -> Self {
        ImatrixCollector {
            n_expert,
            process_output,
            stats: BTreeMap::new(),
        }
    }

    /// Adds one matmul's input rows: each row's squares to its matrix's sums, and one count per row.
    pub fn observe(&mut self, m: &MatmulInput) {
        if m.site == Site::Output && !self.process_output {
            return;
        }
        let n_mat = if m.expert.is_some() { self.n_expert } else { 1 };
        let name = m.site.tensor_name(m.il);
        let st = self.stats.entry(name).or_insert_with(|| Stats {
            n_cols: m.n_cols,
            sum2: vec![0.0; n_mat * m.n_cols],
            counts: vec![0; n_mat],
        });
        let mat = m.expert.unwrap_or(0);
        if st.n_cols != m.n_cols || mat >= st.counts.len() {
            // Shapes are fixed by the model; this cannot happen with one model per collector.
            return;
        }
        let acc = &mut st.sum2[mat * m.n_cols..(mat + 1) * m.n_cols];
        for row in m.rows.chunks_exact(m.n_cols) {
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += f64::from(x) * f64::from(x);
            }
            st.counts[mat] += 1;
        }
    }

    /// The statistics as an [`Imatrix`].
    pub fn to_imatrix(&self, datasets: Vec<String>, chunk_count: u32, chunk_size: u32) -> Imatrix {
        let entries = self
            .stats
            .iter()
            .map(|(name, st)| {
                let e = ImatrixEntry {
                    n_cols: st.n_cols,
                    sum2: st.sum2.iter().map(|&v| v as f32).collect(),
                    counts: st.counts.iter().map(|&c| c as f32).collect(),
                };
                (name.clone(), e)
            })
            .collect();
        Imatrix {
            entries,
            datasets,
            chunk_count,
            chunk_size,
        }
    }

    /// Experts that never fired, as (weight name, expert) pairs.
    pub fn unused_experts(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for (name, st) in &self.stats {
            if st.counts.len() > 1 {
                for (e, &c) in st.counts.iter().enumerate() {
                    if c == 0 {
                        out.push((name.clone(), e));
                    }
                }
            }
        }
        out
    }
}

/// How to cut and run the text.
#[derive(Clone, Copy, Debug)]
pub struct ImatrixParams {
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Use at most this many chunks (0 = every full chunk).
    pub max_chunks: usize,
    /// Tokens per forward call.
    pub n_batch: usize,
    pub cache: CacheType,
    /// Also collect the output matrix's input.
    pub process_output: bool,
}

/// What a collection run produced.
#[derive(Clone, Debug)]
pub struct ImatrixRun {
    pub collector: ImatrixCollector,
    pub n_chunks: usize,
    /// Perplexity over the second half of each chunk (llama-imatrix prints the same).
    pub ppl: f64,
}

/// Runs `tokens` (the whole text, tokenized with BOS) through the model as llama-imatrix does:
/// non-overlapping chunks of `n_ctx` tokens, each chunk's first token replaced by BOS, every token
/// of every chunk observed. `on_chunk(i, running_ppl)` is called after each chunk.
pub fn collect(
    model: &Mixtral,
    tokens: &[u32],
    bos: u32,
    p: ImatrixParams,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<ImatrixRun> {
    let n_ctx = p.n_ctx;
    if n_ctx < 4 {
        return Err(Error::Model {
            what: format!("imatrix needs a context of at least 4 tokens, got {n_ctx}"),
        });
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if p.max_chunks > 0 {
        n_chunks = n_chunks.min(p.max_chunks);
    }
    if n_chunks == 0 {
        return Err(Error::Model {
            what: format!(
                "the text has {} tokens, fewer than one chunk of {n_ctx}: use a longer text or a smaller --ctx",
                tokens.len()
            ),
        });
    }
    let cfg = &model.cfg;
    let n_batch = p.n_batch.clamp(1, n_ctx);
    let mut kv = KvCache::new(p.cache, 1, cfg.n_layer, n_ctx, cfg.kv_dim());
    let mut s = Scratch::new(cfg, n_batch, n_ctx);
    let mut collector = ImatrixCollector::new(cfg.n_expert, p.process_output);
    let first = n_ctx / 2;
    let (mut nll, mut count) = (0.0f64, 0usize);
    let mut batch = Vec::with_capacity(n_batch);
    for c in 0..n_chunks {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        for start in (0..n_ctx).step_by(n_batch) {
            let end = (start + n_batch).min(n_ctx);
            batch.clear();
            batch.extend((start..end).map(|pos| BatchToken {
                id: if pos == 0 { bos } else { chunk[pos] },
                pos,
                seq: 0,
                logits: pos >= first && pos + 1 < n_ctx,
            }));
            let mut observe = |m: &MatmulInput| collector.observe(m);
            model.forward_observed(&batch, &mut kv, &mut s, &mut Hook::new(&mut observe))?;
            let mut row = 0;
            for tok in &batch {
                if tok.logits {
                    nll += crate::perplexity::nll_of(
                        s.logits_row(row, cfg.n_vocab),
                        chunk[tok.pos + 1],
                    );
                    count += 1;
                    row += 1;
                }
            }
        }
        on_chunk(c, (nll / count.max(1) as f64).exp());
    }
    Ok(ImatrixRun {
        collector,
        n_chunks,
        ppl: (nll / count.max(1) as f64).exp(),
    })
}
