//! The library's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the smoe library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file that parses as GGUF but does not describe a model smoe can run.
    #[error("{what}")]
    Model { what: String },
    /// The tokens do not fit in the context window.
    #[error("{needed} tokens do not fit in the context of {n_ctx} tokens (raise --ctx or shorten the prompt)")]
    ContextFull { needed: usize, n_ctx: usize },
    /// A batch job that cannot run: unreadable inputs, an output that is not ours, bad settings.
    #[error("batch: {0}")]
    Batch(String),
    /// A checkpoint that cannot be converted.
    #[error("{what}")]
    Convert { what: String },
    /// A GGUF file that is malformed or does not hold what was asked of it. `what` names the key
    /// or tensor and what was expected.
    #[error("{}: {what}", path.display())]
    Gguf { path: PathBuf, what: String },
    /// The GGUF writer was used out of order, or given data that does not match what was declared.
    #[error("gguf writer: {what}")]
    GgufWrite { what: String },
    /// The GGUF writer's output failed.
    #[error("gguf writer: write failed")]
    GgufWriteIo(#[source] std::io::Error),
    #[error(transparent)]
    Quant(#[from] smoe_quant::QuantError),
    /// A tokenizer.json / tokenizer_config.json that cannot be read as a SentencePiece-style vocabulary.
    #[error("{path}: {msg}")]
    TokenizerFile { path: PathBuf, msg: String },
    /// A vocabulary (from GGUF metadata or converted) that is inconsistent.
    #[error("invalid vocabulary: {0}")]
    Vocab(String),
    /// The Hugging Face `tokenizers` library failed, or a token id is out of range.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template that does not parse, or that raised an exception while rendering.
    #[error("chat template: {0}")]
    ChatTemplate(String),
}

/// Result alias for the smoe library.
pub type Result<T> = std::result::Result<T, Error>;
