//! The continuous-batching engine: up to `n_seq` sequences, each in its own KV cache slot, advance
//! together. Every [`Engine::step`] is one forward call holding the next token of every decoding
//! sequence plus a chunk of the prompts still being read; a finished sequence frees its slot at once,
//! and the caller admits the next request into it before the following step.
//!
//! The forward pass gives each token the same result whatever else is in the batch (fixed reduction
//! orders), and each sequence has its own seeded sampler, so a completion does not depend on what it
//! was batched with: it equals [`crate::generate::Session::generate`] on that prompt alone.

use std::time::Instant;

use crate::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::{Error, Result};

/// Sizes of an engine, fixed at creation.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Sequences decoded together (KV cache slots).
    pub n_seq: usize,
    /// Context of each slot, in tokens (prompt + completion).
    pub n_ctx: usize,
    /// Prompt tokens read per step, next to the decoding sequences' tokens.
    pub n_chunk: usize,
    pub cache: CacheType,
}

/// One completion to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// The caller's name for the job, handed back in [`Done`].
    pub tag: usize,
    /// [n_prompt] token ids, 1 ≤ n_prompt < n_ctx.
    pub prompt: Vec<u32>,
    /// Tokens to generate at most (as `smoe run -n`).
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop when the completion contains one of these; it is cut from the text.
    pub stop: Vec<String>,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// End of sequence token, or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

/// A finished job.
#[derive(Clone, Debug)]
pub struct Done {
    pub tag: usize,
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
    /// From admission to the end.
    pub seconds: f64,
}

/// A sequence in a slot.
#[derive(Debug)]
struct Active<'t> {
    job: Job,
    sampler: Sampler,
    dec: StreamDecoder<'t>,
    text: String,
    /// Prompt tokens already in the cache.
    fed: usize,
    /// The sampled token to feed in the next step (decoding), `None` while the prompt is read.
    next: Option<u32>,
    generated: usize,
    /// A stop string was found (and cut from `text`).
    cut: bool,
    started: Instant,
}

#[derive(Debug)]
struct Slot<'t> {
    /// [≤ n_ctx] every token in this slot's cache, in position order; capacity n_ctx, reused.
    tokens: Vec<u32>,
    active: Option<Active<'t>>,
}

/// Continuous batching over one model; all memory is allocated in [`Engine::new`].
#[derive(Debug)]
pub struct Engine<'m, 'a, 't> {
    model: &'m Mixtral<'a>,
    tok: &'t Tokenizer,
    cfg: EngineConfig,
    kv: KvCache,
    scratch: Scratch,
    slots: Vec<Slot<'t>>,
    /// [≤ n_seq + n_chunk] the tokens of the current step.
    batch: Vec<BatchToken>,
    /// [≤ n_seq] slot of each logits row of the current step.
    owners: Vec<usize>,
    /// The text a sampled token completes, reused for every token.
    piece: String,
}

impl<'m, 'a, 't> Engine<'m, 'a, 't> {
    pub fn new(model: &'m Mixtral<'a>, tok: &'t Tokenizer, cfg: EngineConfig) -> Result<Self> {
        if cfg.n_seq == 0 || cfg.n_ctx < 2 || cfg.n_chunk == 0 {
            return Err(Error::Batch(format!(
                "engine needs at least 1 sequence, a context of 2 and a chunk of 1 (got {} sequences, context {}, chunk {})",
                cfg.n_seq, cfg.n_ctx, cfg.n_chunk
            )));
        }
        let m = &model.cfg;
        let n_batch = cfg.n_seq + cfg.n_chunk;
        Ok(Engine {
            model,
            tok,
            cfg,
            kv: KvCache::new(cfg.cache, cfg.n_seq, m.n_layer, cfg.n_ctx, m.kv_dim()),
            scratch: Scratch::new(m, n_batch, cfg.n_ctx),
            slots: (0..cfg.n_seq)
                .map(|_| Slot {
                    tokens: Vec::with_capacity(cfg.n_ctx),
                    active: None,
                })
                .collect(),
            batch: Vec::with_capacity(n_batch),
            owners: Vec::with_capacity(cfg.n_seq),
            piece: String::with_capacity(64),
        })
    }

    pub fn config(&self) -> EngineConfig {
        self.cfg
    }

    /// Bytes of the KV cache (all slots) and of the scratch buffers.
    pub fn memory_bytes(&self) -> (usize, usize) {
        (self.kv.bytes(), self.scratch.bytes())
    }

    /// Sequences in flight.
    pub fn n_active(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.active.is_none())
    }

    /// Puts `job` into a free slot; its prompt is read in the next steps.
    pub fn admit(&mut self, job: Job) -> Result<()> {
        let n_ctx = self.cfg.n_ctx;
        if job.prompt.is_empty() {
            return Err(Error::Batch("the prompt has no tokens".into()));
        }
        if job.prompt.len() >= n_ctx {
            return Err(Error::ContextFull {
                needed: job.prompt.len() + 1,
                n_ctx,
            });
        }
        let n_vocab = self.model.cfg.n_vocab;
        let Some(slot) = self.slots.iter_mut().find(|s| s.active.is_none()) else {
            return Err(Error::Batch("no free sequence slot".into()));
        };
        slot.tokens.clear();
        slot.active = Some(Active {
            sampler: Sampler::new(job.sampler.clone(), n_vocab),
            dec: self.tok.stream_decoder(),
            text: String::new(),
            fed: 0,
            next: None,
            generated: 0,
            cut: false,
            started: Instant::now(),
            job,
        });
        Ok(())
    }

    /// Drops every sequence in flight (their slots become free).
    pub fn abort_all(&mut self) {
        for s in &mut self.slots {
            s.active = None;
        }
    }

    /// One forward call: the next token of every decoding sequence, then prompt tokens of the
    /// sequences still reading theirs (oldest slot first) up to `n_chunk`. Calls `on_done` for each
    /// sequence that finished; returns the number of tokens sampled.
    pub fn step(&mut self, mut on_done: impl FnMut(Done) -> Result<()>) -> Result<usize> {
        self.batch.clear();
        self.owners.clear();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(Active { next: Some(id), .. }) = slot.active {
                self.batch.push(BatchToken {
                    id,
                    pos: slot.tokens.len(),
                    seq: i,
                    logits: true,
                });
                self.owners.push(i);
                slot.tokens.push(id);
            }
        }
        let mut budget = self.cfg.n_chunk;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            if budget == 0 {
                break;
            }
            if a.next.is_some() || a.fed == a.job.prompt.len() {
                continue;
            }
            let take = budget.min(a.job.prompt.len() - a.fed);
            for &id in &a.job.prompt[a.fed..a.fed + take] {
                a.fed += 1;
                let last = a.fed == a.job.prompt.len();
                self.batch.push(BatchToken {
                    id,
                    pos: slot.tokens.len(),
                    seq: i,
                    logits: last,
                });
                if last {
                    self.owners.push(i);
                }
                slot.tokens.push(id);
            }
            budget -= take;
        }
        if self.batch.is_empty() {
            return Ok(0);
        }
        self.model
            .forward(&self.batch, &mut self.kv, &mut self.scratch)?;
        let n_vocab = self.model.cfg.n_vocab;
        let (eos, n_ctx) = (self.tok.eos(), self.cfg.n_ctx);
        for (row, &i) in self.owners.iter().enumerate() {
            let slot = &mut self.slots[i];
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let id = a
                .sampler
                .sample(self.scratch.logits_row(row, n_vocab), &slot.tokens);
            // The same order of checks as `Session::generate`, so the same tokens come out.
            let finish = if a.job.max_tokens == 0 {
                Some(Finish::Length)
            } else if id == eos {
                Some(Finish::Stop)
            } else {
                a.generated += 1;
                a.dec.push_into(id, &mut self.piece)?;
                if a.push_text(&self.piece) {
                    Some(Finish::Stop)
                } else if a.generated >= a.job.max_tokens || slot.tokens.len() >= n_ctx {
                    Some(Finish::Length)
                } else {
                    None
                }
            };
            match finish {
                None => a.next = Some(id),
                Some(f) => {
                    if let Some(a) = slot.active.take() {
                        on_done(a.finish(f))?;
                    }
                }
            }
        }
        Ok(self.owners.len())
    }
}

impl Active<'_> {
    /// Appends `piece` to the text; true if a stop string appeared (the text is then cut before it).
    fn push_text(&mut self, piece: &str) -> bool {
        let before = self.text.len();
        self.text.push_str(piece);
        for stop in self.job.stop.iter().filter(|s| !s.is_empty()) {
            // Only a match that ends in the new piece is new.
            let mut from = before.saturating_sub(stop.len() - 1);
            while !self.text.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(at) = self.text[from..].find(stop.as_str()) {
                self.text.truncate(from + at);
                self.cut = true;
                return true;
            }
        }
        false
    }

    fn finish(mut self, mut finish: Finish) -> Done {
        if !self.cut {
            let tail = self.dec.finish();
            if self.push_text(&tail) {
                finish = Finish::Stop;
            }
        }
        Done {
            tag: self.job.tag,
            text: self.text,
            prompt_tokens: self.job.prompt.len(),
            completion_tokens: self.generated,
            finish,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}
