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
    #[error(transparent)]
    Quant(#[from] smoe_quant::QuantError),
}

/// Result alias for the smoe library.
pub type Result<T> = std::result::Result<T, Error>;
