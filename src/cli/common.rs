//! Pieces shared by the subcommands: model and tokenizer loading, thread pool, sampling flags.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use smoe::gguf::GgufFile;
use smoe::sampler::SamplerConfig;
use smoe::tokenizer::{Tokenizer, Vocab};

/// Flags every model-running command takes.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// GGUF model file (Mixtral-style: architecture `llama` with experts).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Use this tokenizer.json instead of the vocabulary stored in the GGUF file.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Worker threads (default: the number of physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

/// Sampling flags (llama.cpp's names and defaults).
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens reaching this probability (1.0 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize tokens seen in the last 64 (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: from the clock; printed on stderr so a run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SampleArgs {
    pub fn config(&self) -> SamplerConfig {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed,
        }
    }
}

/// Sets the size of the global rayon pool (default: physical cores).
pub fn init_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.unwrap_or_else(num_cpus::get_physical).max(1);
    // A second call (tests, embedding) keeps the first pool.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(rayon::current_num_threads())
}

/// Opens the model file and builds its tokenizer; returns the seconds it took.
pub fn open_model(args: &ModelArgs) -> Result<(GgufFile, Tokenizer, f64)> {
    let t0 = Instant::now();
    let file =
        GgufFile::open(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let tok = load_tokenizer(&file, args.tokenizer.as_deref())?;
    Ok((file, tok, t0.elapsed().as_secs_f64()))
}

pub fn load_tokenizer(file: &GgufFile, json: Option<&Path>) -> Result<Tokenizer> {
    Ok(match json {
        Some(p) => Tokenizer::from_tokenizer_json(p, None)?,
        None => Tokenizer::from_vocab(&Vocab::from_gguf(file)?)?,
    })
}
