//! smoe: CPU inference for sparse Mixture-of-Experts language models (Mixtral), from GGUF files.

pub mod error;
pub mod gguf;
pub mod tokenizer;

pub use error::{Error, Result};
pub use smoe_quant as quant;
