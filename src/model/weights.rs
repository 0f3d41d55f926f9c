//! GGUF tensor names → typed weight views. The only place in `model` that knows tensor names.
//!
//! Every matrix is a [`Matrix`] borrowed from the file's map: nothing is copied. Norm vectors
//! (n_embd floats) are borrowed when stored as aligned F32, as llama.cpp writes them, and otherwise
//! dequantized once into a small owned vector.

use std::borrow::Cow;

use smoe_quant::format::dequantize_row;
use smoe_quant::{GgmlType, Matrix};

use super::config::Config;
use crate::gguf::{GgufFile, TensorInfo};
use crate::{Error, Result};

/// One layer's weights.
#[derive(Debug)]
pub struct LayerWeights<'a> {
    /// [n_embd]
    pub attn_norm: Cow<'a, [f32]>,
    /// n_head·head_dim rows × n_embd
    pub wq: Matrix<'a>,
    /// n_head_kv·head_dim rows × n_embd
    pub wk: Matrix<'a>,
    /// n_head_kv·head_dim rows × n_embd
    pub wv: Matrix<'a>,
    /// n_embd rows × n_head·head_dim
    pub wo: Matrix<'a>,
    /// [n_embd]
    pub ffn_norm: Cow<'a, [f32]>,
    /// The router: n_expert rows × n_embd.
    pub router: Matrix<'a>,
    /// Per expert: gate and up are n_ff rows × n_embd, down is n_embd rows × n_ff.
    pub experts: Vec<Expert<'a>>,
}

/// One SwiGLU expert: `down(silu(gate·x) * (up·x))`.
#[derive(Debug, Clone, Copy)]
pub struct Expert<'a> {
    pub gate: Matrix<'a>,
    pub up: Matrix<'a>,
    pub down: Matrix<'a>,
}

/// All weights of a Mixtral model, borrowed from its GGUF file.
#[derive(Debug)]
pub struct Weights<'a> {
    /// n_vocab rows × n_embd (one row per token).
    pub token_embd: Matrix<'a>,
    pub layers: Vec<LayerWeights<'a>>,
    /// [n_embd]
    pub output_norm: Cow<'a, [f32]>,
    /// n_vocab rows × n_embd; the embedding itself when the file ties them.
    pub output: Matrix<'a>,
}

impl<'a> Weights<'a> {
    /// Maps every tensor the forward pass needs, checking names, types and shapes against `cfg`.
    /// Accepts the merged expert tensors (`blk.N.ffn_{gate,up,down}_exps`), the fused
    /// `ffn_gate_up_exps` (gate rows first), and the legacy per-expert `blk.N.ffn_gate.E.weight`.
    pub fn load(file: &'a GgufFile, cfg: &Config) -> Result<Self> {
        let l = Loader { file };
        let n_embd = cfg.n_embd;
        let token_embd = l.matrix("token_embd.weight", &[n_embd, cfg.n_vocab])?;
        let output = match file.tensor("output.weight") {
            Some(_) => l.matrix("output.weight", &[n_embd, cfg.n_vocab])?,
            None => token_embd,
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let name = |s: &str| format!("blk.{il}.{s}");
            layers.push(LayerWeights {
                attn_norm: l.vector(&name("attn_norm.weight"), n_embd)?,
                wq: l.matrix(&name("attn_q.weight"), &[n_embd, cfg.q_dim()])?,
                wk: l.matrix(&name("attn_k.weight"), &[n_embd, cfg.kv_dim()])?,
                wv: l.matrix(&name("attn_v.weight"), &[n_embd, cfg.kv_dim()])?,
                wo: l.matrix(&name("attn_output.weight"), &[cfg.q_dim(), n_embd])?,
                ffn_norm: l.vector(&name("ffn_norm.weight"), n_embd)?,
                router: l.matrix(&name("ffn_gate_inp.weight"), &[n_embd, cfg.n_expert])?,
                experts: l.experts(il, cfg)?,
            });
        }
        Ok(Weights {
            token_embd,
            layers,
            output_norm: l.vector("output_norm.weight", n_embd)?,
            output,
        })
    }
}

struct Loader<'a> {
    file: &'a GgufFile,
}

impl<'a> Loader<'a> {
    fn err(&self, what: String) -> Error {
        Error::Model {
            what: format!("{}: {what}", self.file.path().display()),
        }
    }

    /// The tensor with its dims checked against `dims` (innermost first, as stored).
    fn tensor(&self, name: &str, dims: &[usize]) -> Result<(&'a TensorInfo, &'a [u8])> {
        let t = self.file.require_tensor(name)?;
        let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        if t.dims() != want.as_slice() {
            return Err(self.err(format!(
                "tensor '{name}' has shape {:?}, expected {:?} (innermost first)",
                t.dims(),
                want
            )));
        }
        Ok((t, self.file.tensor_data(t)))
    }

    /// A 2-D tensor [n_cols, n_rows] (innermost first) as a matrix of n_rows × n_cols.
    fn matrix(&self, name: &str, dims: &[usize; 2]) -> Result<Matrix<'a>> {
        let (t, data) = self.tensor(name, dims)?;
        Matrix::new(t.ty(), data, dims[1], dims[0])
            .map_err(|e| self.err(format!("tensor '{name}': {e}")))
    }

    /// A 1-D vector of `n` values, borrowed when stored as aligned F32.
    fn vector(&self, name: &str, n: usize) -> Result<Cow<'a, [f32]>> {
        let (t, data) = self.tensor(name, &[n])?;
        if t.ty() == GgmlType::F32 {
            if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(data) {
                return Ok(Cow::Borrowed(v));
            }
        }
        let mut v = vec![0.0f32; n];
        dequantize_row(t.ty(), data, &mut v)
            .map_err(|e| self.err(format!("tensor '{name}': {e}")))?;
        Ok(Cow::Owned(v))
    }

    fn experts(&self, il: usize, cfg: &Config) -> Result<Vec<Expert<'a>>> {
        let (n_embd, n_ff, n_expert) = (cfg.n_embd, cfg.n_ff, cfg.n_expert);
        let name = |s: &str| format!("blk.{il}.{s}");
        // A 3-D stacked tensor [n_cols, n_rows, n_expert] split into n_expert matrices.
        let stacked = |s: &str, n_cols: usize, n_rows: usize| -> Result<Vec<Matrix<'a>>> {
            let (t, data) = self.tensor(&name(s), &[n_cols, n_rows, n_expert])?;
            let all = Matrix::new(t.ty(), data, n_rows * n_expert, n_cols)
                .map_err(|e| self.err(format!("tensor '{}': {e}", name(s))))?;
            Ok((0..n_expert)
                .map(|e| all.rows(e * n_rows, (e + 1) * n_rows))
                .collect())
        };
        let (gate, up) = if self.file.tensor(&name("ffn_gate_up_exps.weight")).is_some() {
            let fused = stacked("ffn_gate_up_exps.weight", n_embd, 2 * n_ff)?;
            fused
                .iter()
                .map(|m| (m.rows(0, n_ff), m.rows(n_ff, 2 * n_ff)))
                .unzip()
        } else if self.file.tensor(&name("ffn_gate_exps.weight")).is_some() {
            (
                stacked("ffn_gate_exps.weight", n_embd, n_ff)?,
                stacked("ffn_up_exps.weight", n_embd, n_ff)?,
            )
        } else {
            let per = |kind: &str, n_cols, n_rows| -> Result<Vec<Matrix<'a>>> {
                (0..n_expert)
                    .map(|e| {
                        self.matrix(&name(&format!("ffn_{kind}.{e}.weight")), &[n_cols, n_rows])
                    })
                    .collect()
            };
            let down = per("down", n_ff, n_embd)?;
            let (gate, up) = (per("gate", n_embd, n_ff)?, per("up", n_embd, n_ff)?);
            return Ok(zip_experts(gate, up, down));
        };
        let down = if self.file.tensor(&name("ffn_down_exps.weight")).is_some() {
            stacked("ffn_down_exps.weight", n_ff, n_embd)?
        } else {
            return Err(self.err(format!(
                "layer {il} has stacked gate/up experts but no 'blk.{il}.ffn_down_exps.weight'"
            )));
        };
        Ok(zip_experts(gate, up, down))
    }
}

fn zip_experts<'a>(
    gate: Vec<Matrix<'a>>,
    up: Vec<Matrix<'a>>,
    down: Vec<Matrix<'a>>,
) -> Vec<Expert<'a>> {
    gate.into_iter()
        .zip(up)
        .zip(down)
        .map(|((gate, up), down)| Expert { gate, up, down })
        .collect()
}
