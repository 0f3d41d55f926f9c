//! `smoe perplexity`: llama-perplexity's measure on a text file.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use smoe::model::{CacheType, Mixtral};
use smoe::perplexity::{perplexity, PerplexityParams};

use super::common::{init_threads, open_model, ModelArgs};

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Tokens per forward pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch: usize,
    /// KV cache element type: f16 (default, as llama.cpp) or f32.
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: CacheType,
    /// Print one JSON object with the per-chunk running values.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    init_threads(a.model.threads)?;
    let (file, tok, _) = open_model(&a.model)?;
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(0))?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let tokens = tok.encode(&text, true)?;
    eprintln!("smoe: {} tokens; chunks of {}", tokens.len(), a.ctx);
    let params = PerplexityParams {
        n_ctx: a.ctx,
        max_chunks: a.chunks.unwrap_or(0),
        n_batch: a.batch,
        cache: a.cache_type,
    };
    let quiet = a.json;
    let r = perplexity(&model, &tokens, tok.bos(), params, |i, p| {
        if !quiet {
            eprint!("[{}]{p:.4} ", i + 1);
        }
    })?;
    if a.json {
        println!(
            "{}",
            json!({"n_ctx": r.n_ctx, "chunks": r.chunks, "n_scored": r.n_scored, "perplexity": r.ppl})
        );
    } else {
        eprintln!();
        println!("perplexity: {:.4}", r.ppl);
    }
    Ok(())
}
