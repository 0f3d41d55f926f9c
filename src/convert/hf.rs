//! A Hugging Face model folder: `config.json` and the safetensors weights (one file, or shards
//! listed by `model.safetensors.index.json`), memory-mapped and indexed by tensor name.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::{Error, Result};

/// The `config.json` fields of a Mixtral checkpoint that the converter needs.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub num_local_experts: usize,
    pub num_experts_per_tok: usize,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// transformers ≥ 5 nests rope_theta here.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, rename = "_name_or_path")]
    pub name_or_path: Option<String>,
}

impl HfConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: HfConfig = serde_json::from_str(&text)
            .map_err(|e| convert_err(path, format!("not a Mixtral config: {e}")))?;
        let is_mixtral = cfg.model_type.as_deref() == Some("mixtral")
            || cfg.architectures.iter().any(|a| a == "MixtralForCausalLM");
        if !is_mixtral {
            return Err(convert_err(
                path,
                format!(
                    "model_type {:?}, architectures {:?}: only Mixtral (MixtralForCausalLM) is supported",
                    cfg.model_type, cfg.architectures
                ),
            ));
        }
        if cfg.num_attention_heads == 0
            || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) && cfg.head_dim.is_none()
        {
            return Err(convert_err(
                path,
                "num_attention_heads must divide hidden_size".into(),
            ));
        }
        Ok(cfg)
    }

    pub fn n_head_kv(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
            .unwrap_or(1e6)
    }
}

/// Where one tensor lives: shard, element type, shape, and byte range within the shard's map.
#[derive(Debug, Clone)]
pub struct HfTensor {
    pub shard: usize,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub range: std::ops::Range<usize>,
}

/// The weights of a checkpoint, mapped (never read into the heap as a whole).
#[derive(Debug)]
pub struct HfWeights {
    pub shards: Vec<(PathBuf, memmap2::Mmap)>,
    pub tensors: HashMap<String, HfTensor>,
}

impl HfWeights {
    /// Opens `model.safetensors`, or every shard named by `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
                path: index.clone(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| convert_err(&index, format!("invalid JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| convert_err(&index, "no \"weight_map\" object".into()))?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(convert_err(
                dir,
                "neither model.safetensors nor model.safetensors.index.json is here".into(),
            ));
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = HashMap::new();
        for (si, path) in files.into_iter().enumerate() {
            let file = File::open(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the checkpoint is mapped read-only and treated as immutable while we convert
            // it; a concurrent writer truncating it could fault this process, as with any mmap reader.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let (header_len, meta) = SafeTensors::read_metadata(&map)
                .map_err(|e| convert_err(&path, format!("not a valid safetensors file: {e}")))?;
            let base = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                let range = (base + a)..(base + b);
                if range.end > map.len() || a > b {
                    return Err(convert_err(
                        &path,
                        format!("tensor '{name}' data runs past the end of the file"),
                    ));
                }
                let t = HfTensor {
                    shard: si,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    range,
                };
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(convert_err(
                        &path,
                        format!("tensor '{name}' appears in more than one shard"),
                    ));
                }
            }
            shards.push((path, map));
        }
        Ok(HfWeights { shards, tensors })
    }

    /// The tensor, checked to have `shape` (outermost first, as safetensors stores it).
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&HfTensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::Convert {
            what: format!("tensor '{name}' is missing from the checkpoint"),
        })?;
        if t.shape != shape {
            return Err(Error::Convert {
                what: format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.shape
                ),
            });
        }
        if !matches!(t.dtype, Dtype::BF16 | Dtype::F16 | Dtype::F32) {
            return Err(Error::Convert {
                what: format!(
                    "tensor '{name}' is {:?}; supported are bf16, f16 and f32",
                    t.dtype
                ),
            });
        }
        Ok(t)
    }

    pub fn bytes(&self, t: &HfTensor) -> &[u8] {
        &self.shards[t.shard].1[t.range.clone()]
    }

    /// Tells the kernel we are done with these bytes, so they stop counting in our resident set
    /// (the page cache keeps them; re-reading faults them back in unchanged).
    pub fn release(&self, t: &HfTensor) {
        let map = &self.shards[t.shard].1;
        let page = 4096;
        let start = t.range.start.div_ceil(page) * page;
        let end = t.range.end / page * page;
        if end > start {
            // SAFETY: DONTNEED on a read-only, file-backed private mapping only drops our page-table
            // entries; later reads fault the same file bytes back in, so no borrowed data changes.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

/// Element size of a supported dtype.
pub fn dtype_size(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 4,
        _ => 2,
    }
}

/// Converts one row of `src` bytes (bf16, f16 or f32 little-endian) into f32.
pub fn to_f32(d: Dtype, src: &[u8], out: &mut [f32]) {
    match d {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        _ => match bytemuck::try_cast_slice::<u8, u16>(src) {
            // bf16 is the top half of an f32: a shift (vectorizes when the data is aligned).
            Ok(bits) => {
                for (o, &b) in out.iter_mut().zip(bits) {
                    *o = f32::from_bits(u32::from(b) << 16);
                }
            }
            Err(_) => {
                for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
                }
            }
        },
    }
}

fn convert_err(path: &Path, what: String) -> Error {
    Error::Convert {
        what: format!("{}: {what}", path.display()),
    }
}
