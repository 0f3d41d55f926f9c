//! `smoe synth`: a Mixtral-shaped GGUF with random weights, for benchmarks without downloading
//! 26 GB. Shapes and hyper-parameters are Mixtral 8x7B's (n_embd 4096, n_ff 14336, 8 experts, top-2,
//! 32/8 heads, vocab 32000 with the real Mistral tokenizer); only the layer count is chosen. Every
//! matrix takes the chosen type (like `llama-quantize --pure`); norms and routers are F32.
//!
//! Weights are uniform in ±√(3/fan_in) (unit-variance outputs; the token embeddings ±√3), drawn from a ChaCha8 stream seeded by
//! (seed, tensor, row), so a file is the same whatever the thread count.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use smoe_quant::format::quantize_row;
use smoe_quant::GgmlType;

use crate::gguf::{Array, GgufPlan, ValueType};
use crate::tokenizer::Vocab;
use crate::{Error, Result};

/// The shape of the model to write.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub n_layer: usize,
    pub ty: GgmlType,
    pub seed: u64,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// Router skew `S` ≥ 0 (0, the default, routes uniformly): every token embedding gets a
    /// constant channel 0 and every router reads it, which acts as a router bias falling from
    /// `+S` (expert 0) to `-S` (the last expert) against logits of unit spread, so the first
    /// experts win the top-k more often, as in trained models.
    pub router_skew: f32,
}

impl SynthOptions {
    /// Mixtral 8x7B's widths with `n_layer` layers.
    pub fn mixtral(n_layer: usize, ty: GgmlType, seed: u64) -> Self {
        SynthOptions {
            n_layer,
            ty,
            seed,
            n_embd: 4096,
            n_ff: 14336,
            n_head: 32,
            n_head_kv: 8,
            n_expert: 8,
            n_expert_used: 2,
            router_skew: 0.0,
        }
    }
}

/// The constant channel 0 of every token embedding when the routers are skewed.
const SKEW_CHANNEL: f32 = 8.0;

/// Applies the router skew to row `r` of tensor `name` (see [`SynthOptions::router_skew`]):
/// channel 0 of the hidden state is a constant that only the routers read (no other matrix reads
/// it, none writes it), so each router's weight on it is a bias.
fn skew_row(o: &SynthOptions, name: &str, r: usize, row: &mut [f32]) {
    let reads_hidden = [
        "attn_q.",
        "attn_k.",
        "attn_v.",
        "ffn_gate_exps.",
        "ffn_up_exps.",
    ];
    if name == "token_embd.weight" {
        row[0] = SKEW_CHANNEL;
    } else if name.ends_with("ffn_gate_inp.weight") {
        // Row r is expert r: bias S·(1 - 2r/(n_expert-1)) = row[0] · SKEW_CHANNEL / rms, and the
        // hidden state's rms stays ≈ 1 next to unit-variance block outputs... up to the constant
        // itself: RMSNorm leaves channel 0 at about SKEW_CHANNEL / sqrt(1 + 64 / n_embd).
        let span = (o.n_expert.max(2) - 1) as f32;
        let xn0 = SKEW_CHANNEL / (1.0 + SKEW_CHANNEL * SKEW_CHANNEL / o.n_embd as f32).sqrt();
        row[0] = o.router_skew * (1.0 - 2.0 * r as f32 / span) / xn0;
    } else if reads_hidden.iter().any(|k| name.contains(k)) {
        row[0] = 0.0;
    } else if (name.contains("attn_output.") || name.contains("ffn_down_exps."))
        && r.is_multiple_of(o.n_embd)
    {
        row.fill(0.0);
    }
}

/// A tensor to generate: name, type, GGUF dims (innermost first), and whether it is a norm (ones).
struct Planned {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    norm: bool,
}

/// Writes the model to `out` (through a temporary file renamed at the end). `vocab` is the
/// tokenizer stored in the file; its size is the model's n_vocab. `progress(done, total)` counts
/// tensors.
pub fn synth(
    out: &Path,
    o: &SynthOptions,
    vocab: &Vocab,
    progress: &dyn Fn(usize, usize),
) -> Result<u64> {
    if ![
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ]
    .contains(&o.ty)
    {
        return Err(Error::Model {
            what: format!("synth writes q4_0, q8_0, f16, bf16 or f32, not {}", o.ty),
        });
    }
    let n_vocab = vocab.tokens.len();
    let head_dim = o.n_embd / o.n_head;
    let (e, f, v) = (o.n_embd as u64, o.n_ff as u64, n_vocab as u64);
    let (q, kv, ne) = (e, (o.n_head_kv * head_dim) as u64, o.n_expert as u64);
    let mut tensors = Vec::new();
    let mut add = |name: String, ty: GgmlType, dims: Vec<u64>, norm: bool| {
        tensors.push(Planned {
            name,
            ty,
            dims,
            norm,
        })
    };
    add("token_embd.weight".into(), o.ty, vec![e, v], false);
    for il in 0..o.n_layer {
        let g = |s: &str| format!("blk.{il}.{s}");
        add(g("attn_norm.weight"), GgmlType::F32, vec![e], true);
        add(g("attn_q.weight"), o.ty, vec![e, q], false);
        add(g("attn_k.weight"), o.ty, vec![e, kv], false);
        add(g("attn_v.weight"), o.ty, vec![e, kv], false);
        add(g("attn_output.weight"), o.ty, vec![q, e], false);
        add(g("ffn_norm.weight"), GgmlType::F32, vec![e], true);
        add(g("ffn_gate_inp.weight"), GgmlType::F32, vec![e, ne], false);
        add(g("ffn_gate_exps.weight"), o.ty, vec![e, f, ne], false);
        add(g("ffn_down_exps.weight"), o.ty, vec![f, e, ne], false);
        add(g("ffn_up_exps.weight"), o.ty, vec![e, f, ne], false);
    }
    add("output_norm.weight".into(), GgmlType::F32, vec![e], true);
    add("output.weight".into(), o.ty, vec![e, v], false);

    let mut plan = GgufPlan::new();
    let a = "llama";
    let file_type = match o.ty {
        GgmlType::F32 => 0u32,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q8_0 => 7,
        _ => 32,
    };
    plan.add_kv("general.architecture", a)?;
    plan.add_kv(
        "general.name",
        format!("smoe-synth-mixtral-{}L-{}", o.n_layer, o.ty),
    )?;
    plan.add_kv("general.file_type", file_type)?;
    plan.add_kv("general.quantization_version", 2u32)?;
    for (k, val) in [
        ("vocab_size", n_vocab),
        ("context_length", 32768),
        ("embedding_length", o.n_embd),
        ("block_count", o.n_layer),
        ("feed_forward_length", o.n_ff),
        ("rope.dimension_count", head_dim),
        ("attention.head_count", o.n_head),
        ("attention.head_count_kv", o.n_head_kv),
        ("expert_count", o.n_expert),
        ("expert_used_count", o.n_expert_used),
    ] {
        plan.add_kv(format!("{a}.{k}"), val as u32)?;
    }
    plan.add_kv(format!("{a}.rope.freq_base"), 1e6f32)?;
    plan.add_kv(format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5f32)?;
    plan.add_kv("tokenizer.ggml.model", "llama")?;
    plan.add_kv(
        "tokenizer.ggml.tokens",
        Array::strings(vocab.tokens.iter().cloned()),
    )?;
    plan.add_kv(
        "tokenizer.ggml.scores",
        Array::of(ValueType::F32, vocab.scores.iter().copied()),
    )?;
    plan.add_kv(
        "tokenizer.ggml.token_type",
        Array::of(ValueType::I32, vocab.token_types.iter().copied()),
    )?;
    plan.add_kv("tokenizer.ggml.bos_token_id", vocab.bos_id)?;
    plan.add_kv("tokenizer.ggml.eos_token_id", vocab.eos_id)?;
    plan.add_kv("tokenizer.ggml.unknown_token_id", vocab.unk_id)?;
    plan.add_kv("tokenizer.ggml.add_bos_token", vocab.add_bos)?;
    plan.add_kv("tokenizer.ggml.add_eos_token", vocab.add_eos)?;
    for t in &tensors {
        plan.add_tensor(t.name.clone(), t.ty, &t.dims)?;
    }

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".smoe-synth.{}.tmp", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let result = (|| {
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut w = plan.begin(BufWriter::with_capacity(1 << 22, file))?;
        let mut rows_f32 = Vec::new();
        let mut rows_out = Vec::new();
        for (ti, t) in tensors.iter().enumerate() {
            let n_cols = t.dims[0] as usize;
            let n_rows: usize = t.dims[1..].iter().map(|&d| d as usize).product();
            let row_bytes = t.ty.row_bytes(n_cols as u64).unwrap_or(0) as usize;
            // Unit-variance outputs; the embedding rows themselves unit-variance too, so each
            // token's hidden state differs from the others as much as the block outputs do (with
            // tiny embeddings every token's state is nearly the same attention average, and all
            // tokens pick the same experts).
            let bound = if t.name == "token_embd.weight" {
                3f32.sqrt()
            } else {
                (3.0 / n_cols as f32).sqrt()
            };
            let slab = ((1 << 22) / n_cols).max(1);
            for r0 in (0..n_rows).step_by(slab) {
                let m = slab.min(n_rows - r0);
                rows_f32.resize(m * n_cols, 0.0f32);
                rows_out.resize(m * row_bytes, 0u8);
                rows_f32
                    .par_chunks_mut(n_cols)
                    .zip(rows_out.par_chunks_mut(row_bytes))
                    .enumerate()
                    .try_for_each(|(i, (row, bytes))| {
                        if t.norm {
                            row.fill(1.0);
                        } else {
                            let stream = (ti as u64) << 32 | (r0 + i) as u64;
                            let mut rng = ChaCha8Rng::seed_from_u64(
                                o.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                            );
                            for x in row.iter_mut() {
                                *x = rng.random_range(-bound..bound);
                            }
                            if o.router_skew != 0.0 {
                                skew_row(o, &t.name, r0 + i, row);
                            }
                        }
                        quantize_row(t.ty, row, bytes)
                    })?;
                w.write_tensor_part(&t.name, &rows_out)?;
            }
            progress(ti + 1, tensors.len());
        }
        let buf = w.finish()?;
        let file = buf.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, out).map_err(io(out))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(std::fs::metadata(out).map(|m| m.len()).unwrap_or(0))
}
