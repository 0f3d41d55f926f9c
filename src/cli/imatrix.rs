//! `smoe imatrix`: collect an importance matrix over a text, as llama-imatrix does.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use smoe::imatrix::{collect, ImatrixParams};
use smoe::model::{CacheType, Mixtral};

use super::common::{init_threads, open_model, ModelArgs};

#[derive(Args, Debug)]
pub struct ImatrixArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to run (calibration data).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Where to write the imatrix GGUF (llama.cpp's format; llama-quantize reads it).
    #[arg(short = 'o', long = "output", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Use at most this many chunks (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Tokens per forward pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch: usize,
    /// KV cache element type: f16 (default, as llama.cpp) or f32.
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: CacheType,
    /// Also collect statistics for the output matrix (llama-imatrix --process-output).
    #[arg(long)]
    pub process_output: bool,
}

pub fn run(a: ImatrixArgs) -> Result<()> {
    init_threads(a.model.threads)?;
    let (file, tok, _) = open_model(&a.model)?;
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(0))?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let tokens = tok.encode(&text, true)?;
    eprintln!("smoe: {} tokens; chunks of {}", tokens.len(), a.ctx);
    let params = ImatrixParams {
        n_ctx: a.ctx,
        max_chunks: a.chunks.unwrap_or(0),
        n_batch: a.batch,
        cache: a.cache_type,
        process_output: a.process_output,
    };
    let r = collect(&model, &tokens, tok.bos(), params, |i, p| {
        eprint!("[{}]{p:.4} ", i + 1);
    })?;
    eprintln!();
    let unused = r.collector.unused_experts();
    if !unused.is_empty() {
        eprintln!(
            "smoe: {} (tensor, expert) pairs never fired; they keep a neutral importance of 1:",
            unused.len()
        );
        for (name, e) in unused.iter().take(16) {
            eprintln!("  {name} expert {e}");
        }
    }
    let m = r.collector.to_imatrix(
        vec![a.file.display().to_string()],
        r.n_chunks as u32,
        a.ctx as u32,
    );
    m.write(&a.output)?;
    eprintln!(
        "smoe: wrote {} ({} entries, {} chunks); perplexity over the chunks {:.4}",
        a.output.display(),
        m.entries.len(),
        r.n_chunks,
        r.ppl
    );
    Ok(())
}
