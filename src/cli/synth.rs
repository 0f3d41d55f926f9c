//! `smoe synth`: write a Mixtral-shaped model with random weights (for benchmarks).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use smoe::quant::GgmlType;
use smoe::synth::{synth, SynthOptions};
use smoe::tokenizer::Vocab;

use super::common::init_threads;

/// The real Mistral tokenizer, committed once under tests/fixtures (made by tools/make_tokenizer.py).
const TOKENIZER_JSON: &str = include_str!("../../tests/fixtures/tokenizer/tokenizer.json");
const TOKENIZER_CONFIG: &str = include_str!("../../tests/fixtures/tokenizer/tokenizer_config.json");

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// The GGUF file to write.
    pub output: PathBuf,
    /// Layers (Mixtral 8x7B has 32; 2 is enough to benchmark a step).
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Weight type of every matrix: q4_0, q8_0, f16, bf16 or f32.
    #[arg(long = "type", default_value = "q4_0")]
    pub ty: String,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skew the routers (0 = uniform, the worst case for an expert cache): a router bias from +S
    /// (expert 0) down to -S (expert 7), against logits of unit spread, so low-numbered experts
    /// are chosen more often, as in trained models (try 1 or 2).
    #[arg(long, default_value_t = 0.0)]
    pub router_skew: f32,
    /// Worker threads (default: the number of physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

pub fn run(a: SynthArgs) -> Result<()> {
    init_threads(a.threads)?;
    let ty = GgmlType::from_name(&a.ty).with_context(|| format!("unknown type '{}'", a.ty))?;
    // The vocabulary reader takes files: stage the embedded tokenizer in a private temp folder.
    let dir = std::env::temp_dir().join(format!("smoe-synth-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (tj, tc) = (
        dir.join("tokenizer.json"),
        dir.join("tokenizer_config.json"),
    );
    std::fs::write(&tj, TOKENIZER_JSON)?;
    std::fs::write(&tc, TOKENIZER_CONFIG)?;
    let vocab = Vocab::from_tokenizer_json(&tj, Some(&tc));
    let _ = std::fs::remove_dir_all(&dir);
    let vocab = vocab?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tensors",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !(a.router_skew.is_finite() && a.router_skew >= 0.0) {
        anyhow::bail!(
            "--router-skew must be a finite number >= 0, got {}",
            a.router_skew
        );
    }
    let opts = SynthOptions {
        router_skew: a.router_skew,
        ..SynthOptions::mixtral(a.layers, ty, a.seed)
    };
    let bytes = synth(&a.output, &opts, &vocab, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "smoe: wrote {} ({:.2} GB, {} layers, {ty})",
        a.output.display(),
        bytes as f64 / 1e9,
        a.layers
    );
    Ok(())
}
