//! `smoe imatrix`: collect an importance matrix over a text, as llama-imatrix does.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use smoe::imatrix::{collect, ImatrixParams};
use smoe::model::Mixtral;

use super::common::{open_for_chunks, ChunkArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct ImatrixArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to run (calibration data) and how to chunk it.
    #[command(flatten)]
    pub chunk: ChunkArgs,
    /// Where to write the imatrix GGUF (llama.cpp's format; llama-quantize reads it).
    #[arg(short = 'o', long = "output", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// Also collect statistics for the output matrix (llama-imatrix --process-output).
    #[arg(long)]
    pub process_output: bool,
}

pub fn run(a: ImatrixArgs) -> Result<()> {
    let (file, tok, tokens) = open_for_chunks(&a.model, &a.chunk)?;
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(0))?;
    let params = ImatrixParams {
        n_ctx: a.chunk.ctx,
        max_chunks: a.chunk.chunks.unwrap_or(0),
        n_batch: a.chunk.batch,
        cache: a.chunk.cache_type,
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
        vec![a.chunk.file.display().to_string()],
        r.n_chunks as u32,
        a.chunk.ctx as u32,
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
