//! A streaming GGUF v3 writer. Declare the metadata and the tensors (name, type, dims) in a
//! [`GgufPlan`], then [`GgufPlan::begin`] writes the header, key/values and tensor infos (offsets
//! computed from the declared sizes), and the returned [`GgufWriter`] takes each tensor's bytes in
//! declared order, checking sizes and padding to the alignment. Only one tensor's bytes (or a part
//! of one) is ever in the caller's hands; nothing is buffered here beyond the `Write` itself.
//!
//! ```
//! # fn main() -> smoe::Result<()> {
//! use smoe::gguf::{GgufPlan, Value};
//! use smoe::quant::GgmlType;
//! let mut plan = GgufPlan::new();
//! plan.add_kv("general.architecture", "llama")?;
//! plan.add_tensor("output_norm.weight", GgmlType::F32, &[4])?;
//! let mut w = plan.begin(Vec::new())?;
//! w.write_tensor_data("output_norm.weight", &[0u8; 16])?;
//! let bytes: Vec<u8> = w.finish()?;
//! # let _ = bytes; Ok(()) }
//! ```

use std::io::Write;

use smoe_quant::GgmlType;

use super::header::Metadata;
use super::reader::{align_up, tensor_size};
use super::value::{Array, Value, ValueType};
use super::{keys, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, WRITE_VERSION};
use crate::{Error, Result};

fn err(what: String) -> Error {
    Error::GgufWrite { what }
}

#[derive(Clone, Debug)]
struct PlannedTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    n_bytes: u64,
    /// Offset within the data section; set by `begin`.
    offset: u64,
}

/// What a GGUF file will hold, declared before any byte is written.
#[derive(Debug, Default)]
pub struct GgufPlan {
    metadata: Metadata,
    tensors: Vec<PlannedTensor>,
    alignment: Option<u64>,
}

impl GgufPlan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key/value. A duplicate key, an array whose items do not all have its element type,
    /// or arrays nested deeper than [`MAX_ARRAY_DEPTH`] are errors. `general.alignment` (a u32
    /// power of two) also sets the data alignment.
    pub fn add_kv(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<&mut Self> {
        let key = key.into();
        let value = value.into();
        check_value(&value, 0).map_err(|e| err(format!("key '{key}': {e}")))?;
        if key == keys::GENERAL_ALIGNMENT {
            match value {
                Value::U32(a) if a.is_power_of_two() => self.alignment = Some(a.into()),
                _ => {
                    return Err(err(format!(
                        "key '{key}' must be a UINT32 non-zero power of two, got {} {}",
                        value.ty(),
                        value.display_summary(4)
                    )))
                }
            }
        }
        if self.metadata.insert(key.clone(), value).is_err() {
            return Err(err(format!("duplicate key '{key}'")));
        }
        Ok(self)
    }

    /// Declares a tensor; its data must later be written in declaration order. `dims` innermost
    /// first (ggml order): each > 0, at most 4, rows a whole number of blocks of `ty`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: &[u64],
    ) -> Result<&mut Self> {
        let name = name.into();
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(err(format!("duplicate tensor name '{name}'")));
        }
        let (_, n_bytes) =
            tensor_size(ty, dims).map_err(|e| err(format!("tensor '{name}': {e}")))?;
        self.tensors.push(PlannedTensor {
            name,
            ty,
            dims: dims.to_vec(),
            n_bytes,
            offset: 0,
        });
        Ok(self)
    }

    /// Writes the header (magic, version 3, counts, key/values, tensor infos and the padding to the
    /// data section) and returns the writer that takes the tensors' data.
    pub fn begin<W: Write>(self, out: W) -> Result<GgufWriter<W>> {
        let GgufPlan {
            metadata,
            mut tensors,
            alignment,
        } = self;
        let alignment = alignment.unwrap_or(DEFAULT_ALIGNMENT);
        let mut next = 0u64;
        for t in &mut tensors {
            t.offset = next;
            next = t
                .offset
                .checked_add(t.n_bytes)
                .and_then(|end| align_up(end, alignment))
                .ok_or_else(|| err("total data size overflows u64".into()))?;
        }
        let mut w = GgufWriter {
            out: Counting { inner: out, n: 0 },
            tensors,
            alignment,
            next: 0,
            written: 0,
            poisoned: false,
        };
        w.write_header(&metadata)?;
        Ok(w)
    }
}

/// Element types are consistent and nesting is bounded.
fn check_value(v: &Value, depth: usize) -> std::result::Result<(), String> {
    if let Value::Array(a) = v {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!(
                "arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
            ));
        }
        for (i, item) in a.items.iter().enumerate() {
            if item.ty() != a.elem {
                return Err(format!(
                    "array of {} has a {} at index {i}",
                    a.elem,
                    item.ty()
                ));
            }
            check_value(item, depth + 1)?;
        }
    }
    Ok(())
}

/// Counts bytes written, to place padding.
#[derive(Debug)]
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(Error::GgufWriteIo)?;
        self.n = self.n.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn pad_to(&mut self, alignment: u64) -> Result<()> {
        let target =
            align_up(self.n, alignment).ok_or_else(|| err("file size overflows u64".into()))?;
        let zeros = [0u8; 64];
        while self.n < target {
            let n = usize::try_from(target - self.n)
                .unwrap_or(usize::MAX)
                .min(zeros.len());
            self.put(&zeros[..n])?;
        }
        Ok(())
    }
}

/// Takes the declared tensors' data in order; see [`GgufPlan::begin`].
#[derive(Debug)]
pub struct GgufWriter<W: Write> {
    out: Counting<W>,
    tensors: Vec<PlannedTensor>,
    alignment: u64,
    /// Index of the tensor being written.
    next: usize,
    /// Bytes of tensor `next` written so far.
    written: u64,
    /// Set after a write error: the output is in an unknown state.
    poisoned: bool,
}

impl<W: Write> GgufWriter<W> {
    fn write_header(&mut self, metadata: &Metadata) -> Result<()> {
        let mut buf = Vec::new();
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata.iter() {
            put_str(&mut buf, key);
            buf.extend_from_slice(&value.ty().id().to_le_bytes());
            put_value(&mut buf, value);
            self.flush_buf(&mut buf)?;
        }
        for t in &self.tensors {
            put_str(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ty.id().to_le_bytes());
            buf.extend_from_slice(&t.offset.to_le_bytes());
        }
        self.flush_buf(&mut buf)?;
        self.out.pad_to(self.alignment)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.out.put(buf)?;
        buf.clear();
        Ok(())
    }

    /// The next tensor expected and how many of its bytes are still to come.
    pub fn next_tensor(&self) -> Option<(&str, u64)> {
        self.tensors
            .get(self.next)
            .map(|t| (t.name.as_str(), t.n_bytes - self.written))
    }

    /// Writes one whole tensor's data: `name` must be the next declared tensor and `data` exactly
    /// its size.
    pub fn write_tensor_data(&mut self, name: &str, data: &[u8]) -> Result<()> {
        if let Some(t) = self.tensors.get(self.next) {
            if t.name == name && (self.written != 0 || data.len() as u64 != t.n_bytes) {
                return Err(err(format!(
                    "tensor '{name}' ({} {:?}) takes {} bytes, got {}{}",
                    t.ty,
                    t.dims,
                    t.n_bytes,
                    data.len(),
                    if self.written != 0 {
                        " after a partial write"
                    } else {
                        ""
                    }
                )));
            }
        }
        self.write_tensor_part(name, data)
    }

    /// Writes part of the next tensor's data (for tensors produced in pieces); the tensor is done
    /// when its declared size has been written, and then the padding follows.
    pub fn write_tensor_part(&mut self, name: &str, data: &[u8]) -> Result<()> {
        if self.poisoned {
            return Err(err(
                "an earlier write failed; the output is incomplete".into()
            ));
        }
        let Some(t) = self.tensors.get(self.next) else {
            return Err(err(format!(
                "tensor '{name}': all {} declared tensors are already written",
                self.tensors.len()
            )));
        };
        if t.name != name {
            return Err(err(format!(
                "tensor '{name}' written out of order: expected '{}' next",
                t.name
            )));
        }
        let left = t.n_bytes - self.written;
        if data.len() as u64 > left {
            return Err(err(format!(
                "tensor '{name}': {} more bytes given but only {left} of its {} remain",
                data.len(),
                t.n_bytes
            )));
        }
        let done = data.len() as u64 == left;
        let res = self.out.put(data).and_then(|()| {
            if done {
                self.out.pad_to(self.alignment)
            } else {
                Ok(())
            }
        });
        if res.is_err() {
            self.poisoned = true;
            return res;
        }
        if done {
            self.next += 1;
            self.written = 0;
        } else {
            self.written += data.len() as u64;
        }
        Ok(())
    }

    /// Checks that every declared tensor was written, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W> {
        if let Some((name, left)) = self.next_tensor() {
            return Err(err(format!(
                "finish: tensor '{name}' is missing {left} bytes ({} of {} tensors complete)",
                self.next,
                self.tensors.len()
            )));
        }
        if self.poisoned {
            return Err(err(
                "an earlier write failed; the output is incomplete".into()
            ));
        }
        self.out.inner.flush().map_err(Error::GgufWriteIo)?;
        Ok(self.out.inner)
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The value's bytes without its type tag (arrays carry their element type and length).
fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::String(s) => put_str(buf, s),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Array(Array { elem, items }) => {
            buf.extend_from_slice(&elem.id().to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(buf, item);
            }
        }
    }
}

impl Array {
    /// An array of STRING from anything string-like.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        Array::new(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }

    /// An array of one scalar type, e.g. `Array::of(ValueType::F32, scores)`.
    pub fn of<T: Into<Value>>(elem: ValueType, items: impl IntoIterator<Item = T>) -> Self {
        Array::new(elem, items.into_iter().map(Into::into).collect())
    }
}
