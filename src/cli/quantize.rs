//! `smoe quantize`: Hugging Face Mixtral folder → GGUF.

use std::path::PathBuf;

use anyhow::Context;
use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use smoe::convert::{quantize_with, ImatrixInput, OutType, QuantizeOptions};
use smoe::imatrix::Imatrix;

use super::common::init_threads;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Hugging Face model folder: config.json, model.safetensors (or shards with
    /// model.safetensors.index.json), tokenizer.json, tokenizer_config.json.
    pub input: PathBuf,
    /// The GGUF file to write.
    pub output: PathBuf,
    /// Weight type: q4_0, q8_0, f16, bf16, f32, or one of llama.cpp's K-quant mixes q2_k,
    /// q3_k_s, q3_k_m, q3_k_l, q4_k_m, q4_k_s, q5_k_m, q5_k_s, q6_k (per-tensor types as
    /// llama-quantize chooses them: Q6_K output, Q8_0 attn_k/attn_v with 8 experts, Q6_K for half
    /// the ffn_down layers in q4_k_m/q5_k_m, Q4_K ffn_down in q3_k_m...).
    /// Norms and the router stay f32; with q4_0, attn_k/attn_v and the output matrix use q8_0
    /// unless --pure. Rows too short for 256-element blocks fall back as llama.cpp's do.
    #[arg(long = "type", default_value = "q4_0")]
    pub ty: OutType,
    /// Importance matrix (GGUF from `smoe imatrix` or llama-imatrix, or llama.cpp's legacy
    /// imatrix.dat): the quantizers weigh each column's error by its mean squared activation,
    /// per expert for expert tensors.
    #[arg(long)]
    pub imatrix: Option<PathBuf>,
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
    let imatrix = match &a.imatrix {
        Some(p) => {
            let m = Imatrix::read(p).with_context(|| format!("reading imatrix {}", p.display()))?;
            // The legacy .dat format does not record the chunk size.
            let size = match m.chunk_size {
                0 => String::new(),
                n => format!(" of {n} tokens"),
            };
            eprintln!(
                "smoe: imatrix {}: {} entries from {} chunks{size}",
                p.display(),
                m.entries.len(),
                m.chunk_count,
            );
            Some((m, p))
        }
        None => None,
    };
    let s = quantize_with(
        &a.input,
        &a.output,
        QuantizeOptions {
            ty: a.ty,
            pure: a.pure,
        },
        imatrix.as_ref().map(|(m, p)| ImatrixInput {
            imatrix: m,
            path: p.as_path(),
        }),
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
