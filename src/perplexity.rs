//! Perplexity exactly as llama.cpp's `llama-perplexity` defines it, so the numbers compare directly:
//! the text is tokenized once (with BOS) and cut into non-overlapping chunks of `n_ctx` tokens; each
//! chunk's first token is replaced by BOS; with `first = n_ctx / 2`, tokens `first+1 ..= n_ctx-1` are
//! scored from the logits one position earlier; ppl = exp(mean NLL over every scored token).

use crate::model::{BatchToken, CacheType, Hook, KvCache, Mixtral, Scratch};
use crate::{Error, Result};

/// The result, with the running perplexity after each chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    pub n_ctx: usize,
    pub chunks: Vec<f64>,
    pub n_scored: usize,
    pub ppl: f64,
}

/// How to cut and run the text.
#[derive(Clone, Copy, Debug)]
pub struct PerplexityParams {
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Score at most this many chunks (0 = every full chunk).
    pub max_chunks: usize,
    /// Tokens per forward call.
    pub n_batch: usize,
    pub cache: CacheType,
}

/// Scores `tokens` (the whole text, tokenized with BOS). `on_chunk(i, running_ppl)` is called
/// after each chunk.
pub fn perplexity(
    model: &Mixtral,
    tokens: &[u32],
    bos: u32,
    p: PerplexityParams,
    on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    perplexity_observed(model, tokens, bos, p, &mut Hook::none(), on_chunk)
}

/// [`perplexity`] with every matmul input of every chunk reported to `hook` (what
/// `llama-imatrix` runs: the same chunks, every token of each observed).
pub fn perplexity_observed(
    model: &Mixtral,
    tokens: &[u32],
    bos: u32,
    p: PerplexityParams,
    hook: &mut Hook,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    let PerplexityParams {
        n_ctx,
        max_chunks,
        n_batch,
        cache,
    } = p;
    if n_ctx < 4 {
        return Err(Error::Model {
            what: format!("a context of at least 4 tokens is needed, got {n_ctx}"),
        });
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if max_chunks > 0 {
        n_chunks = n_chunks.min(max_chunks);
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
    let n_vocab = cfg.n_vocab;
    let n_batch = n_batch.clamp(1, n_ctx);
    let mut kv = KvCache::new(cache, 1, cfg.n_layer, n_ctx, cfg.kv_dim());
    let mut s = Scratch::new(cfg, n_batch, n_ctx);
    let first = n_ctx / 2;
    let (mut nll, mut count) = (0.0f64, 0usize);
    let mut chunks = Vec::with_capacity(n_chunks);
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
            model.forward_observed(&batch, &mut kv, &mut s, hook)?;
            let mut row = 0;
            for tok in &batch {
                if tok.logits {
                    nll += nll_of(s.logits_row(row, n_vocab), chunk[tok.pos + 1]);
                    count += 1;
                    row += 1;
                }
            }
        }
        let running = (nll / count as f64).exp();
        chunks.push(running);
        on_chunk(c, running);
    }
    Ok(Perplexity {
        n_ctx,
        ppl: (nll / count as f64).exp(),
        chunks,
        n_scored: count,
    })
}

/// −log softmax(logits)[target], accumulated in f64 as llama.cpp does.
pub(crate) fn nll_of(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    sum.ln() + (max as f64) - logits[target as usize] as f64
}
