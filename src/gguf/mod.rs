//! GGUF container (llama.cpp's model file format), versions 2 and 3: a validating parser over any
//! byte slice, a memory-mapped file with zero-copy tensor views, a streaming writer, and the
//! summaries behind `smoe inspect`. Container only: no model semantics beyond key names.
//!
//! ```no_run
//! # fn main() -> smoe::Result<()> {
//! let file = smoe::gguf::GgufFile::open("model.gguf")?;
//! let n_expert = file.get_u32("llama.expert_count")?;
//! let t = file.require_tensor("blk.0.attn_q.weight")?;
//! let bytes: &[u8] = file.tensor_data(t); // borrowed from the map, never copied
//! # let _ = (n_expert, bytes); Ok(()) }
//! ```

mod advise;
mod header;
pub mod inspect;
pub mod keys;
mod reader;
mod value;
pub mod writer;

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

pub use advise::{Adviser, PageHint};
pub use header::{GgufHeader, Metadata, TensorInfo};
pub use reader::parse;
pub use value::{Array, Value, ValueType};
pub use writer::{GgufPlan, GgufWriter};

use crate::{Error, Result};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The version this crate writes.
pub const WRITE_VERSION: u32 = 3;
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS: at most this many dimensions per tensor.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of metadata arrays accepted (an array of arrays is depth 2).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// A GGUF file mapped into memory. Derefs to its [`GgufHeader`] (metadata, tensor infos, typed
/// getters); [`GgufFile::tensor_data`] borrows tensor bytes straight from the map.
#[derive(Debug)]
pub struct GgufFile {
    header: GgufHeader,
    /// Shared with the background [`Adviser`], which must not outlive the mapping it advises.
    map: std::sync::Arc<memmap2::Mmap>,
    /// Kept open for page-cache hints on the file (see [`GgufFile::advise`]).
    file: File,
}

impl GgufFile {
    /// Maps and parses the file; every header field is validated before this returns.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        // SAFETY: the map is read-only and private to this process, but the file underneath it can
        // still be changed (truncated or rewritten) by another process while it is mapped; that
        // would change or invalidate these bytes (SIGBUS on truncation) under our borrowed slices.
        // Model files are treated as immutable while in use, as every mmap-based loader does
        // (llama.cpp included); we never write through the map.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        let header = parse(&map, path)?;
        Ok(GgufFile {
            header,
            map: std::sync::Arc::new(map),
            file,
        })
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The tensor's data, a slice of the map (never a copy). `t` must come from this file's
    /// [`GgufHeader::tensors`]; a foreign info that does not fit yields an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        tensor_slice(&self.header, &self.map, t)
    }

    /// The named tensor's data, or an error naming the missing tensor.
    pub fn tensor_data_by_name(&self, name: &str) -> Result<&[u8]> {
        let t = self.header.require_tensor(name)?;
        Ok(self.tensor_data(t))
    }
}

impl Deref for GgufFile {
    type Target = GgufHeader;
    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}

/// A GGUF parsed from bytes the caller holds (tests, fuzzing, embedded models). Same API as
/// [`GgufFile`], with tensor views borrowed for `'a`.
#[derive(Debug)]
pub struct GgufBytes<'a> {
    header: GgufHeader,
    bytes: &'a [u8],
}

impl<'a> GgufBytes<'a> {
    /// Parses `bytes`; `name` labels the source in error messages.
    pub fn parse(bytes: &'a [u8], name: impl Into<PathBuf>) -> Result<Self> {
        let name = name.into();
        let header = parse(bytes, &name)?;
        Ok(GgufBytes { header, bytes })
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The tensor's data, borrowed from the input bytes.
    pub fn tensor_data(&self, t: &TensorInfo) -> &'a [u8] {
        tensor_slice(&self.header, self.bytes, t)
    }
}

impl Deref for GgufBytes<'_> {
    type Target = GgufHeader;
    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}

fn tensor_slice<'a>(h: &GgufHeader, bytes: &'a [u8], t: &TensorInfo) -> &'a [u8] {
    h.data_range(t)
        .and_then(|r| bytes.get(r))
        .unwrap_or_default()
}
