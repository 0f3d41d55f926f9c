//! Offline batch completion (`smoe batch`): many requests through one model with continuous
//! batching, each finished record stored durably at once, so an interrupted job resumes where it
//! stopped.
//!
//! - [`input`]: JSONL / text files / folders → [`Request`]s (bad ones kept with the reason);
//! - [`engine`]: the step loop over `n_seq` KV cache slots;
//! - [`output`]: the JSONL file or the folder of `.txt` files, with resume;
//! - [`run`]: ties them together — shard, skip what is done, admit requests as slots free up,
//!   write each record as its sequence ends.

pub mod engine;
pub mod input;
pub mod output;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::Value;

pub use engine::{Done, Engine, EngineConfig, Finish, Job};
pub use input::{read_inputs, Prompt, Request, RequestBody};
pub use output::{DirSink, JsonlSink, Record, Resume, Sink};

use crate::sampler::SamplerConfig;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// This process's part of the requests: those whose index (in input order) is `index` mod `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `I/N` with 0 ≤ I < N (0-based, like `SLURM_ARRAY_TASK_ID` from `--array=0-…` and
    /// Kubernetes' `JOB_COMPLETION_INDEX`).
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("shard '{s}' is not I/N with 0 <= I < N");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse().map_err(|_| bad())?;
        let count = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub fn contains(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

/// Defaults for every request (a request's own fields override them) and the shard to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub shard: Shard,
}

/// What happens, for progress display.
#[derive(Debug)]
pub enum Event<'r> {
    /// Before the first step: requests to run in this shard, and those already done earlier.
    Plan { todo: usize, skipped: usize },
    /// After each forward step: tokens sampled in it.
    Step { tokens: usize },
    /// A request finished (or failed); it is already stored.
    Record(&'r Record),
}

/// Totals of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Requests in this shard.
    pub requests: usize,
    /// Already done by an earlier run.
    pub skipped: usize,
    pub ok: usize,
    pub failed: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub seconds: f64,
    /// Stopped by the caller before the end.
    pub cancelled: bool,
}

impl Summary {
    pub fn tokens_per_second(&self) -> f64 {
        self.completion_tokens as f64 / self.seconds.max(1e-9)
    }
}

/// Runs `requests` (this shard's, minus those `sink` already has) through `engine`, storing each
/// record in `sink` as soon as it is done. Stops between steps once `cancel` is set; sequences in
/// flight are then dropped (a re-run does them).
pub fn run(
    engine: &mut Engine,
    tok: &Tokenizer,
    requests: Vec<Request>,
    opts: &Options,
    sink: &mut dyn Sink,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary> {
    let t0 = Instant::now();
    let requests = mark_duplicates(requests);
    let mut summary = Summary::default();
    let mut todo = Vec::new();
    for (i, req) in requests.into_iter().enumerate() {
        if !opts.shard.contains(i) {
            continue;
        }
        summary.requests += 1;
        if sink.is_done(&req) {
            summary.skipped += 1;
        } else {
            todo.push(req);
        }
    }
    on_event(Event::Plan {
        todo: todo.len(),
        skipped: summary.skipped,
    });
    let n_ctx = engine.config().n_ctx;
    let mut queue = 0..todo.len();
    loop {
        if cancel.load(Ordering::Relaxed) {
            engine.abort_all();
            summary.cancelled = true;
            break;
        }
        while engine.has_free_slot() {
            let Some(i) = queue.next() else { break };
            match prepare(&todo[i], i, tok, opts, n_ctx) {
                Ok(job) => engine.admit(job)?,
                Err(e) => store(Record::failed(&todo[i], e), sink, &mut summary, on_event)?,
            }
        }
        if engine.n_active() == 0 {
            break;
        }
        let tokens = engine.step(|d: Done| {
            let rec = Record {
                id: todo[d.tag].id.clone(),
                at: todo[d.tag].origin(),
                text: d.text,
                prompt_tokens: d.prompt_tokens,
                completion_tokens: d.completion_tokens,
                finish_reason: match d.finish {
                    Finish::Stop => "stop",
                    Finish::Length => "length",
                },
                error: None,
                seconds: d.seconds,
            };
            store(rec, sink, &mut summary, on_event)
        })?;
        on_event(Event::Step { tokens });
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// Stores `rec` and counts it.
fn store(
    rec: Record,
    sink: &mut dyn Sink,
    summary: &mut Summary,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    sink.write(&rec)?;
    if rec.is_error() {
        summary.failed += 1;
    } else {
        summary.ok += 1;
        summary.prompt_tokens += rec.prompt_tokens;
        summary.completion_tokens += rec.completion_tokens;
    }
    on_event(Event::Record(&rec));
    Ok(())
}

/// A request whose id was seen before becomes an error (without an id, so it does not stand for
/// the first one when resuming).
fn mark_duplicates(mut requests: Vec<Request>) -> Vec<Request> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for req in &mut requests {
        if req.id == Value::Null {
            continue;
        }
        let key = req.id.to_string();
        if let Some(first) = seen.get(&key) {
            req.body = Err(format!("duplicate id {key} (first at {first})"));
            req.id = Value::Null;
        } else {
            seen.insert(key, req.origin());
        }
    }
    requests
}

/// The job of a request: its prompt tokenized, its settings over the defaults.
fn prepare(
    req: &Request,
    tag: usize,
    tok: &Tokenizer,
    opts: &Options,
    n_ctx: usize,
) -> std::result::Result<Job, String> {
    let body = req.body.as_ref().map_err(Clone::clone)?;
    let ids = match &body.prompt {
        Prompt::Text(t) => tok.encode(t, tok.add_bos()),
        Prompt::Chat(m) => tok
            .render_chat(m, true)
            .and_then(|text| tok.encode(&text, false)),
    }
    .map_err(|e: Error| e.to_string())?;
    if ids.is_empty() {
        return Err("the prompt is empty (and the model adds no BOS token)".into());
    }
    if ids.len() >= n_ctx {
        return Err(format!(
            "the prompt has {} tokens, which does not leave room in the context of {n_ctx} (raise --ctx)",
            ids.len()
        ));
    }
    let d = &opts.sampler;
    let sampler = SamplerConfig {
        temperature: body.temperature.unwrap_or(d.temperature),
        top_k: body.top_k.unwrap_or(d.top_k),
        top_p: body.top_p.unwrap_or(d.top_p),
        min_p: body.min_p.unwrap_or(d.min_p),
        seed: body.seed.unwrap_or(d.seed),
        ..d.clone()
    };
    if !(sampler.temperature.is_finite() && sampler.top_p.is_finite() && sampler.min_p.is_finite())
    {
        return Err("temperature, top_p and min_p must be finite numbers".into());
    }
    Ok(Job {
        tag,
        prompt: ids,
        max_tokens: body.max_tokens.unwrap_or(opts.max_tokens),
        sampler,
        stop: body.stop.clone(),
    })
}
