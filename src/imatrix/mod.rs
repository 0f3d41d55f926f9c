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
    /// Reads an imatrix GGUF (ours or llama-imatrix's). Every tensor is checked: F32, sums and
    /// counts paired, the sums a whole number of rows per count.
    pub fn read(path: &Path) -> Result<Self> {
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
                "no '*.in_sum2' / '*.counts' tensors: not an imatrix GGUF (the legacy .dat format is not supported)".into(),
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
        if e.sum2.len() != n_mat * n_cols || e.n_cols != n_cols {
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
        for (sums, &c) in e.sum2.chunks_exact(n_cols).zip(&e.counts) {
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
