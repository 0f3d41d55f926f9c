//! `smoe tokenize`: print the token ids of a text.

use anyhow::Result;
use clap::Args;
use smoe::gguf::GgufFile;

use super::common::load_tokenizer;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// GGUF model file whose vocabulary to use.
    #[arg(short = 'm', long = "model")]
    pub model: std::path::PathBuf,
    /// Use this tokenizer.json instead of the GGUF vocabulary.
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// The text.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Do not add the BOS token.
    #[arg(long)]
    pub no_bos: bool,
    /// Print each id with its piece, one per line.
    #[arg(long)]
    pub pieces: bool,
}

pub fn run(a: TokenizeArgs) -> Result<()> {
    let file = GgufFile::open(&a.model)?;
    let tok = load_tokenizer(&file, a.tokenizer.as_deref())?;
    let ids = tok.encode(&a.prompt, !a.no_bos && tok.add_bos())?;
    if a.pieces {
        for id in ids {
            println!("{id:6} -> '{}'", tok.token_to_piece(id).unwrap_or("?"));
        }
    } else {
        println!("{ids:?}");
    }
    Ok(())
}
