//! `smoe quantize`: Hugging Face Mixtral folder → GGUF.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use smoe::convert::{quantize, OutType, QuantizeOptions};

use super::common::init_threads;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Hugging Face model folder: config.json, model.safetensors (or shards with
    /// model.safetensors.index.json), tokenizer.json, tokenizer_config.json.
    pub input: PathBuf,
    /// The GGUF file to write.
    pub output: PathBuf,
    /// Weight type: q4_0, q8_0, f16, bf16 or f32. Norms and the router stay f32; with q4_0,
    /// attn_k/attn_v and the output matrix use q8_0 unless --pure.
    #[arg(long = "type", default_value = "q4_0")]
    pub ty: OutType,
    /// Put every matrix in the chosen type (no per-tensor exceptions), as llama-quantize --pure.
    #[arg(long)]
    pub pure: bool,
    /// Worker threads (default: the number of physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    init_threads(a.threads)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let s = quantize(
        &a.input,
        &a.output,
        QuantizeOptions {
            ty: a.ty,
            pure: a.pure,
        },
        &progress,
    )?;
    bar.finish_and_clear();
    let secs = s.elapsed.as_secs_f64();
    eprintln!(
        "smoe: wrote {} ({} tensors): {:.2} GB in → {:.2} GB out in {:.1} s ({:.2} GB/s)",
        s.output.display(),
        s.n_tensors,
        s.input_bytes as f64 / 1e9,
        s.output_bytes as f64 / 1e9,
        secs,
        s.input_bytes as f64 / 1e9 / secs.max(1e-9)
    );
    Ok(())
}
