//! `smoe quantize`: a Hugging Face Mixtral checkpoint (safetensors, bf16/f16/f32, sharded) → GGUF,
//! named and laid out as llama.cpp writes Mixtral so that its tools load our files.
//!
//! Streaming: the output is planned up front (names, types, shapes), the header is written, then
//! each tensor is produced a slab of rows at a time — read from the mapped shards, converted and
//! quantized in parallel on rayon, written in order — so memory stays bounded whatever the model size.

pub mod hf;
mod plan;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use smoe_quant::format::quantize_row;
use smoe_quant::GgmlType;

pub use plan::{OutType, Source, TensorPlan};

use crate::gguf::GgufPlan;
use crate::tokenizer::Vocab;
use crate::{Error, Result};
use hf::{to_f32, HfConfig, HfWeights};

/// What to write.
#[derive(Clone, Copy, Debug)]
pub struct QuantizeOptions {
    pub ty: OutType,
    /// Every matrix in `ty`, with none of llama.cpp's per-tensor exceptions (for benchmarks).
    pub pure: bool,
}

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub output: PathBuf,
    pub n_tensors: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub elapsed: Duration,
}

/// Elements converted per slab (bounds the memory in flight: ~4M f32 plus their quantized bytes).
const SLAB_ELEMENTS: usize = 1 << 22;

/// Converts the model folder `input` into the GGUF file `output`. `progress(done, total)` reports
/// input bytes consumed. The file is written under a temporary name in the output folder and renamed
/// at the end, so an interrupted run never leaves a file that looks valid.
pub fn quantize(
    input: &Path,
    output: &Path,
    opts: QuantizeOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Summary> {
    let t0 = Instant::now();
    let cfg = HfConfig::read(&input.join("config.json"))?;
    let weights = HfWeights::open(input)?;
    let config_path = input.join("tokenizer_config.json");
    let vocab = Vocab::from_tokenizer_json(
        &input.join("tokenizer.json"),
        config_path.exists().then_some(config_path.as_path()),
    )?;
    if vocab.tokens.len() != cfg.vocab_size {
        return Err(Error::Convert {
            what: format!(
                "{}: tokenizer has {} tokens but config.json says vocab_size {}",
                input.display(),
                vocab.tokens.len(),
                cfg.vocab_size
            ),
        });
    }
    let tensors = plan::plan(&cfg, &weights, opts)?;
    let name = cfg
        .name_or_path
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| input.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mixtral".into());
    let mut gplan = GgufPlan::new();
    plan::add_metadata(&mut gplan, &cfg, &vocab, &name, opts.ty)?;
    for t in &tensors {
        gplan.add_tensor(t.name.clone(), t.ty, &t.dims)?;
    }
    let input_bytes: u64 = tensors.iter().map(|t| t.input_bytes(&weights)).sum();

    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = output.file_name().ok_or_else(|| Error::Convert {
        what: format!("{}: not a file name", output.display()),
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        let mut w = gplan.begin(BufWriter::with_capacity(1 << 22, file))?;
        let mut done = 0u64;
        let mut slab_f32 = Vec::new();
        let mut slab_out = Vec::new();
        for t in &tensors {
            write_tensor(t, &weights, &mut w, &mut slab_f32, &mut slab_out)?;
            done += t.input_bytes(&weights);
            progress(done, input_bytes);
        }
        let buf = w.finish()?;
        let file = buf.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, output).map_err(|source| Error::Io {
            path: output.to_path_buf(),
            source,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let output_bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(Summary {
        output: output.to_path_buf(),
        n_tensors: tensors.len(),
        input_bytes,
        output_bytes,
        elapsed: t0.elapsed(),
    })
}

/// Produces one output tensor slab by slab: each slab is a run of output rows, converted to f32
/// (with the Q/K row permutation applied) and quantized in parallel, then written.
fn write_tensor<W: std::io::Write>(
    t: &TensorPlan,
    weights: &HfWeights,
    w: &mut crate::gguf::GgufWriter<W>,
    slab_f32: &mut Vec<f32>,
    slab_out: &mut Vec<u8>,
) -> Result<()> {
    let n_cols = t.n_cols();
    let row_bytes =
        t.ty.row_bytes(n_cols as u64)
            .ok_or_else(|| Error::Convert {
                what: format!(
                    "tensor '{}': rows of {n_cols} are not whole {} blocks",
                    t.name, t.ty
                ),
            })? as usize;
    let rows_per_slab = (SLAB_ELEMENTS / n_cols).max(1);
    for src in &t.sources {
        let ht = weights.get(&src.hf_name, &src.shape)?;
        let bytes = weights.bytes(ht);
        let esz = hf::dtype_size(ht.dtype);
        let n_rows = src.n_rows();
        for r0 in (0..n_rows).step_by(rows_per_slab) {
            let r1 = (r0 + rows_per_slab).min(n_rows);
            let m = r1 - r0;
            slab_f32.resize(m * n_cols, 0.0);
            slab_out.resize(m * row_bytes, 0);
            let ty = t.ty;
            slab_f32
                .par_chunks_mut(n_cols)
                .zip(slab_out.par_chunks_mut(row_bytes))
                .enumerate()
                .try_for_each(|(i, (row, out))| {
                    let r = src.source_row(r0 + i);
                    to_f32(
                        ht.dtype,
                        &bytes[r * n_cols * esz..(r + 1) * n_cols * esz],
                        row,
                    );
                    quantize_row(ty, row, out)
                })
                .map_err(|e| Error::Convert {
                    what: format!("tensor '{}': {e}", t.name),
                })?;
            w.write_tensor_part(&t.name, slab_out)?;
        }
        weights.release(ht);
    }
    Ok(())
}

impl OutType {
    pub fn ggml(self) -> GgmlType {
        match self {
            OutType::Q4_0 => GgmlType::Q4_0,
            OutType::Q8_0 => GgmlType::Q8_0,
            OutType::F16 => GgmlType::F16,
            OutType::BF16 => GgmlType::BF16,
            OutType::F32 => GgmlType::F32,
        }
    }
}
