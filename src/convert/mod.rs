//! `smoe quantize`: a Hugging Face Mixtral checkpoint (safetensors, bf16/f16/f32, sharded) → GGUF,
//! named and laid out as llama.cpp writes Mixtral so that its tools load our files.
//!
//! Streaming: the output is planned up front (names, types, shapes), the header is written, then
//! each tensor is produced a slab of rows at a time — read from the mapped shards, converted and
//! quantized in parallel on rayon, written in order — so memory stays bounded whatever the model size.

pub mod hf;
pub mod mix;
mod plan;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use smoe_quant::format::{quantize_row, quantize_row_weighted};

pub use mix::Role;
pub use plan::{OutType, Source, TensorPlan};

use crate::gguf::GgufPlan;
use crate::imatrix::Imatrix;
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

/// An importance matrix for [`quantize_with`], and the file it came from (recorded in the output's
/// metadata as llama-quantize records it).
#[derive(Clone, Copy, Debug)]
pub struct ImatrixInput<'a> {
    pub imatrix: &'a Imatrix,
    pub path: &'a Path,
}

/// Converts the model folder `input` into the GGUF file `output`. `progress(done, total)` reports
/// input bytes consumed. The file is written under a temporary name in the output folder and renamed
/// at the end, so an interrupted run never leaves a file that looks valid.
pub fn quantize(
    input: &Path,
    output: &Path,
    opts: QuantizeOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Summary> {
    quantize_with(input, output, opts, None, progress)
}

/// [`quantize`], weighting each column by an importance matrix (llama-quantize `--imatrix`):
/// Q4_0..Q5_1 and the K-quants use their weighted quantizers for every tensor the imatrix covers.
pub fn quantize_with(
    input: &Path,
    output: &Path,
    opts: QuantizeOptions,
    imatrix: Option<ImatrixInput>,
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
    let tensors = plan::plan(&cfg, &weights, opts, imatrix.is_some())?;
    let name = cfg
        .name_or_path
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| input.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mixtral".into());
    let mut gplan = GgufPlan::new();
    plan::add_metadata(&mut gplan, &cfg, &vocab, &name, opts.ty)?;
    if let Some(im) = imatrix {
        plan::add_imatrix_metadata(&mut gplan, im.imatrix, im.path)?;
    }
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
            let importance = match imatrix {
                Some(im) if t.ty.is_quantized() => {
                    im.imatrix
                        .importance(&t.name, t.sources.len(), t.n_cols())?
                }
                _ => None,
            };
            let slabs = Slabs {
                f32s: &mut slab_f32,
                out: &mut slab_out,
            };
            write_tensor(t, &weights, &mut w, slabs, importance.as_deref())?;
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

/// Reused buffers for one slab of rows: f32 values and their quantized bytes.
struct Slabs<'a> {
    f32s: &'a mut Vec<f32>,
    out: &'a mut Vec<u8>,
}

/// Produces one output tensor slab by slab: each slab is a run of output rows, converted to f32
/// (with the Q/K row permutation applied) and quantized in parallel, then written.
/// `importance` [n_sources, n_cols]: per source (expert) column weights for the quantizer.
fn write_tensor<W: std::io::Write>(
    t: &TensorPlan,
    weights: &HfWeights,
    w: &mut crate::gguf::GgufWriter<W>,
    slabs: Slabs,
    importance: Option<&[f32]>,
) -> Result<()> {
    let Slabs {
        f32s: slab_f32,
        out: slab_out,
    } = slabs;
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
    for (i_src, src) in t.sources.iter().enumerate() {
        let qw = importance.map(|w| &w[i_src * n_cols..(i_src + 1) * n_cols]);
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
                    match qw {
                        Some(qw) => quantize_row_weighted(ty, row, out, qw),
                        None => quantize_row(ty, row, out),
                    }
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
