//! Hyper-parameters of a Mixtral model, read from GGUF metadata (`{arch}.*` keys, arch = "llama").

use crate::gguf::GgufHeader;
use crate::{Error, Result};

/// Mixtral hyper-parameters, in the n_* vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    /// Hidden width of one expert's SwiGLU.
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that RoPE rotates (= head_dim for Mixtral).
    pub n_rot: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub rope_freq_base: f32,
    pub rms_eps: f32,
    /// Context the model was trained for.
    pub n_ctx_train: usize,
    /// Attend only to the last `sliding_window` positions (self included), when the file sets one.
    pub sliding_window: Option<usize>,
}

impl Config {
    /// Reads the hyper-parameters of an MoE `llama`-architecture file, checking that they are
    /// consistent (heads divide evenly, experts used ≤ experts, and so on).
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        let path = h.path().display().to_string();
        let bad = |what: String| Error::Model {
            what: format!("{path}: {what}"),
        };
        let arch = h.architecture()?;
        if arch != "llama" {
            return Err(bad(format!(
                "general.architecture is '{arch}'; smoe runs Mixtral-style models, stored by llama.cpp as 'llama'"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_expert = h.get_usize_opt(&key("expert_count"))?.unwrap_or(0);
        if n_expert == 0 {
            return Err(bad(format!(
                "{} is absent or 0: this is a dense llama model, not a Mixture-of-Experts model",
                key("expert_count")
            )));
        }
        let n_embd = h.get_usize(&key("embedding_length"))?;
        let n_head = h.get_usize(&key("attention.head_count"))?;
        let n_head_kv = h
            .get_usize_opt(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        let head_dim = match h.get_usize_opt(&key("attention.key_length"))? {
            Some(d) => d,
            None if n_head > 0 => n_embd / n_head,
            None => 0,
        };
        let n_vocab = match h.get_usize_opt(&key("vocab_size"))? {
            Some(n) => n,
            None => h.get_array("tokenizer.ggml.tokens")?.len(),
        };
        let cfg = Config {
            n_vocab,
            n_embd,
            n_layer: h.get_usize(&key("block_count"))?,
            n_ff: h.get_usize(&key("feed_forward_length"))?,
            n_head,
            n_head_kv,
            head_dim,
            n_rot: h
                .get_usize_opt(&key("rope.dimension_count"))?
                .unwrap_or(head_dim),
            n_expert,
            n_expert_used: h.get_usize(&key("expert_used_count"))?,
            rope_freq_base: h.get_f32_opt(&key("rope.freq_base"))?.unwrap_or(10000.0),
            rms_eps: h.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            n_ctx_train: h.get_usize(&key("context_length"))?,
            sliding_window: h
                .get_usize_opt(&key("attention.sliding_window"))?
                .filter(|&w| w > 0),
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// Checks the relations the forward pass relies on.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let nonzero = [
            ("embedding_length", self.n_embd),
            ("block_count", self.n_layer),
            ("feed_forward_length", self.n_ff),
            ("attention.head_count", self.n_head),
            ("attention.head_count_kv", self.n_head_kv),
            ("head dimension", self.head_dim),
            ("expert_used_count", self.n_expert_used),
            ("context_length", self.n_ctx_train),
            ("vocabulary size", self.n_vocab),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(format!(
                "head_count {} is not a multiple of head_count_kv {}",
                self.n_head, self.n_head_kv
            ));
        }
        if self.n_expert_used > self.n_expert {
            return Err(format!(
                "expert_used_count {} exceeds expert_count {}",
                self.n_expert_used, self.n_expert
            ));
        }
        if self.n_rot > self.head_dim || !self.n_rot.is_multiple_of(2) {
            return Err(format!(
                "rope.dimension_count {} must be even and at most the head dimension {}",
                self.n_rot, self.head_dim
            ));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(format!(
                "layer_norm_rms_epsilon {} is not positive",
                self.rms_eps
            ));
        }
        if !(self.rope_freq_base.is_finite() && self.rope_freq_base > 0.0) {
            return Err(format!(
                "rope.freq_base {} is not positive",
                self.rope_freq_base
            ));
        }
        // Keep every buffer size computable: a hostile file must not make us overflow.
        let dims = [
            self.n_embd,
            self.n_ff,
            self.n_head * self.head_dim,
            self.n_vocab,
        ];
        if dims.iter().any(|&d| d > (1 << 24)) || self.n_layer > 4096 || self.n_expert > 1024 {
            return Err("hyper-parameters are implausibly large".to_string());
        }
        Ok(())
    }

    /// Width of the query projection (n_head × head_dim).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the key and value projections (n_head_kv × head_dim).
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
