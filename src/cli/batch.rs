//! `smoe batch`: complete many prompts from files, with continuous batching; resumable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use smoe::batch::{self, DirSink, Engine, EngineConfig, Event, JsonlSink, Options, Shard, Sink};
use smoe::generate::DEFAULT_N_BATCH;
use smoe::model::{CacheType, Config, Mixtral};

use super::common::{init_threads, kv_and_scratch_bytes, open_model, ModelArgs, SampleArgs};

#[derive(Args, Debug)]
#[command(
    after_help = "Inputs, by name: *.jsonl = one JSON request a line ({\"id\", \"prompt\"} or \
{\"id\", \"messages\"}, optional max_tokens, temperature, top_p, top_k, min_p, seed, stop); \
*.txt = one prompt per file (id = file name); a folder = its *.txt files; any other name = one \
prompt a line (id = line number).\n\nRe-running the same command skips the requests already in \
the output."
)]
pub struct BatchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input files or folders.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Append one JSON record per request to this file.
    #[arg(short = 'o', long = "output", conflicts_with = "out_dir")]
    pub output: Option<PathBuf>,
    /// Write one <id>.txt completion per request into this folder.
    #[arg(long = "out-dir")]
    pub out_dir: Option<PathBuf>,
    /// Sequences decoded together (each has its own KV cache slot).
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Tokens to generate at most (a request's max_tokens overrides it).
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Context of each sequence in tokens (prompt + completion); default: min(4096, the model's).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// KV cache element type: f16 (default) or f32.
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: CacheType,
    /// Prompt tokens read per step, next to the decoding sequences' tokens.
    #[arg(short = 'b', long = "batch-size", default_value_t = DEFAULT_N_BATCH)]
    pub batch: usize,
    /// Run only part I of N of the requests (0-based; request k belongs to part k mod N).
    #[arg(long)]
    pub shard: Option<Shard>,
}

pub fn run(a: BatchArgs) -> Result<()> {
    let sink: Box<dyn Sink> = match (&a.output, &a.out_dir) {
        (Some(p), None) => {
            let (sink, resume) = JsonlSink::open(p)?;
            if resume.records > 0 || resume.cut_bytes > 0 {
                eprintln!(
                    "smoe: {} already holds {} records{}",
                    p.display(),
                    resume.records,
                    if resume.cut_bytes > 0 {
                        format!("; cut a torn last line of {} bytes", resume.cut_bytes)
                    } else {
                        String::new()
                    }
                );
            }
            Box::new(sink)
        }
        (None, Some(d)) => Box::new(DirSink::open(d)?),
        _ => bail!("give an output: -o OUT.jsonl or --out-dir DIR"),
    };
    let requests = batch::read_inputs(&a.inputs)?;
    let threads = init_threads(a.model.threads)?;
    let (file, tok, _) = open_model(&a.model)?;
    let mcfg = Config::from_gguf(&file)?;
    let n_ctx = a.ctx.unwrap_or(mcfg.n_ctx_train.min(4096));
    let reserve = a.parallel.max(1) as u64 * kv_and_scratch_bytes(&mcfg, n_ctx, a.batch.max(1));
    let model = Mixtral::load_with(&file, &a.model.mem.load_options(reserve))?;
    let opts = Options {
        max_tokens: a.n_predict,
        sampler: a.sample.config(),
        shard: a.shard.unwrap_or_default(),
    };
    let cfg = EngineConfig {
        n_seq: a.parallel.max(1),
        n_ctx,
        n_chunk: a.batch.max(1),
        cache: a.cache_type,
    };
    let mut engine = Engine::new(&model, &tok, cfg)?;
    let (kv, scratch) = engine.memory_bytes();
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "smoe: {} | {threads} threads | {} sequences x {n_ctx} context | KV cache {:.1} MiB + scratch {:.1} MiB | seed {}",
        file.path().display(),
        cfg.n_seq,
        mib(kv),
        mib(scratch),
        opts.sampler.seed
    );
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} requests | {msg} | {elapsed_precise} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let mut generated = 0usize;
    let mut on_event = |e: Event| match e {
        Event::Plan { todo, skipped } => {
            if skipped > 0 {
                bar.suspend(|| eprintln!("smoe: {skipped} requests already done, skipped"));
            }
            bar.set_length(todo as u64);
        }
        Event::Step { tokens } => {
            generated += tokens;
            let tps = generated as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{generated} tokens, {tps:.1} tok/s"));
        }
        Event::Record(r) => {
            if let Some(err) = &r.error {
                bar.suspend(|| eprintln!("smoe: request {} failed: {err}", r.id));
            }
            bar.inc(1);
        }
    };
    let mut sink = sink;
    let s = batch::run(
        &mut engine,
        &tok,
        requests,
        &opts,
        sink.as_mut(),
        &cancel,
        &mut on_event,
    )?;
    bar.finish_and_clear();
    eprintln!(
        "smoe: {} requests ({} skipped as done) | {} ok, {} failed | {} prompt + {} generated tokens | {:.1} tok/s | {:.1} s",
        s.requests,
        s.skipped,
        s.ok,
        s.failed,
        s.prompt_tokens,
        s.completion_tokens,
        s.tokens_per_second(),
        s.seconds
    );
    if s.cancelled {
        bail!("interrupted; finished records are stored, re-run the same command to go on");
    }
    if s.failed > 0 {
        bail!("{} of {} requests failed", s.failed, s.requests);
    }
    Ok(())
}
