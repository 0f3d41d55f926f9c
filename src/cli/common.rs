//! Pieces shared by the subcommands: model and tokenizer loading, thread pool, sampling flags.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use smoe::gguf::GgufFile;
use smoe::model::pager::rss;
use smoe::model::{Config, LoadOptions, MemBudget, Mixtral};
use smoe::sampler::SamplerConfig;
use smoe::tokenizer::{Tokenizer, Vocab};

/// Flags every model-running command takes.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// GGUF model file (Mixtral-style: architecture `llama` with experts). Default: the small
    /// Shakespeare Mixtral that ships with smoe (models/tiny-shakespeare-q8_0.gguf).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Use this tokenizer.json instead of the vocabulary stored in the GGUF file.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Worker threads (default: the number of physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub mem: MemArgs,
}

/// Memory flags: how much of the model may stay resident.
#[derive(Args, Debug, Clone)]
pub struct MemArgs {
    /// Memory the weights may keep resident, e.g. 12G, 800M, or "off" for plain mmap. Default:
    /// what the machine (or its memory cgroup) can spare. When the file is larger, experts are
    /// paged: the router's choices are read ahead, the next layer's are predicted, and the least
    /// useful experts are released.
    #[arg(long = "mem-budget", value_parser = parse_budget, default_value = "auto")]
    pub mem_budget: MemBudget,
    /// Pin the dense weights (attention, norms, routers, embeddings, output) in memory.
    #[arg(long)]
    pub mlock_dense: bool,
}

impl MemArgs {
    /// Load options leaving `reserve` bytes for the KV cache and scratch (plus a margin).
    pub fn load_options(&self, reserve: u64) -> LoadOptions {
        LoadOptions {
            mem_budget: self.mem_budget,
            mlock_dense: self.mlock_dense,
            reserve: reserve + (256 << 20),
        }
    }
}

/// "auto", "off", or a size with an optional K/M/G/T suffix (powers of 1024).
pub fn parse_budget(s: &str) -> std::result::Result<MemBudget, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => return Ok(MemBudget::Auto),
        "off" | "none" => return Ok(MemBudget::Off),
        _ => {}
    }
    let t = s.trim().trim_end_matches(['b', 'B']);
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 12G, 800M, auto, off)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("'{s}' is not a size"));
    }
    Ok(MemBudget::Bytes((v * mult as f64) as u64))
}

/// One line about memory: resident anonymous vs file-backed bytes, and the pager's state.
pub fn memory_report(model: &Mixtral) -> String {
    let mut line = match rss() {
        Some((anon, file)) => format!(
            "memory: {:.0} MiB anonymous, {:.0} MiB file-backed (mapped weights)",
            anon as f64 / 1048576.0,
            file as f64 / 1048576.0
        ),
        None => "memory: unknown".into(),
    };
    if let Some(p) = &model.pager {
        let st = p.stats();
        line += &format!(
            " | paging experts within {:.0} MiB: hit rate {:.1}%, {} read ahead, {} released, \
             predictions {:.0}% right",
            p.budget() as f64 / 1048576.0,
            st.hit_rate() * 100.0,
            st.prefetched,
            st.released,
            st.prediction_precision() * 100.0
        );
    }
    line
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

/// The model that ships with smoe, used when no `-m` is given.
pub const DEFAULT_MODEL: &str = "models/tiny-shakespeare-q8_0.gguf";

/// Where the default model may be, in order: beside the executable (an installed copy with its
/// `models/` folder), two levels up from it (`target/release/smoe` in a clone), and the source tree
/// the binary was built from.
pub fn default_model_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        out.push(dir.join(DEFAULT_MODEL));
        if let Some(up) = dir.parent().and_then(Path::parent) {
            out.push(up.join(DEFAULT_MODEL));
        }
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL));
    out
}

impl ModelArgs {
    /// The `-m` file, or the default model (saying so on stderr); an error lists where it looked.
    pub fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.model {
            return Ok(p.clone());
        }
        let exe = std::env::current_exe().ok();
        let candidates = default_model_candidates(exe.as_deref());
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => {
                eprintln!(
                    "smoe: no -m given: using the default model {} (a small Mixtral trained on \
                     Shakespeare; see models/README.md)",
                    p.display()
                );
                Ok(p.clone())
            }
            None => bail!(
                "no model given (-m FILE.gguf), and the default model {DEFAULT_MODEL} is not in {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Opens the model file (`-m` or the default) and builds its tokenizer; returns the seconds it took.
pub fn open_model(args: &ModelArgs) -> Result<(GgufFile, Tokenizer, f64)> {
    let t0 = Instant::now();
    let path = args.path()?;
    let file = GgufFile::open(&path).with_context(|| format!("loading {}", path.display()))?;
    let tok = load_tokenizer(&file, args.tokenizer.as_deref())?;
    Ok((file, tok, t0.elapsed().as_secs_f64()))
}

pub fn load_tokenizer(file: &GgufFile, json: Option<&Path>) -> Result<Tokenizer> {
    Ok(match json {
        Some(p) => Tokenizer::from_tokenizer_json(p, None)?,
        None => Tokenizer::from_vocab(&Vocab::from_gguf(file)?)?,
    })
}

/// Bytes of an f16 KV cache for one sequence of `n_ctx` tokens plus the forward scratch (roughly),
/// what the memory budget must leave free beside the weights.
pub fn kv_and_scratch_bytes(cfg: &Config, n_ctx: usize, n_batch: usize) -> u64 {
    let kv = 2 * cfg.n_layer * n_ctx * cfg.kv_dim() * 2;
    let scratch =
        n_batch * (cfg.n_vocab + 4 * cfg.n_embd + 3 * cfg.n_ff) * 4 + cfg.n_head * n_ctx * 4;
    (kv + scratch) as u64
}

/// The text-over-chunks flags `perplexity` and `imatrix` share (llama-perplexity's names).
#[derive(Args, Debug)]
pub struct ChunkArgs {
    /// The text file to run.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
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
    pub cache_type: smoe::model::CacheType,
}

/// Loads the model and tokenizes the chunk text file: what `perplexity` and `imatrix` start with.
pub fn open_for_chunks(m: &ModelArgs, c: &ChunkArgs) -> Result<(GgufFile, Tokenizer, Vec<u32>)> {
    init_threads(m.threads)?;
    let (file, tok, _) = open_model(m)?;
    let text = std::fs::read_to_string(&c.file)
        .with_context(|| format!("reading {}", c.file.display()))?;
    let tokens = tok.encode(&text, true)?;
    eprintln!("smoe: {} tokens; chunks of {}", tokens.len(), c.ctx);
    Ok((file, tok, tokens))
}
