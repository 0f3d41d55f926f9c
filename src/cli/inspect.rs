//! `smoe inspect FILE.gguf [--json]`: print a GGUF file's metadata and tensor table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use smoe::gguf::{inspect, GgufFile};

/// Show what a GGUF file holds: metadata, tensors, totals by type, and for MoE models the
/// parameters touched per token.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file to read (versions 2 and 3).
    pub file: PathBuf,
    /// Print one JSON object: {"version", "metadata": {key: value}, "tensors": [{"name", "type",
    /// "shape" (innermost first), "offset" (within the data section), "bytes"}]}. Arrays of more
    /// than 16 elements appear as {"type": T, "len": N}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.file)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &inspect::InspectJson(file.header()))
            .context("writing JSON to stdout")?;
        writeln!(out)?;
    } else {
        out.write_all(inspect::render_text(file.header()).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
