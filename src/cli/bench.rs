//! `smoe bench`: prompt-processing and generation speed, like llama-bench.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use smoe::bench::{bench, BenchParams};
use smoe::gguf::GgufFile;
use smoe::model::Mixtral;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: std::path::PathBuf,
    /// Prompt lengths to test (pp N), comma-separated.
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "64,256"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (tg N), comma-separated.
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "32"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts, comma-separated (default: physical cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let file = GgufFile::open(&a.model)?;
    let model = Mixtral::load(&file)?;
    let threads = if a.threads.is_empty() {
        vec![num_cpus::get_physical()]
    } else {
        a.threads.clone()
    };
    let p = BenchParams {
        n_prompt: a.n_prompt.clone(),
        n_gen: a.n_gen.clone(),
        threads,
        reps: a.reps.max(1),
    };
    let size_gb = file.tensors().iter().map(|t| t.n_bytes()).sum::<u64>() as f64 / 1e9;
    if !a.json {
        println!("| model | size | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: | ---: |");
    }
    let name = a
        .model
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let results = bench(&model, &p, |r| {
        if !a.json {
            println!(
                "| {name} | {size_gb:.2} GB | {} | {} | {:.2} ± {:.2} |",
                r.threads, r.test, r.tps_mean, r.tps_sd
            );
        }
    })?;
    if a.json {
        println!(
            "{}",
            json!({ "model": name, "size_bytes": (size_gb * 1e9) as u64, "results": results })
        );
    }
    Ok(())
}
