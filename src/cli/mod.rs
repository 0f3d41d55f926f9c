//! Subcommands, one file each. Thin: parse, call the library, print.

mod batch;
mod bench;
mod chat;
mod common;
mod imatrix;
mod inspect;
mod perplexity;
mod quantize;
mod run;
mod synth;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "smoe",
    version,
    about = "CPU inference for sparse Mixture-of-Experts models (Mixtral) from GGUF files",
    long_about = "CPU inference for sparse Mixture-of-Experts models (Mixtral) from GGUF files.\n\n\
        Weights are memory-mapped and read in place; only the experts the router picks are read."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Complete a prompt, streaming the completion to stdout.
    Run(run::RunArgs),
    /// Complete many prompts from files (JSONL, text, folders) with continuous batching; resumable.
    Batch(batch::BatchArgs),
    /// Chat interactively; the conversation stays in the KV cache between turns.
    Chat(chat::ChatArgs),
    /// Convert a Hugging Face Mixtral folder (safetensors) to GGUF: q4_0, q8_0, f16, bf16, f32,
    /// or the K-quant mixes q4_k_m, q4_k_s, q5_k_m, q5_k_s, q6_k (optionally with --imatrix).
    Quantize(quantize::QuantizeArgs),
    /// Collect an importance matrix (llama.cpp's imatrix GGUF) by running a model over a text.
    Imatrix(imatrix::ImatrixArgs),
    /// Perplexity of a text, computed exactly as llama.cpp's llama-perplexity does.
    Perplexity(perplexity::PerplexityArgs),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Write a Mixtral-shaped model with random weights (real widths, chosen layer count).
    Synth(synth::SynthArgs),
    /// Measure prompt processing and generation speed (like llama-bench).
    Bench(bench::BenchArgs),
    /// Show a GGUF file's metadata, tensor table and parameter counts (or --json).
    Inspect(inspect::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Batch(a) => batch::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Imatrix(a) => imatrix::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Inspect(a) => inspect::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
