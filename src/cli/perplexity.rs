//! `smoe perplexity`: llama-perplexity's measure on a text file.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use smoe::model::Mixtral;
use smoe::perplexity::{perplexity, PerplexityParams};

use super::common::{open_for_chunks, ChunkArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub chunk: ChunkArgs,
    /// Print one JSON object with the per-chunk running values.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    let (file, tok, tokens) = open_for_chunks(&a.model, &a.chunk)?;
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(0))?;
    let params = PerplexityParams {
        n_ctx: a.chunk.ctx,
        max_chunks: a.chunk.chunks.unwrap_or(0),
        n_batch: a.chunk.batch,
        cache: a.chunk.cache_type,
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
