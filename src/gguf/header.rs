//! What a parsed GGUF header holds: the metadata, the tensor infos and the data layout, with typed
//! getters that turn a missing key or a wrong type into a clear error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use smoe_quant::GgmlType;

use super::value::{Array, Value};
use crate::{Error, Result};

/// The key/value section, in file order, with an index by key.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Adds an entry; returns the value back if the key is already present.
    pub(crate) fn insert(&mut self, key: String, value: Value) -> std::result::Result<(), Value> {
        if self.index.contains_key(&key) {
            return Err(value);
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index
            .get(key)
            .and_then(|&i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One tensor's header entry. Every field was validated against the file when it was parsed:
/// the type is known, each dimension is > 0, the element count and byte size fit in u64 (and i64),
/// rows are whole blocks, and the data lies aligned inside the file without overlapping another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) ty: GgmlType,
    /// Innermost (contiguous) dimension first, as stored: a weight of `n_out` rows of `n_in` is `[n_in, n_out]`.
    pub(crate) dims: Vec<u64>,
    /// Offset of the data from the start of the data section, as stored.
    pub(crate) offset: u64,
    pub(crate) n_elements: u64,
    pub(crate) n_bytes: u64,
}

impl TensorInfo {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Dimensions, innermost first (ggml's `ne[0], ne[1], ...`).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Offset of the data within the data section (as stored in the file).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Bytes of the tensor's data.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}

/// A parsed GGUF header: metadata, tensor infos and where the data section starts. Built by
/// [`super::parse`]; it does not hold the file's bytes (see [`super::GgufFile`] and
/// [`super::GgufBytes`] for views of the data).
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub(crate) path: PathBuf,
    pub(crate) version: u32,
    pub(crate) metadata: Metadata,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_index: HashMap<String, usize>,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
    pub(crate) file_len: u64,
}

impl GgufHeader {
    /// The file this header came from (used in error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
    }

    /// Like [`Self::tensor`], but a missing tensor is an error naming it.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name)
            .ok_or_else(|| self.err(format!("no tensor named '{name}'")))
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset in the file where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Length of the file the header was parsed from.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The byte range of a tensor's data within the file. Always in bounds for infos of this
    /// header (checked when parsing); `None` for a foreign info that would not fit.
    pub fn data_range(&self, t: &TensorInfo) -> Option<std::ops::Range<usize>> {
        let start = self.data_offset.checked_add(t.offset)?;
        let end = start.checked_add(t.n_bytes)?;
        if end > self.file_len {
            return None;
        }
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    pub(crate) fn err(&self, what: String) -> Error {
        Error::Gguf {
            path: self.path.clone(),
            what,
        }
    }

    /// A typed read of an optional key: `Ok(None)` when absent, an error naming the key, its type
    /// and value when present with the wrong type or out of range.
    fn typed<'s, T>(
        &'s self,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&'s Value) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(v) = self.metadata.get(key) else {
            return Ok(None);
        };
        match conv(v) {
            Some(t) => Ok(Some(t)),
            None => Err(self.err(format!(
                "key '{key}' is {} {}, expected {expected}",
                v.ty(),
                v.display_summary(4)
            ))),
        }
    }

    fn required<T>(&self, key: &str, got: Result<Option<T>>) -> Result<T> {
        got?.ok_or_else(|| self.err(format!("missing key '{key}'")))
    }

    /// Any integer type holding a value that fits u32.
    pub fn get_u32_opt(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, "an integer that fits u32", Value::to_u32)
    }
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.required(key, self.get_u32_opt(key))
    }

    /// Any integer type holding a value that fits u64.
    pub fn get_u64_opt(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "an integer that fits u64", Value::to_u64)
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.required(key, self.get_u64_opt(key))
    }

    /// Any integer type holding a value that fits usize.
    pub fn get_usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "an integer that fits usize", |v| {
            v.to_u64().and_then(|n| usize::try_from(n).ok())
        })
    }
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.required(key, self.get_usize_opt(key))
    }

    /// Any integer type holding a value that fits i64.
    pub fn get_i64_opt(&self, key: &str) -> Result<Option<i64>> {
        self.typed(key, "an integer that fits i64", Value::to_i64)
    }
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.required(key, self.get_i64_opt(key))
    }

    /// FLOAT32, or FLOAT64 narrowed.
    pub fn get_f32_opt(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a float", Value::to_f32)
    }
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.required(key, self.get_f32_opt(key))
    }

    /// FLOAT64, or FLOAT32 widened.
    pub fn get_f64_opt(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a float", Value::to_f64)
    }
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.required(key, self.get_f64_opt(key))
    }

    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a BOOL", Value::as_bool)
    }
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.required(key, self.get_bool_opt(key))
    }

    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a STRING", Value::as_str)
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.required(key, self.get_str_opt(key))
    }

    pub fn get_array_opt(&self, key: &str) -> Result<Option<&Array>> {
        self.typed(key, "an ARRAY", Value::as_array)
    }
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        self.required(key, self.get_array_opt(key))
    }

    /// An array of STRING, e.g. `tokenizer.ggml.tokens`.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let a = self.get_array(key)?;
        a.items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                self.err(format!(
                    "key '{key}' is an array of {}, expected STRING",
                    a.elem
                ))
            })
    }

    /// An array of FLOAT32 (or FLOAT64), e.g. `tokenizer.ggml.scores`.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let a = self.get_array(key)?;
        a.items
            .iter()
            .map(Value::to_f32)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                self.err(format!(
                    "key '{key}' is an array of {}, expected FLOAT32",
                    a.elem
                ))
            })
    }

    /// An array of integers that fit i64, e.g. `tokenizer.ggml.token_type`.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let a = self.get_array(key)?;
        a.items
            .iter()
            .map(Value::to_i64)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                self.err(format!(
                    "key '{key}' is an array of {}, expected integers",
                    a.elem
                ))
            })
    }

    /// `general.architecture`, e.g. "llama" (Mixtral GGUFs use "llama").
    pub fn architecture(&self) -> Result<&str> {
        self.get_str(super::keys::GENERAL_ARCHITECTURE)
    }
}
