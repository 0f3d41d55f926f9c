//! What the converter writes: GGUF names, types and shapes for each Hugging Face tensor, the
//! metadata keys. The per-tensor type choices (llama.cpp's mixes) are in [`super::mix`].

use smoe_quant::GgmlType;

use super::hf::{dtype_size, HfConfig, HfWeights};
use super::mix::{tensor_type, MixModel, MixTensor, Role};
use super::QuantizeOptions;
use crate::gguf::{Array, GgufPlan, ValueType};
use crate::tokenizer::Vocab;
use crate::{Error, Result};

/// The `--type` choices: a single type, or one of llama.cpp's K-quant mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    Q4_0,
    Q8_0,
    F16,
    BF16,
    F32,
    /// Q4_K_M: Q4_K, with Q6_K for half the ffn_down layers, Q5_K attn_output, Q8_0 attn_k/v.
    Q4KM,
    /// Q4_K_S: Q4_K, with Q5_K for the first eighth of ffn_down and for attn_output.
    Q4KS,
    /// Q5_K_M: Q5_K, with Q6_K for half the ffn_down layers.
    Q5KM,
    /// Q5_K_S: Q5_K.
    Q5KS,
    /// Q6_K: Q6_K everywhere.
    Q6K,
    /// Q3_K_S: Q3_K, with Q5_K attn_output in 8-expert models.
    Q3KS,
    /// Q3_K_M: Q3_K, with Q4_K ffn_down (Q5_K in the first sixteenth) and Q5_K attn_output.
    Q3KM,
    /// Q3_K_L: Q3_K, with Q5_K ffn_down.
    Q3KL,
    /// Q2_K: Q2_K, with Q3_K ffn_down and Q5_K attn_output in 8-expert models.
    Q2K,
}

/// `--type` names, as llama-quantize spells them (case-insensitive).
const TYPE_NAMES: [(&str, OutType); 14] = [
    ("q4_0", OutType::Q4_0),
    ("q8_0", OutType::Q8_0),
    ("f16", OutType::F16),
    ("bf16", OutType::BF16),
    ("f32", OutType::F32),
    ("q4_k_m", OutType::Q4KM),
    ("q4_k_s", OutType::Q4KS),
    ("q5_k_m", OutType::Q5KM),
    ("q5_k_s", OutType::Q5KS),
    ("q6_k", OutType::Q6K),
    ("q3_k_s", OutType::Q3KS),
    ("q3_k_m", OutType::Q3KM),
    ("q3_k_l", OutType::Q3KL),
    ("q2_k", OutType::Q2K),
];

impl std::str::FromStr for OutType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        TYPE_NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|&(_, ty)| ty)
            .ok_or_else(|| {
                let names: Vec<&str> = TYPE_NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown type '{s}': expected one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for OutType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = TYPE_NAMES
            .iter()
            .find(|(_, t)| t == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

impl OutType {
    /// llama.cpp's `general.file_type` (enum llama_ftype).
    fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q4_0 => 2,
            OutType::Q8_0 => 7,
            OutType::Q2K => 10,
            OutType::Q3KS => 11,
            OutType::Q3KM => 12,
            OutType::Q3KL => 13,
            OutType::Q4KS => 14,
            OutType::Q4KM => 15,
            OutType::Q5KS => 16,
            OutType::Q5KM => 17,
            OutType::Q6K => 18,
            OutType::BF16 => 32,
        }
    }

    /// One of llama.cpp's K-quant mixes.
    pub fn is_k_mix(self) -> bool {
        !matches!(
            self,
            OutType::Q4_0 | OutType::Q8_0 | OutType::F16 | OutType::BF16 | OutType::F32
        )
    }

    /// The type most matrices get (the mix's base type).
    pub fn ggml(self) -> GgmlType {
        match self {
            OutType::Q4_0 => GgmlType::Q4_0,
            OutType::Q8_0 => GgmlType::Q8_0,
            OutType::F16 => GgmlType::F16,
            OutType::BF16 => GgmlType::BF16,
            OutType::F32 => GgmlType::F32,
            OutType::Q4KM | OutType::Q4KS => GgmlType::Q4K,
            OutType::Q5KM | OutType::Q5KS => GgmlType::Q5K,
            OutType::Q6K => GgmlType::Q6K,
            OutType::Q3KS | OutType::Q3KM | OutType::Q3KL => GgmlType::Q3K,
            OutType::Q2K => GgmlType::Q2K,
        }
    }
}

/// One Hugging Face tensor (or a run of its rows) feeding an output tensor.
#[derive(Clone, Debug)]
pub struct Source {
    pub hf_name: String,
    /// [n_rows, n_cols], outermost first as safetensors stores it.
    pub shape: Vec<usize>,
    /// Heads for llama.cpp's Q/K row permutation (Hugging Face rotates halves of each head, ggml
    /// rotates adjacent pairs): output row 2i+j of a head reads source row j·head_dim/2 + i.
    pub permute_heads: Option<usize>,
}

impl Source {
    /// Rows: the outer dimension of a matrix, 1 for a vector.
    pub fn n_rows(&self) -> usize {
        match self.shape.as_slice() {
            [rows, _] => *rows,
            _ => 1,
        }
    }

    /// The source row that output row `r` comes from.
    pub fn source_row(&self, r: usize) -> usize {
        match self.permute_heads {
            Some(n_head) => {
                let hd = self.n_rows() / n_head;
                let (h, w) = (r / hd, r % hd);
                let (i, j) = (w / 2, w % 2);
                h * hd + j * (hd / 2) + i
            }
            None => r,
        }
    }
}

/// One output tensor.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    pub ty: GgmlType,
    /// GGUF dims, innermost first.
    pub dims: Vec<u64>,
    /// Concatenated in order (the experts of a stacked tensor).
    pub sources: Vec<Source>,
    /// What the tensor is (the type choice and the importance matrix go by it).
    pub role: Role,
}

impl TensorPlan {
    pub fn n_cols(&self) -> usize {
        self.dims[0] as usize
    }

    pub fn input_bytes(&self, w: &HfWeights) -> u64 {
        self.sources
            .iter()
            .map(|s| {
                let esz = w.tensors.get(&s.hf_name).map_or(0, |t| dtype_size(t.dtype));
                (s.shape.iter().product::<usize>() * esz) as u64
            })
            .sum()
    }
}

/// Plans every output tensor, in llama.cpp's order (embedding, layers, output norm, output).
/// `has_imatrix`: an importance matrix will be used (one of llama.cpp's rules depends on it).
pub fn plan(
    cfg: &HfConfig,
    w: &HfWeights,
    opts: QuantizeOptions,
    has_imatrix: bool,
) -> Result<Vec<TensorPlan>> {
    let (n_embd, n_ff, n_vocab) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (n_head, n_head_kv, hd) = (cfg.num_attention_heads, cfg.n_head_kv(), cfg.head_dim());
    let n_expert = cfg.num_local_experts;
    let model = MixModel {
        n_layer: cfg.num_hidden_layers,
        n_expert,
        n_gqa: n_head / n_head_kv.max(1),
        has_imatrix,
    };
    let mut out = Vec::new();
    let mut add = |name: String, role: Role, sources: Vec<Source>, dims: Vec<u64>| {
        let il = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok());
        let n_cols = dims[0] as usize;
        let ty = tensor_type(opts.ty, opts.pure, model, MixTensor { role, il, n_cols });
        out.push(TensorPlan {
            name,
            ty,
            dims,
            sources,
            role,
        });
    };
    let src = |hf: String, shape: Vec<usize>, permute_heads: Option<usize>| Source {
        hf_name: hf,
        shape,
        permute_heads,
    };
    let mat = |hf: String, rows: usize, cols: usize| vec![src(hf, vec![rows, cols], None)];
    let vec1 = |hf: String, n: usize| vec![src(hf, vec![n], None)];

    add(
        "token_embd.weight".into(),
        Role::TokenEmbd,
        mat("model.embed_tokens.weight".into(), n_vocab, n_embd),
        vec![n_embd as u64, n_vocab as u64],
    );
    for il in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{il}");
        let g = |s: &str| format!("blk.{il}.{s}");
        let (e, f, q, kv) = (
            n_embd as u64,
            n_ff as u64,
            (n_head * hd) as u64,
            (n_head_kv * hd) as u64,
        );
        add(
            g("attn_norm.weight"),
            Role::Norm,
            vec1(format!("{p}.input_layernorm.weight"), n_embd),
            vec![e],
        );
        add(
            g("attn_q.weight"),
            Role::AttnQ,
            vec![src(
                format!("{p}.self_attn.q_proj.weight"),
                vec![n_head * hd, n_embd],
                Some(n_head),
            )],
            vec![e, q],
        );
        add(
            g("attn_k.weight"),
            Role::AttnK,
            vec![src(
                format!("{p}.self_attn.k_proj.weight"),
                vec![n_head_kv * hd, n_embd],
                Some(n_head_kv),
            )],
            vec![e, kv],
        );
        add(
            g("attn_v.weight"),
            Role::AttnV,
            mat(
                format!("{p}.self_attn.v_proj.weight"),
                n_head_kv * hd,
                n_embd,
            ),
            vec![e, kv],
        );
        add(
            g("attn_output.weight"),
            Role::AttnOutput,
            mat(format!("{p}.self_attn.o_proj.weight"), n_embd, n_head * hd),
            vec![q, e],
        );
        add(
            g("ffn_norm.weight"),
            Role::Norm,
            vec1(format!("{p}.post_attention_layernorm.weight"), n_embd),
            vec![e],
        );
        add(
            g("ffn_gate_inp.weight"),
            Role::Router,
            mat(
                format!("{p}.block_sparse_moe.gate.weight"),
                n_expert,
                n_embd,
            ),
            vec![e, n_expert as u64],
        );
        let experts = |wn: &str, rows: usize, cols: usize| -> Vec<Source> {
            (0..n_expert)
                .map(|x| {
                    src(
                        format!("{p}.block_sparse_moe.experts.{x}.{wn}.weight"),
                        vec![rows, cols],
                        None,
                    )
                })
                .collect()
        };
        let ne = n_expert as u64;
        add(
            g("ffn_gate_exps.weight"),
            Role::FfnGate,
            experts("w1", n_ff, n_embd),
            vec![e, f, ne],
        );
        add(
            g("ffn_down_exps.weight"),
            Role::FfnDown,
            experts("w2", n_embd, n_ff),
            vec![f, e, ne],
        );
        add(
            g("ffn_up_exps.weight"),
            Role::FfnUp,
            experts("w3", n_ff, n_embd),
            vec![e, f, ne],
        );
    }
    add(
        "output_norm.weight".into(),
        Role::Norm,
        vec1("model.norm.weight".into(), n_embd),
        vec![n_embd as u64],
    );
    let lm_head = if cfg.tie_word_embeddings && !w.tensors.contains_key("lm_head.weight") {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    add(
        "output.weight".into(),
        Role::Output,
        mat(lm_head.into(), n_vocab, n_embd),
        vec![n_embd as u64, n_vocab as u64],
    );
    // Check every source up front: a missing tensor or wrong shape fails before anything is written.
    for t in &out {
        for s in &t.sources {
            w.get(&s.hf_name, &s.shape)?;
            if let Some(h) = s.permute_heads {
                if s.n_rows() % (2 * h) != 0 {
                    return Err(Error::Convert {
                        what: format!(
                            "tensor '{}': {} rows do not split into {h} heads of even size",
                            s.hf_name,
                            s.n_rows()
                        ),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The keys llama-quantize adds when it uses an importance matrix.
pub fn add_imatrix_metadata(
    p: &mut GgufPlan,
    imatrix: &crate::imatrix::Imatrix,
    path: &std::path::Path,
) -> Result<()> {
    // llama-quantize stores these through 128-byte override slots: at most 127 bytes each.
    let clip = |s: String| -> String {
        let mut end = s.len().min(127);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    };
    p.add_kv(
        "quantize.imatrix.file",
        clip(path.display().to_string()).as_str(),
    )?;
    if let Some(d) = imatrix.datasets.first() {
        p.add_kv("quantize.imatrix.dataset", clip(d.clone()).as_str())?;
    }
    p.add_kv(
        "quantize.imatrix.entries_count",
        imatrix.entries.len() as u32,
    )?;
    if imatrix.chunk_count > 0 {
        p.add_kv("quantize.imatrix.chunks_count", imatrix.chunk_count)?;
    }
    Ok(())
}

/// The metadata llama.cpp's converter writes for Mixtral (architecture `llama`), and the tokenizer.
pub fn add_metadata(
    p: &mut GgufPlan,
    cfg: &HfConfig,
    vocab: &Vocab,
    name: &str,
    ty: OutType,
) -> Result<()> {
    let a = "llama";
    p.add_kv("general.architecture", a)?;
    p.add_kv("general.name", name)?;
    p.add_kv("general.file_type", ty.file_type())?;
    p.add_kv("general.quantization_version", 2u32)?;
    p.add_kv(format!("{a}.vocab_size"), cfg.vocab_size as u32)?;
    p.add_kv(
        format!("{a}.context_length"),
        cfg.max_position_embeddings as u32,
    )?;
    p.add_kv(format!("{a}.embedding_length"), cfg.hidden_size as u32)?;
    p.add_kv(format!("{a}.block_count"), cfg.num_hidden_layers as u32)?;
    p.add_kv(
        format!("{a}.feed_forward_length"),
        cfg.intermediate_size as u32,
    )?;
    p.add_kv(format!("{a}.rope.dimension_count"), cfg.head_dim() as u32)?;
    p.add_kv(format!("{a}.rope.freq_base"), cfg.rope_theta() as f32)?;
    p.add_kv(
        format!("{a}.attention.head_count"),
        cfg.num_attention_heads as u32,
    )?;
    p.add_kv(
        format!("{a}.attention.head_count_kv"),
        cfg.n_head_kv() as u32,
    )?;
    if cfg.head_dim.is_some() {
        p.add_kv(format!("{a}.attention.key_length"), cfg.head_dim() as u32)?;
        p.add_kv(format!("{a}.attention.value_length"), cfg.head_dim() as u32)?;
    }
    p.add_kv(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        cfg.rms_norm_eps as f32,
    )?;
    p.add_kv(format!("{a}.expert_count"), cfg.num_local_experts as u32)?;
    p.add_kv(
        format!("{a}.expert_used_count"),
        cfg.num_experts_per_tok as u32,
    )?;
    if let Some(w) = cfg.sliding_window {
        p.add_kv(format!("{a}.attention.sliding_window"), w as u32)?;
    }
    p.add_kv("tokenizer.ggml.model", "llama")?;
    p.add_kv(
        "tokenizer.ggml.tokens",
        Array::strings(vocab.tokens.iter().cloned()),
    )?;
    p.add_kv(
        "tokenizer.ggml.scores",
        Array::of(ValueType::F32, vocab.scores.iter().copied()),
    )?;
    p.add_kv(
        "tokenizer.ggml.token_type",
        Array::of(ValueType::I32, vocab.token_types.iter().copied()),
    )?;
    p.add_kv("tokenizer.ggml.bos_token_id", vocab.bos_id)?;
    p.add_kv("tokenizer.ggml.eos_token_id", vocab.eos_id)?;
    p.add_kv("tokenizer.ggml.unknown_token_id", vocab.unk_id)?;
    p.add_kv("tokenizer.ggml.add_bos_token", vocab.add_bos)?;
    p.add_kv("tokenizer.ggml.add_eos_token", vocab.add_eos)?;
    if let Some(t) = &vocab.chat_template {
        p.add_kv("tokenizer.chat_template", t.as_str())?;
    }
    Ok(())
}
