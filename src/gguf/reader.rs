//! The GGUF parser: bytes in, a validated [`GgufHeader`] out. Runs on any `&[u8]` (a map, a test
//! buffer, a fuzz input). Every count, length and offset read from the file is checked against the
//! bytes that remain, with overflow-checked arithmetic, before it is used; nothing here panics on
//! any input.
//!
//! Layout (all little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv key/values
//! (string key, u32 value type, value), n_tensors tensor infos (string name, u32 n_dims, n_dims × u64
//! dims innermost first, u32 ggml type, u64 offset into the data section), padding to
//! `general.alignment`, then the data section.

use std::collections::HashMap;
use std::path::Path;

use smoe_quant::GgmlType;

use super::header::{GgufHeader, Metadata, TensorInfo};
use super::value::{Array, Value, ValueType};
use super::{keys, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::{Error, Result};

/// Fewest bytes of one key/value: u64 key length, u32 type, a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Fewest bytes of one tensor info: u64 name length, u32 n_dims, u32 type, u64 offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// A read position over the file's bytes; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: String) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes; `what` names the thing being read for the error message.
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (end, s))) {
            Some((end, s)) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(format!(
                "{}: needs {n} bytes at offset {} but the file ends at {} bytes",
                what(),
                self.pos,
                self.bytes.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 length then that many bytes of UTF-8.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("{} length", what()))?;
        if len > self.remaining() as u64 {
            return Err(self.err(format!(
                "{}: string length {len} at offset {} runs past the end of the file ({} bytes)",
                what(),
                self.pos - 8,
                self.bytes.len()
            )));
        }
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|e| self.err(format!("{}: not valid UTF-8 ({e})", what())))
    }

    /// Checks that `count` items of at least `min_each` bytes can fit in what remains; returns the
    /// count as usize. Guards every allocation sized by a count read from the file.
    fn check_count(&self, count: u64, min_each: u64, what: &dyn Fn() -> String) -> Result<usize> {
        let need = count.checked_mul(min_each);
        match need {
            Some(need) if need <= self.remaining() as u64 => usize::try_from(count)
                .map_err(|_| self.err(format!("{}: count {count} does not fit usize", what()))),
            _ => Err(self.err(format!(
                "{}: count {count} needs at least {count} × {min_each} bytes but only {} remain after offset {}",
                what(),
                self.remaining(),
                self.pos
            ))),
        }
    }

    fn value(&mut self, ty: ValueType, depth: usize, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            // llama.cpp reads a bool as one byte and treats any non-zero byte as true.
            ValueType::Bool => Value::Bool(u8::from_le_bytes(self.array(what)?) != 0),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Array => Value::Array(self.array_value(depth, what)?),
        })
    }

    fn array_value(&mut self, depth: usize, what: &dyn Fn() -> String) -> Result<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.err(format!(
                "{}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels",
                what()
            )));
        }
        let elem_id = self.u32(&|| format!("{} array element type", what()))?;
        let elem = ValueType::from_id(elem_id).ok_or_else(|| {
            self.err(format!(
                "{}: array element type {elem_id} is not a GGUF value type (0..=12)",
                what()
            ))
        })?;
        let count = self.u64(&|| format!("{} array length", what()))?;
        let n = self.check_count(count, elem.min_encoded_size() as u64, &|| {
            format!("{}: array of {elem}", what())
        })?;
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let item_what = || format!("{}[{i}]", what());
            items.push(self.value(elem, depth + 1, &item_what)?);
        }
        Ok(Array { elem, items })
    }
}

/// Parses and validates a whole GGUF file held in `bytes`. `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<GgufHeader> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if magic != MAGIC {
        return Err(c.err(format!(
            "not a GGUF file: magic is {magic:02x?}, expected \"GGUF\" {MAGIC:02x?}"
        )));
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(c.err(
                "GGUF version 1 is not supported (only versions 2 and 3; re-convert the model)"
                    .into(),
            ))
        }
        v if v & 0xFFFF == 0 => {
            return Err(c.err(format!(
                "GGUF version {v:#x} looks byte-swapped: big-endian GGUF files are not supported"
            )))
        }
        v => return Err(c.err(format!("unsupported GGUF version {v} (expected 2 or 3)"))),
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "key/value count".into())?;
    let n_kv = c.check_count(n_kv, MIN_KV_BYTES, &|| "key/value section (n_kv)".into())?;
    let n_tensors = c.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, &|| {
        "tensor info section (n_tensors)".into()
    })?;

    let mut metadata = Metadata::default();
    for i in 0..n_kv {
        let key = c.string(&|| format!("key #{i} name"))?;
        let what = || format!("key '{key}'");
        let ty_id = c.u32(&|| format!("{} value type", what()))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| {
            c.err(format!(
                "{}: value type {ty_id} is not a GGUF value type (0..=12)",
                what()
            ))
        })?;
        let value = c.value(ty, 0, &what)?;
        if metadata.insert(key.clone(), value).is_err() {
            return Err(c.err(format!("duplicate key '{key}'")));
        }
    }

    let mut infos = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        infos.push(read_tensor_info(&mut c, i)?);
    }
    let header_end = c.pos as u64;

    let mut header = GgufHeader {
        path: path.to_path_buf(),
        version,
        metadata,
        tensors: Vec::new(),
        tensor_index: HashMap::new(),
        alignment: DEFAULT_ALIGNMENT,
        data_offset: 0,
        file_len: bytes.len() as u64,
    };
    if let Some(a) = header.get_u64_opt(keys::GENERAL_ALIGNMENT)? {
        if a == 0 || !a.is_power_of_two() || a > u64::from(u32::MAX) {
            return Err(header.err(format!(
                "key '{}' = {a}: must be a non-zero power of two that fits u32",
                keys::GENERAL_ALIGNMENT
            )));
        }
        header.alignment = a;
    }
    header.data_offset = align_up(header_end, header.alignment)
        .ok_or_else(|| header.err("data section offset overflows u64".into()))?;

    for raw in infos {
        let info = validate_tensor(&header, raw)?;
        if header.tensor_index.contains_key(&info.name) {
            return Err(header.err(format!("duplicate tensor name '{}'", info.name)));
        }
        header
            .tensor_index
            .insert(info.name.clone(), header.tensors.len());
        header.tensors.push(info);
    }
    check_overlaps(&header)?;
    Ok(header)
}

/// A tensor info as read, before validation.
struct RawTensorInfo {
    name: String,
    dims: Vec<u64>,
    ty_id: u32,
    offset: u64,
}

fn read_tensor_info(c: &mut Cursor<'_>, i: usize) -> Result<RawTensorInfo> {
    let name = c.string(&|| format!("tensor #{i} name"))?;
    let what = || format!("tensor '{name}'");
    let n_dims = c.u32(&|| format!("{} n_dims", what()))?;
    if n_dims as usize > MAX_DIMS {
        return Err(c.err(format!(
            "{}: n_dims is {n_dims}, at most {MAX_DIMS} allowed",
            what()
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(&|| format!("{} dimension {d}", what()))?);
    }
    let ty_id = c.u32(&|| format!("{} type", what()))?;
    let offset = c.u64(&|| format!("{} offset", what()))?;
    Ok(RawTensorInfo {
        name,
        dims,
        ty_id,
        offset,
    })
}

fn validate_tensor(h: &GgufHeader, raw: RawTensorInfo) -> Result<TensorInfo> {
    let RawTensorInfo {
        name,
        dims,
        ty_id,
        offset,
    } = raw;
    let ty = GgmlType::from_id(ty_id)
        .ok_or_else(|| h.err(format!("tensor '{name}': unknown ggml type id {ty_id}")))?;
    let (n_elements, n_bytes) =
        tensor_size(ty, &dims).map_err(|e| h.err(format!("tensor '{name}': {e}")))?;
    if offset % h.alignment != 0 {
        return Err(h.err(format!(
            "tensor '{name}': offset {offset} in the data section is not a multiple of the alignment {}",
            h.alignment
        )));
    }
    let start = h.data_offset.checked_add(offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match end {
        Some(end) if end <= h.file_len => {}
        _ => {
            return Err(h.err(format!(
                "tensor '{name}': data [file offset {}, {n_bytes} bytes] runs past the end of the file ({} bytes)",
                h.data_offset as u128 + offset as u128,
                h.file_len
            )))
        }
    }
    Ok(TensorInfo {
        name,
        ty,
        dims,
        offset,
        n_elements,
        n_bytes,
    })
}

/// Element count and byte size of a tensor of type `ty` and dims (innermost first). Errors say
/// what is wrong with the shape: a zero dimension, an element count past i64 (ggml's `int64_t`
/// ne), or a row that is not a whole number of blocks.
pub(crate) fn tensor_size(ty: GgmlType, dims: &[u64]) -> std::result::Result<(u64, u64), String> {
    if dims.len() > MAX_DIMS {
        return Err(format!(
            "{} dimensions, at most {MAX_DIMS} allowed",
            dims.len()
        ));
    }
    if let Some(d) = dims.iter().position(|&d| d == 0) {
        return Err(format!(
            "dimension {d} is 0 (dims {dims:?}); every dimension must be > 0"
        ));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| {
            format!("dims {dims:?}: element count overflows (more than 2^63 - 1 elements)")
        })?;
    let row = dims.first().copied().unwrap_or(1);
    let n_rows = n_elements
        .checked_div(row)
        .ok_or_else(|| format!("dims {dims:?}: empty row"))?;
    let row_bytes = ty.row_bytes(row).ok_or_else(|| {
        format!(
            "row of {row} elements is not a whole number of {ty} blocks ({} elements each)",
            ty.block_size()
        )
    })?;
    let n_bytes = row_bytes
        .checked_mul(n_rows)
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("dims {dims:?}: byte size of {ty} data overflows"))?;
    Ok((n_elements, n_bytes))
}

fn check_overlaps(h: &GgufHeader) -> Result<()> {
    let mut order: Vec<&TensorInfo> = h.tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if let [a, b] = pair {
            // a.offset + a.n_bytes cannot overflow: both were checked to end inside the file.
            let a_end = a.offset.saturating_add(a.n_bytes);
            if a_end > b.offset {
                return Err(h.err(format!(
                    "tensors '{}' [offset {}, {} bytes] and '{}' [offset {}, {} bytes] overlap",
                    a.name, a.offset, a.n_bytes, b.name, b.offset, b.n_bytes
                )));
            }
        }
    }
    Ok(())
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    x.checked_add(mask).map(|v| v & !mask)
}
