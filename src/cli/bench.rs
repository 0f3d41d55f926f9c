//! `smoe bench`: prompt-processing and generation speed, like llama-bench.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use smoe::bench::{bench, decode_bytes_per_token, BenchParams};
use smoe::gguf::GgufFile;
use smoe::model::{Config, Mixtral};
use smoe::quant::bandwidth::measure_read_gbps;

use super::common::{kv_and_scratch_bytes, memory_report, MemArgs};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: std::path::PathBuf,
    /// Prompt lengths to test (pp N), comma-separated; 0 for none.
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "64,256"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (tg N), comma-separated; 0 for none.
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
    /// Also measure the machine's memory read bandwidth and state generation as a fraction of
    /// the roofline (weight bytes per token ÷ bandwidth).
    #[arg(long)]
    pub bandwidth: bool,
    #[command(flatten)]
    pub mem: MemArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let file = GgufFile::open(&a.model)?;
    let cfg = Config::from_gguf(&file)?;
    let lens = || a.n_prompt.iter().chain(&a.n_gen).copied();
    let n_ctx = lens().max().unwrap_or(1);
    let reserve = kv_and_scratch_bytes(&cfg, n_ctx, a.n_prompt.iter().copied().max().unwrap_or(1));
    let model = Mixtral::load_with(&file, &a.mem.load_options(reserve))?;
    let threads = if a.threads.is_empty() {
        vec![num_cpus::get_physical()]
    } else {
        a.threads.clone()
    };
    let p = BenchParams {
        n_prompt: a.n_prompt.iter().copied().filter(|&n| n > 0).collect(),
        n_gen: a.n_gen.iter().copied().filter(|&n| n > 0).collect(),
        threads: threads.clone(),
        reps: a.reps.max(1),
    };
    let size = file.tensors().iter().map(|t| t.n_bytes()).sum::<u64>();
    let name = a
        .model
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !a.json {
        println!(
            "| model | size | threads | test | t/s | disk read/token | expert hits | busiest expert |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    }
    let results = bench(&model, &p, |r| {
        if !a.json {
            let disk = r
                .disk_bytes_per_token
                .map_or("-".into(), |b| format!("{:.1} MB", b / 1e6));
            let hits = r
                .expert_hit_rate
                .map_or("-".into(), |h| format!("{:.1}%", h * 100.0));
            let busiest = r
                .busiest_expert_share
                .map_or("-".into(), |h| format!("{:.1}%", h * 100.0));
            println!(
                "| {name} | {:.2} GB | {} | {} | {:.2} ± {:.2} | {disk} | {hits} | {busiest} |",
                size as f64 / 1e9,
                r.threads,
                r.test,
                r.tps_mean,
                r.tps_sd
            );
        }
    })?;
    let per_token = decode_bytes_per_token(&model);
    let mut roofline = Vec::new();
    if a.bandwidth {
        for &t in &threads {
            let gbps = measure_read_gbps(1 << 30, t)?;
            let max_tps = gbps * 1e9 / per_token as f64;
            let tg = results
                .iter()
                .filter(|r| r.threads == t && r.test.starts_with("tg"))
                .map(|r| r.tps_mean)
                .next();
            if !a.json {
                let frac = tg.map_or(String::new(), |v| {
                    format!(": tg at {:.0}% of it", 100.0 * v / max_tps)
                });
                println!("roofline, {t} threads: {gbps:.1} GB/s read ÷ {:.0} MB per token = {max_tps:.1} tok/s{frac}", per_token as f64 / 1e6);
            }
            roofline.push(json!({"threads": t, "read_gbps": gbps, "roofline_tps": max_tps, "tg_fraction": tg.map(|v| v / max_tps)}));
        }
    }
    // The kernel set that ran (SMOE_ISA may force one), and the best this CPU has.
    let isa = smoe_quant::kernels::kernels().isa.name();
    let detected = smoe_quant::kernels::detected().name();
    if a.json {
        println!(
            "{}",
            json!({ "model": name, "size_bytes": size, "decode_bytes_per_token": per_token, "kernels": isa, "results": results, "roofline": roofline })
        );
    } else {
        eprintln!("smoe: kernels: {isa} (best on this CPU: {detected})");
        eprintln!("smoe: {}", memory_report(&model));
    }
    Ok(())
}
