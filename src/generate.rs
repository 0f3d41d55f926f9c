//! One generation session: a model, a KV cache and scratch for one sequence; prompt in, streamed
//! tokens out. The cache is kept between calls, so a chat continues where it left off.

use std::time::{Duration, Instant};

use crate::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};
use crate::sampler::Sampler;
use crate::{Error, Result};

/// Tokens processed per forward call while reading a prompt.
pub const DEFAULT_N_BATCH: usize = 64;

/// A single sequence's state: what is in the cache, and the buffers to extend it.
#[derive(Debug)]
pub struct Session<'m, 'a> {
    model: &'m Mixtral<'a>,
    kv: KvCache,
    scratch: Scratch,
    /// Every token in the cache, in position order.
    tokens: Vec<u32>,
    /// The batch being fed, reused so decoding allocates nothing.
    batch: Vec<BatchToken>,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token was sampled.
    Stop,
    /// The token limit was reached.
    Length,
    /// The context is full.
    Context,
    /// The caller asked to stop.
    Cancelled,
}

/// Counts and times of one `generate` call.
#[derive(Clone, Copy, Debug)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated: usize,
    pub gen_time: Duration,
    pub finish: Finish,
}

impl GenStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    pub fn gen_tps(&self) -> f64 {
        self.generated as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }
}

impl<'m, 'a> Session<'m, 'a> {
    /// A session with room for `n_ctx` tokens, reading prompts `n_batch` tokens at a time.
    pub fn new(model: &'m Mixtral<'a>, n_ctx: usize, n_batch: usize, cache: CacheType) -> Self {
        let cfg = &model.cfg;
        let n_ctx = n_ctx.max(1);
        Session {
            model,
            kv: KvCache::new(cache, 1, cfg.n_layer, n_ctx, cfg.kv_dim()),
            scratch: Scratch::new(cfg, n_batch.clamp(1, n_ctx), n_ctx),
            tokens: Vec::with_capacity(n_ctx),
            batch: Vec::with_capacity(n_batch.clamp(1, n_ctx)),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    /// Tokens in the cache so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Bytes of the KV cache and scratch buffers.
    pub fn memory_bytes(&self) -> (usize, usize) {
        (self.kv.bytes(), self.scratch.bytes())
    }

    /// Forgets everything after the first `n` tokens (the cache rows beyond are overwritten later).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
    }

    /// Logits [n_vocab] after the last token fed.
    pub fn logits(&self) -> &[f32] {
        self.scratch.logits_row(0, self.model.cfg.n_vocab)
    }

    /// Appends `ids` to the sequence; [`Session::logits`] then holds the logits after the last one.
    pub fn feed(&mut self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::Model {
                what: "nothing to feed: the token list is empty".into(),
            });
        }
        let n_ctx = self.n_ctx();
        if self.tokens.len() + ids.len() > n_ctx {
            return Err(Error::ContextFull {
                needed: self.tokens.len() + ids.len(),
                n_ctx,
            });
        }
        for chunk in ids.chunks(self.scratch.n_batch) {
            self.batch.clear();
            let start = self.tokens.len();
            let last = chunk.len() - 1;
            self.batch
                .extend(BatchToken::run(chunk, 0, start, |i| i == last));
            self.model
                .forward(&self.batch, &mut self.kv, &mut self.scratch)?;
            self.tokens.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Feeds `prompt`, then samples up to `max_new` tokens, calling `on_token` with each (it
    /// returns `false` to stop). Stops at any id in `stop_ids`, which is not passed on.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        stop_ids: &[u32],
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<GenStats> {
        let t0 = Instant::now();
        self.feed(prompt)?;
        let mut next = sampler.sample(self.logits(), &self.tokens);
        let prompt_time = t0.elapsed();
        let t1 = Instant::now();
        let mut generated = 0;
        let finish = loop {
            if generated >= max_new {
                break Finish::Length;
            }
            if stop_ids.contains(&next) {
                break Finish::Stop;
            }
            generated += 1;
            if !on_token(next) {
                break Finish::Cancelled;
            }
            if generated >= max_new {
                break Finish::Length;
            }
            if self.tokens.len() >= self.n_ctx() {
                break Finish::Context;
            }
            self.feed(&[next])?;
            next = sampler.sample(self.logits(), &self.tokens);
        };
        Ok(GenStats {
            prompt_tokens: prompt.len(),
            prompt_time,
            generated,
            gen_time: t1.elapsed(),
            finish,
        })
    }
}
