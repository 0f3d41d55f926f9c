//! smoe: CPU inference for sparse Mixture-of-Experts language models (Mixtral), from GGUF files.
//!
//! - [`gguf`]: the container (mmap reader, streaming writer, inspect).
//! - [`model`]: Mixtral config, typed weights borrowed from the map, the forward pass.
//! - [`tokenizer`]: SentencePiece-BPE tokenizer from GGUF metadata or tokenizer.json; chat templates.
//! - [`sampler`], [`generate`], [`perplexity`]: what the commands run.
//! - [`batch`]: offline batch completion with continuous batching, durable and resumable.
//! - [`convert`]: Hugging Face safetensors → GGUF, with llama.cpp's quantization mixes.
//! - [`imatrix`]: importance matrices (collect, read and write llama.cpp's imatrix GGUF).

pub mod batch;
pub mod bench;
pub mod convert;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod imatrix;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod synth;
pub mod tokenizer;

pub use error::{Error, Result};
pub use smoe_quant as quant;
