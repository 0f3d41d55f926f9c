//! `smoe run`: complete a prompt, streaming the completion to stdout.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use smoe::generate::{Session, DEFAULT_N_BATCH};
use smoe::model::{CacheType, Config, Mixtral};
use smoe::sampler::Sampler;
use smoe::tokenizer::ChatMessage;

use super::common::{
    init_threads, kv_and_scratch_bytes, memory_report, open_model, ModelArgs, SampleArgs,
};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Context size in tokens (prompt + completion); default: min(4096, the model's).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Wrap the prompt in the model's chat template (Mixtral-Instruct's `[INST]` if it has none).
    #[arg(long)]
    pub chat: bool,
    /// Print one JSON object (prompt and generated ids, text, timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// KV cache element type: f16 (default) or f32.
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: CacheType,
    /// Report memory use (anonymous vs file-backed) and the expert pager's counters on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Prompt tokens per forward pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = DEFAULT_N_BATCH)]
    pub batch: usize,
}

pub fn run(a: RunArgs) -> Result<()> {
    let threads = init_threads(a.model.threads)?;
    let (file, tok, load_s) = open_model(&a.model)?;
    let cfg = Config::from_gguf(&file)?;
    let n_ctx = a.ctx.unwrap_or(cfg.n_ctx_train.min(4096));
    let reserve = kv_and_scratch_bytes(&cfg, n_ctx, a.batch);
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(reserve))?;
    let prompt_ids = if a.chat {
        let text = tok.render_chat(&[ChatMessage::new("user", a.prompt.clone())], true)?;
        tok.encode(&text, false)?
    } else {
        tok.encode(&a.prompt, tok.add_bos())?
    };
    if prompt_ids.is_empty() {
        bail!("the prompt is empty (and the model adds no BOS token)");
    }
    if prompt_ids.len() >= n_ctx {
        bail!("the prompt has {} tokens, which does not leave room in the context of {n_ctx} (raise --ctx)", prompt_ids.len());
    }
    let cfg = a.sample.config();
    eprintln!(
        "smoe: {} | {} layers, {} experts ({} used) | {threads} threads | seed {}",
        file.path().display(),
        model.cfg.n_layer,
        model.cfg.n_expert,
        model.cfg.n_expert_used,
        cfg.seed
    );
    let mut sampler = Sampler::new(cfg, model.cfg.n_vocab);
    let mut session = Session::new(&model, n_ctx, a.batch, a.cache_type);
    let mut dec = tok.stream_decoder();
    let mut out = std::io::stdout().lock();
    let mut generated = Vec::new();
    let mut text = String::new();
    let mut write_err = None;
    let mut piece = String::with_capacity(64);
    let stats = session.generate(&prompt_ids, a.n_predict, &mut sampler, &[tok.eos()], |id| {
        generated.push(id);
        match dec.push_into(id, &mut piece) {
            Ok(()) if a.json => text.push_str(&piece),
            Ok(()) => {
                if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                    write_err = Some(e);
                    return false;
                }
            }
            Err(e) => eprintln!("\nsmoe: cannot decode token {id}: {e}"),
        }
        true
    })?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    let tail = dec.finish();
    let timings = json!({
        "load_ms": load_s * 1e3,
        "prompt_tokens": stats.prompt_tokens,
        "prompt_ms": stats.prompt_time.as_secs_f64() * 1e3,
        "prompt_tokens_per_s": stats.prompt_tps(),
        "generated_tokens": stats.generated,
        "generation_ms": stats.gen_time.as_secs_f64() * 1e3,
        "generation_tokens_per_s": stats.gen_tps(),
    });
    if a.json {
        text.push_str(&tail);
        let obj = json!({
            "prompt_tokens": prompt_ids,
            "tokens": generated,
            "text": text,
            "finish_reason": format!("{:?}", stats.finish).to_lowercase(),
            "timings": timings,
        });
        writeln!(out, "{obj}")?;
    } else {
        write!(out, "{tail}")?;
        writeln!(out)?;
    }
    eprintln!(
        "smoe: load {:.0} ms | prompt {} tokens, {:.1} tok/s | generation {} tokens, {:.1} tok/s",
        load_s * 1e3,
        stats.prompt_tokens,
        stats.prompt_tps(),
        stats.generated,
        stats.gen_tps()
    );
    if a.verbose {
        let (kv, scratch) = session.memory_bytes();
        eprintln!(
            "smoe: KV cache {:.1} MiB, scratch {:.1} MiB",
            kv as f64 / 1048576.0,
            scratch as f64 / 1048576.0
        );
        eprintln!("smoe: {}", memory_report(&model));
    }
    Ok(())
}
