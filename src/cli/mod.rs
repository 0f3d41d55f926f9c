//! Subcommands, one file each. Thin: parse, call the library, print.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "smoe",
    version,
    about = "CPU inference for sparse Mixture-of-Experts models (Mixtral) from GGUF files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

// `Command` has no variants yet, so everything after parsing is unreachable; drop this with the first one.
#[allow(unreachable_code, unused_variables)]
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
