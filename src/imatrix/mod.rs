//! Importance matrices: per input channel, the sum of squared activations that reached each weight
//! matrix while running a text (per expert for expert matrices), and how many rows were summed.
//! The K-quant quantizers weigh each column's error by `sum / count` (see
//! [`Imatrix::importance`]).
//!
//! The file is llama.cpp's current imatrix GGUF (`tools/imatrix/imatrix.cpp`), so llama-quantize
//! reads ours and `smoe quantize --imatrix` reads llama-imatrix's:
//! - metadata `general.type` = "imatrix", `imatrix.datasets` (array of strings, the text files),
//!   `imatrix.chunk_count` and `imatrix.chunk_size` (u32);
//! - per weight matrix `NAME` (e.g. `blk.0.ffn_down_exps.weight`), sorted by name, two F32 tensors:
//!   `NAME.in_sum2` with dims [n_cols, n_mat] (Σ x² per input channel and matrix) and `NAME.counts`
//!   with dims [1, n_mat] (rows summed per matrix; n_mat = n_expert for expert tensors, else 1).
//!   As ggml writes them, trailing dimensions of 1 are dropped: a dense weight's sums are [n_cols]
//!   and its count [1].
//!
//! llama.cpp's legacy `.dat` format is read too (see `read_legacy`).
//!
//! An expert that never fired has count 0; it keeps a neutral importance of 1 for every channel
//! (as llama-quantize does) instead of being dropped or zeroed.

mod collect;

use std::collections::BTreeMap;
use std::path::Path;

pub use collect::{collect, ImatrixCollector, ImatrixParams, ImatrixRun};

use crate::gguf::{Array, GgufFile, GgufPlan};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// Key names of the imatrix GGUF.
pub const KEY_DATASETS: &str = "imatrix.datasets";
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";
/// Tensor name suffixes.
pub const SUFFIX_SUM2: &str = ".in_sum2";
pub const SUFFIX_COUNTS: &str = ".counts";

/// The statistics of one weight matrix (or stack of expert matrices).
#[derive(Clone, Debug, PartialEq)]
pub struct ImatrixEntry {
    /// Input channels (the weight's row length).
    pub n_cols: usize,
    /// [n_mat, n_cols] Σ x² per matrix and input channel.
    pub sum2: Vec<f32>,
    /// [n_mat] rows (tokens) summed per matrix.
    pub counts: Vec<f32>,
}

impl ImatrixEntry {
    pub fn n_mat(&self) -> usize {
        self.counts.len()
    }
}

/// An importance matrix: entries by weight name, and where they came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, ImatrixEntry>,
    /// The text files the statistics were collected on.
    pub datasets: Vec<String>,
    /// Chunks of `chunk_size` tokens processed.
    pub chunk_count: u32,
    pub chunk_size: u32,
}

impl Imatrix {
    /// Reads an imatrix: a GGUF (ours or llama-imatrix's), or llama.cpp's legacy `.dat` (what
    /// `llama-imatrix --output-format dat` and older versions write; chosen by the file's first
    /// bytes, not its name). Every tensor is checked: F32, sums and counts paired, the sums a
    /// whole number of rows per count.
    pub fn read(path: &Path) -> Result<Self> {
        let mut magic = [0u8; 4];
        let is_gguf = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map(|()| &magic == b"GGUF")
            .unwrap_or(true);
        if !is_gguf {
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            return read_legacy(&bytes).map_err(|what| Error::Gguf {
                path: path.to_path_buf(),
                what: format!("legacy imatrix (.dat): {what}"),
            });
        }
        let file = GgufFile::open(path)?;
        let bad = |what: String| Error::Gguf {
            path: path.to_path_buf(),
            what,
        };
        let mut sums: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut counts: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for t in file.tensors() {
            let (name, is_sum) = if let Some(n) = t.name().strip_suffix(SUFFIX_SUM2) {
                (n, true)
            } else if let Some(n) = t.name().strip_suffix(SUFFIX_COUNTS) {
                (n, false)
            } else {
                continue;
            };
            if t.ty() != GgmlType::F32 {
                return Err(bad(format!(
                    "tensor '{}': expected F32, found {}",
                    t.name(),
                    t.ty()
                )));
            }
            let values = f32s(file.tensor_data(t));
            let into = if is_sum { &mut sums } else { &mut counts };
            into.insert(name.to_string(), values);
        }
        if sums.is_empty() && counts.is_empty() {
            return Err(bad(
                "no '*.in_sum2' / '*.counts' tensors: not an imatrix GGUF".into(),
            ));
        }
        let mut entries = BTreeMap::new();
        for (name, sum2) in sums {
            let counts = counts.remove(&name).ok_or_else(|| {
                bad(format!(
                    "tensor '{name}{SUFFIX_SUM2}' has no '{name}{SUFFIX_COUNTS}'"
                ))
            })?;
            if counts.is_empty() || sum2.len() % counts.len() != 0 || sum2.is_empty() {
                return Err(bad(format!(
                    "tensor '{name}{SUFFIX_SUM2}': {} sums do not split into the {} matrices of '{name}{SUFFIX_COUNTS}'",
                    sum2.len(),
                    counts.len()
                )));
            }
            let n_cols = sum2.len() / counts.len();
            entries.insert(
                name,
                ImatrixEntry {
                    n_cols,
                    sum2,
                    counts,
                },
            );
        }
        if let Some(name) = counts.keys().next() {
            return Err(bad(format!(
                "tensor '{name}{SUFFIX_COUNTS}' has no '{name}{SUFFIX_SUM2}'"
            )));
        }
        let datasets = match file.get_array_opt(KEY_DATASETS)? {
            Some(_) => file
                .get_str_array(KEY_DATASETS)?
                .into_iter()
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count: file.get_u32_opt(KEY_CHUNK_COUNT)?.unwrap_or(0),
            chunk_size: file.get_u32_opt(KEY_CHUNK_SIZE)?.unwrap_or(0),
        })
    }

    /// Writes the GGUF llama-imatrix writes (same keys, tensor names, shapes and order).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut plan = GgufPlan::new();
        plan.add_kv("general.type", "imatrix")?;
        plan.add_kv(KEY_DATASETS, Array::strings(self.datasets.iter().cloned()))?;
        plan.add_kv(KEY_CHUNK_COUNT, self.chunk_count)?;
        plan.add_kv(KEY_CHUNK_SIZE, self.chunk_size)?;
        for (name, e) in &self.entries {
            let n_mat = e.n_mat() as u64;
            plan.add_tensor(
                format!("{name}{SUFFIX_SUM2}"),
                GgmlType::F32,
                ggml_dims(&[e.n_cols as u64, n_mat]),
            )?;
            plan.add_tensor(
                format!("{name}{SUFFIX_COUNTS}"),
                GgmlType::F32,
                ggml_dims(&[1, n_mat]),
            )?;
        }
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut w = plan.begin(std::io::BufWriter::new(file))?;
        for (name, e) in &self.entries {
            w.write_tensor_data(&format!("{name}{SUFFIX_SUM2}"), &f32_bytes(&e.sum2))?;
            w.write_tensor_data(&format!("{name}{SUFFIX_COUNTS}"), &f32_bytes(&e.counts))?;
        }
        let buf = w.finish()?;
        let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }

    /// The importance of each input channel of weight `name`, for its `n_mat` matrices of
    /// `n_cols` columns: [n_mat, n_cols] `sum2 / count`, or all ones for a matrix with count 0
    /// (an expert that never fired). llama-quantize computes the same f32 values (the count is
    /// rounded to an integer first).
    ///
    /// `None` when the imatrix has no entry for `name` (that tensor is quantized without one).
    /// An entry of another size is an error, except for `token_embd.weight` (not a matmul input
    /// in llama.cpp either), which is then ignored.
    pub fn importance(&self, name: &str, n_mat: usize, n_cols: usize) -> Result<Option<Vec<f32>>> {
        let Some(e) = self.entries.get(name) else {
            return Ok(None);
        };
        // A legacy entry has one count for the sums of all its matrices (see `read_legacy`).
        let shared = e.n_mat() == 1 && e.sum2.len() == n_mat * n_cols;
        if e.sum2.len() != n_mat * n_cols || (e.n_cols != n_cols && !shared) {
            if name == "token_embd.weight" {
                return Ok(None);
            }
            return Err(Error::Convert {
                what: format!(
                    "imatrix entry '{name}' has {} matrices of {} columns, the tensor {n_mat} of {n_cols}",
                    e.n_mat(),
                    e.n_cols
                ),
            });
        }
        let mut out = Vec::with_capacity(n_mat * n_cols);
        let counts = e.counts.iter().cycle().take(n_mat);
        for (sums, &c) in e.sum2.chunks_exact(n_cols).zip(counts) {
            let count = c.round() as i64 as f32;
            if count > 0.0 {
                out.extend(sums.iter().map(|&s| s / count));
            } else {
                out.extend(std::iter::repeat_n(1.0, n_cols));
            }
        }
        Ok(Some(out))
    }
}

/// Parses llama.cpp's legacy imatrix (`save_imatrix_legacy` in `tools/imatrix/imatrix.cpp`), all
/// little-endian: `i32` entry count; per entry an `i32` name length, the name, `i32 ncall`, `i32
/// nval` and `nval` f32 values `(Σx² / count) · ncall` (an expert that never fired already
/// written as `1 · ncall`); then, optionally, `i32` chunks processed and the dataset name. The
/// values of all matrices of an expert tensor are concatenated with one `ncall`, so an entry
/// keeps one count for all of them: `sum2 = values`, `count = ncall` (or 1 when it is 0,
/// where llama-quantize does not divide), which gives llama-quantize's importance `value /
/// ncall` bit for bit. Every length is checked against what is left of the file.
fn read_legacy(b: &[u8]) -> std::result::Result<Imatrix, String> {
    let mut c = Cursor { b, at: 0 };
    let n = c.i32("the entry count")?;
    // Each entry takes at least 13 bytes (lengths, ncall, nval and a 1-byte name).
    if n < 0 || n as usize > b.len() / 13 {
        return Err(format!(
            "entry count {n} does not fit a {}-byte file",
            b.len()
        ));
    }
    let mut entries = BTreeMap::new();
    let mut chunk_count = 0u32;
    for _ in 0..n {
        let len = c.i32("a name length")?;
        let name = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0 && l <= 4096)
            .and_then(|l| c.bytes(l))
            .ok_or_else(|| format!("bad name length {len} before byte {}", c.at))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| format!("the entry name before byte {} is not UTF-8", c.at))?
            .to_string();
        let ncall = c.i32("ncall")?;
        let nval = c.i32("nval")?;
        let values = usize::try_from(nval)
            .ok()
            .filter(|&v| v > 0)
            .and_then(|v| v.checked_mul(4))
            .and_then(|n| c.bytes(n))
            .ok_or_else(|| format!("entry '{name}': {nval} values do not fit the file"))?;
        if ncall < 0 {
            return Err(format!("entry '{name}': negative ncall {ncall}"));
        }
        chunk_count = chunk_count.max(ncall as u32);
        if entries.contains_key(&name) {
            return Err(format!("entry '{name}' appears twice"));
        }
        let sum2 = f32s(values);
        entries.insert(
            name,
            ImatrixEntry {
                n_cols: sum2.len(),
                sum2,
                counts: vec![ncall.max(1) as f32],
            },
        );
    }
    // The optional trailer: chunks processed, then the dataset's name.
    let mut datasets = Vec::new();
    if let Ok(last) = c.i32("") {
        chunk_count = u32::try_from(last).unwrap_or(chunk_count);
        let name = c
            .i32("")
            .ok()
            .and_then(|len| usize::try_from(len).ok())
            .and_then(|len| c.bytes(len));
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            datasets.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(Imatrix {
        entries,
        datasets,
        chunk_count,
        chunk_size: 0,
    })
}

/// A reading position in a byte slice; every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }

    fn i32(&mut self, what: &str) -> std::result::Result<i32, String> {
        let at = self.at;
        let v = self
            .bytes(4)
            .ok_or_else(|| format!("truncated at byte {at}: expected {what}"))?;
        Ok(i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }
}

/// `dims` without trailing 1s (at least one dimension), as ggml's `ggml_n_dims` counts them.
fn ggml_dims(dims: &[u64]) -> &[u64] {
    let n = dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    &dims[..n]
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Imatrix {
        let mut entries = BTreeMap::new();
        entries.insert(
            "blk.0.ffn_down_exps.weight".to_string(),
            ImatrixEntry {
                n_cols: 2,
                sum2: vec![2.0, 4.0, 0.0, 0.0, 9.0, 3.0],
                counts: vec![2.0, 0.0, 3.0],
            },
        );
        entries.insert(
            "blk.0.attn_q.weight".to_string(),
            ImatrixEntry {
                n_cols: 3,
                sum2: vec![1.0, 2.0, 3.0],
                counts: vec![4.0],
            },
        );
        Imatrix {
            entries,
            datasets: vec!["a.txt".into()],
            chunk_count: 5,
            chunk_size: 64,
        }
    }

    #[test]
    fn round_trips_through_gguf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("im.gguf");
        let m = sample();
        m.write(&p).unwrap();
        assert_eq!(Imatrix::read(&p).unwrap(), m);
        let f = GgufFile::open(&p).unwrap();
        assert_eq!(f.get_str("general.type").unwrap(), "imatrix");
        let t = f
            .require_tensor("blk.0.ffn_down_exps.weight.in_sum2")
            .unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        let c = f
            .require_tensor("blk.0.ffn_down_exps.weight.counts")
            .unwrap();
        assert_eq!(c.dims(), &[1, 3]);
        // a dense weight: trailing 1s dropped, as ggml writes them
        let t = f.require_tensor("blk.0.attn_q.weight.in_sum2").unwrap();
        assert_eq!(t.dims(), &[3]);
        let c = f.require_tensor("blk.0.attn_q.weight.counts").unwrap();
        assert_eq!(c.dims(), &[1]);
        // sorted by name, sums before counts
        let names: Vec<&str> = f.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(names[0], "blk.0.attn_q.weight.in_sum2");
        assert_eq!(names[1], "blk.0.attn_q.weight.counts");
    }

    #[test]
    fn unused_experts_get_neutral_importance() {
        let m = sample();
        let w = m
            .importance("blk.0.ffn_down_exps.weight", 3, 2)
            .unwrap()
            .unwrap();
        assert_eq!(w, [1.0, 2.0, 1.0, 1.0, 3.0, 1.0]);
        assert_eq!(m.importance("blk.0.attn_k.weight", 1, 3).unwrap(), None);
        assert!(m.importance("blk.0.attn_q.weight", 1, 4).is_err());
    }
}
