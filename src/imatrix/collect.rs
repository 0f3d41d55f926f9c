//! Collecting an importance matrix: run the model over a text, as llama-imatrix does, and sum the
//! squared inputs of every weight matrix per channel (per expert for expert matrices).

use std::collections::BTreeMap;

use super::{Imatrix, ImatrixEntry};
use crate::model::{CacheType, Hook, MatmulInput, Mixtral, Site};
use crate::perplexity::{perplexity_observed, PerplexityParams};
use crate::Result;

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
/// of every chunk observed (the perplexity run, [`perplexity_observed`], with a hook).
/// `on_chunk(i, running_ppl)` is called after each chunk.
pub fn collect(
    model: &Mixtral,
    tokens: &[u32],
    bos: u32,
    p: ImatrixParams,
    on_chunk: impl FnMut(usize, f64),
) -> Result<ImatrixRun> {
    let mut collector = ImatrixCollector::new(model.cfg.n_expert, p.process_output);
    let mut observe = |m: &MatmulInput| collector.observe(m);
    let params = PerplexityParams {
        n_ctx: p.n_ctx,
        max_chunks: p.max_chunks,
        n_batch: p.n_batch,
        cache: p.cache,
    };
    let run = perplexity_observed(
        model,
        tokens,
        bos,
        params,
        &mut Hook::new(&mut observe),
        on_chunk,
    )?;
    Ok(ImatrixRun {
        collector,
        n_chunks: run.chunks.len(),
        ppl: run.ppl,
    })
}
