//! Subcommands, one file each. Thin: parse, call the library, print.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "smoe", version, about = "CPU inference for sparse Mixture-of-Experts models (Mixtral) from GGUF files")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
