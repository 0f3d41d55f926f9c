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
}

/// Result alias for the smoe library.
pub type Result<T> = std::result::Result<T, Error>;
