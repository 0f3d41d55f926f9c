//! smoe-quant: ggml block formats and the kernels that multiply them. No files, no models, no I/O.
//!
//! - [`types`]: the type table (ids, names, block geometry).
//! - [`format`]: one module per block type: `#[repr(C)]` block, scalar quantize / dequantize (the spec).
//! - [`kernels`]: the one dispatch point: CPU detection, `SMOE_ISA`, the kernel tables.
//! - [`matmul`]: row-parallel drivers over [`Matrix`] views and quantize-once [`Activations`].
//! - [`bandwidth`]: a memory read-bandwidth probe (the roofline for decode).

pub mod bandwidth;
pub mod format;
pub mod kernels;
pub mod matmul;
pub mod types;

pub use matmul::{matmul, Activations, Matrix};
pub use types::{GgmlType, ALL_TYPES, QK_K};

/// Errors from quantizing, dequantizing or multiplying blocks.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("{ty}: {what}")]
    Shape { ty: GgmlType, what: String },
    #[error("type {0} is not supported for this operation")]
    Unsupported(GgmlType),
    #[error("thread pool: {0}")]
    Pool(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, QuantError>;
