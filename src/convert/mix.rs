//! Which ggml type each tensor gets: llama.cpp's mixes (`llama_tensor_get_type` in
//! `src/llama-quant.cpp`) for the file types `smoe quantize` writes, restricted to what a Mixtral
//! (architecture `llama`) has: separate Q/K/V, stacked experts, an untied output matrix.
//!
//! The rules, for the K-quant mixes:
//! - the router (`ffn_gate_inp`) and the norms are not quantized (f32);
//! - `output.weight` goes to Q6_K (Q8_0 when its rows are not whole 256-blocks);
//! - in 8-expert models `attn_k` and `attn_v` go to Q8_0 (about 128 MB on Mixtral 8x7B);
//!   otherwise `attn_v` gets Q6_K in the `use_more_bits` layers for Q4_K_M / Q5_K_M and Q5_K in
//!   the first 4 layers for Q4_K_S;
//! - `ffn_down` gets Q6_K in the `use_more_bits` layers for Q4_K_M / Q5_K_M, and Q5_K in the first
//!   eighth of the layers for Q4_K_S;
//! - `attn_output` gets Q5_K in 8-expert models for Q2_K / Q3_K_S / Q3_K_M / Q4_K_S / Q4_K_M;
//! - Q2_K: `ffn_down` Q3_K (and, without 8 experts, `attn_v` Q4_K at 4+ query heads per KV head,
//!   else Q3_K, `attn_output` Q3_K); Q3_K_M: `ffn_down` Q5_K in the first sixteenth of the layers,
//!   Q4_K after (without 8 experts: `attn_v` Q5_K in the first two layers then Q4_K,
//!   `attn_output` Q4_K); Q3_K_L: `ffn_down` Q5_K (without 8 experts: `attn_v` and
//!   `attn_output` Q5_K);
//! - everything else takes the file type's base type (Q2_K, Q3_K, Q4_K, Q5_K or Q6_K);
//! - last, a type whose blocks do not divide the row falls back (`tensor_type_fallback`):
//!   Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K / Q3_K → Q4_0, and to F16 when even 32 does not
//!   divide the row.

use smoe_quant::GgmlType;

use super::OutType;

/// What a tensor is, for the type choice (llama.cpp's `tensor_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Norm,
    Router,
    TokenEmbd,
    Output,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
}

/// The model facts the rules look at.
#[derive(Clone, Copy, Debug)]
pub struct MixModel {
    pub n_layer: usize,
    pub n_expert: usize,
    /// Query heads per KV head.
    pub n_gqa: usize,
    /// An importance matrix will be used.
    pub has_imatrix: bool,
}

/// One tensor to place: its role, its layer (`il`, for per-layer tensors) and its row length.
#[derive(Clone, Copy, Debug)]
pub struct MixTensor {
    pub role: Role,
    pub il: Option<usize>,
    pub n_cols: usize,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third in between.
pub fn use_more_bits(il: usize, n_layer: usize) -> bool {
    il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2
}

/// The type of one tensor in a file of type `ty`; `pure` gives every matrix the base type (still
/// falling back where the rows do not fit its blocks).
pub fn tensor_type(ty: OutType, pure: bool, m: MixModel, t: MixTensor) -> GgmlType {
    let base = ty.ggml();
    let chosen = match t.role {
        Role::Norm | Role::Router => return GgmlType::F32,
        _ if pure || !base.is_quantized() => base,
        _ if ty.is_k_mix() => k_mix_type(ty, m, t),
        // Q4_0: the output in Q6_K (Q8_0 where its rows are not whole 256-blocks, by the
        // fallback) and, in 8-expert models, attn_k / attn_v in Q8_0, as llama-quantize does.
        Role::Output if ty == OutType::Q4_0 => GgmlType::Q6K,
        Role::AttnK | Role::AttnV if ty == OutType::Q4_0 && m.n_expert == 8 => GgmlType::Q8_0,
        // With an importance matrix llama.cpp guards the first eighth of ffn_down with Q4_1.
        Role::FfnDown
            if ty == OutType::Q4_0 && m.has_imatrix && t.il.unwrap_or(0) < m.n_layer / 8 =>
        {
            GgmlType::Q4_1
        }
        _ => base,
    };
    fallback(chosen, t.n_cols)
}

/// `llama_tensor_get_type_impl` for the K-quant mixes (before the fallback).
fn k_mix_type(ty: OutType, m: MixModel, t: MixTensor) -> GgmlType {
    use OutType as O;
    let base = ty.ggml();
    let il = t.il.unwrap_or(0);
    let more_bits = use_more_bits(il, m.n_layer);
    match t.role {
        Role::Output => {
            if !t.n_cols.is_multiple_of(base.block_size()) {
                GgmlType::Q8_0
            } else {
                GgmlType::Q6K
            }
        }
        Role::AttnV | Role::AttnK if m.n_expert == 8 => GgmlType::Q8_0,
        Role::AttnV => match ty {
            O::Q2K if m.n_gqa >= 4 => GgmlType::Q4K,
            O::Q2K => GgmlType::Q3K,
            // llama.cpp counts attn_v tensors, one a layer: the first two.
            O::Q3KM if il < 2 => GgmlType::Q5K,
            O::Q3KM => GgmlType::Q4K,
            O::Q3KL => GgmlType::Q5K,
            O::Q4KM | O::Q5KM if more_bits => GgmlType::Q6K,
            O::Q4KS if il < 4 => GgmlType::Q5K,
            _ => base,
        },
        Role::FfnDown => match ty {
            O::Q2K => GgmlType::Q3K,
            O::Q3KM if il < m.n_layer / 16 => GgmlType::Q5K,
            O::Q3KM => GgmlType::Q4K,
            O::Q3KL => GgmlType::Q5K,
            O::Q4KM | O::Q5KM if more_bits => GgmlType::Q6K,
            O::Q4KS if il < m.n_layer / 8 => GgmlType::Q5K,
            _ => base,
        },
        Role::AttnOutput if m.n_expert == 8 => match ty {
            O::Q2K | O::Q3KS | O::Q3KM | O::Q4KS | O::Q4KM => GgmlType::Q5K,
            _ => base,
        },
        Role::AttnOutput => match ty {
            O::Q2K => GgmlType::Q3K,
            O::Q3KM => GgmlType::Q4K,
            O::Q3KL => GgmlType::Q5K,
            _ => base,
        },
        _ => base,
    }
}

/// `tensor_type_fallback`: a type whose blocks do not divide `n_cols` becomes a 32-element type,
/// and F16 when 32 does not divide it either.
pub fn fallback(ty: GgmlType, n_cols: usize) -> GgmlType {
    if n_cols.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let to = match ty {
        GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => other,
    };
    if n_cols.is_multiple_of(to.block_size()) {
        to
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp_on_32_layers() {
        // Mixtral 8x7B: layers 0..4, 28..32 and every third from 6.
        let got: Vec<usize> = (0..32).filter(|&il| use_more_bits(il, 32)).collect();
        assert_eq!(
            got,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        assert_eq!(
            (0..2)
                .filter(|&il| use_more_bits(il, 2))
                .collect::<Vec<_>>(),
            [1]
        );
    }

    /// Mixtral 8x7B's shape for the rules.
    const MIXTRAL: MixModel = MixModel {
        n_layer: 32,
        n_expert: 8,
        n_gqa: 4,
        has_imatrix: false,
    };

    /// The type of a tensor of Mixtral 8x7B in a file of type `ty`.
    fn mixtral(ty: OutType, role: Role, il: Option<usize>, n_cols: usize) -> GgmlType {
        tensor_type(ty, false, MIXTRAL, MixTensor { role, il, n_cols })
    }

    #[test]
    fn mixtral_8x7b_q4_k_m() {
        let ty = |role, il, n_cols| mixtral(OutType::Q4KM, role, il, n_cols);
        assert_eq!(ty(Role::Output, None, 4096), GgmlType::Q6K);
        assert_eq!(ty(Role::TokenEmbd, None, 4096), GgmlType::Q4K);
        assert_eq!(ty(Role::AttnK, Some(5), 4096), GgmlType::Q8_0);
        assert_eq!(ty(Role::AttnV, Some(0), 4096), GgmlType::Q8_0);
        assert_eq!(ty(Role::AttnOutput, Some(7), 4096), GgmlType::Q5K);
        assert_eq!(ty(Role::FfnDown, Some(0), 14336), GgmlType::Q6K);
        assert_eq!(ty(Role::FfnDown, Some(4), 14336), GgmlType::Q4K);
        assert_eq!(ty(Role::FfnDown, Some(6), 14336), GgmlType::Q6K);
        assert_eq!(ty(Role::FfnGate, Some(0), 4096), GgmlType::Q4K);
        assert_eq!(ty(Role::Router, Some(0), 4096), GgmlType::F32);
    }

    #[test]
    fn mixtral_8x7b_q3_k_and_q2_k() {
        let ty = |t, role, il| mixtral(t, role, il, 4096);
        use OutType as O;
        for t in [O::Q2K, O::Q3KS, O::Q3KM, O::Q3KL] {
            assert_eq!(ty(t, Role::Output, None), GgmlType::Q6K, "{t}");
            assert_eq!(ty(t, Role::AttnV, Some(0)), GgmlType::Q8_0, "{t}");
            assert_eq!(ty(t, Role::AttnK, Some(9)), GgmlType::Q8_0, "{t}");
        }
        assert_eq!(ty(O::Q2K, Role::AttnQ, Some(3)), GgmlType::Q2K);
        assert_eq!(ty(O::Q2K, Role::FfnDown, Some(3)), GgmlType::Q3K);
        assert_eq!(ty(O::Q2K, Role::AttnOutput, Some(3)), GgmlType::Q5K);
        assert_eq!(ty(O::Q3KS, Role::FfnDown, Some(0)), GgmlType::Q3K);
        assert_eq!(ty(O::Q3KS, Role::AttnOutput, Some(0)), GgmlType::Q5K);
        // Q3_K_M: the first sixteenth of ffn_down in Q5_K, the rest Q4_K.
        assert_eq!(ty(O::Q3KM, Role::FfnDown, Some(1)), GgmlType::Q5K);
        assert_eq!(ty(O::Q3KM, Role::FfnDown, Some(2)), GgmlType::Q4K);
        assert_eq!(ty(O::Q3KM, Role::FfnGate, Some(2)), GgmlType::Q3K);
        assert_eq!(ty(O::Q3KM, Role::AttnOutput, Some(2)), GgmlType::Q5K);
        // Q3_K_L: ffn_down in Q5_K; attn_output keeps Q3_K in 8-expert models (not in
        // llama.cpp's list there).
        assert_eq!(ty(O::Q3KL, Role::FfnDown, Some(20)), GgmlType::Q5K);
        assert_eq!(ty(O::Q3KL, Role::AttnOutput, Some(20)), GgmlType::Q3K);
        // Without 8 experts, Q2_K's attn_v follows the GQA ratio.
        let attn_v = |n_gqa| {
            let m = MixModel {
                n_expert: 1,
                n_gqa,
                ..MIXTRAL
            };
            let t = MixTensor {
                role: Role::AttnV,
                il: Some(5),
                n_cols: 4096,
            };
            tensor_type(O::Q2K, false, m, t)
        };
        assert_eq!(attn_v(4), GgmlType::Q4K);
        assert_eq!(attn_v(1), GgmlType::Q3K);
    }

    #[test]
    fn mixtral_8x7b_q4_0_as_llama_quantize() {
        let m = MIXTRAL;
        let ty = |role, il, n_cols| mixtral(OutType::Q4_0, role, il, n_cols);
        assert_eq!(ty(Role::Output, None, 4096), GgmlType::Q6K);
        assert_eq!(ty(Role::Output, None, 64), GgmlType::Q8_0);
        assert_eq!(ty(Role::TokenEmbd, None, 4096), GgmlType::Q4_0);
        assert_eq!(ty(Role::AttnK, Some(3), 4096), GgmlType::Q8_0);
        assert_eq!(ty(Role::AttnQ, Some(3), 4096), GgmlType::Q4_0);
        assert_eq!(ty(Role::FfnDown, Some(0), 14336), GgmlType::Q4_0);
        let pure = tensor_type(
            OutType::Q4_0,
            true,
            m,
            MixTensor {
                role: Role::Output,
                il: None,
                n_cols: 4096,
            },
        );
        assert_eq!(pure, GgmlType::Q4_0);
    }

    #[test]
    fn fallbacks_for_narrow_rows() {
        assert_eq!(fallback(GgmlType::Q4K, 32), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::Q5K, 64), GgmlType::Q5_1);
        assert_eq!(fallback(GgmlType::Q6K, 96), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::Q3K, 32), GgmlType::Q4_0);
        assert_eq!(fallback(GgmlType::Q4K, 40), GgmlType::F16);
        assert_eq!(fallback(GgmlType::Q4_0, 40), GgmlType::F16);
        assert_eq!(fallback(GgmlType::Q4K, 512), GgmlType::Q4K);
        assert_eq!(fallback(GgmlType::F16, 7), GgmlType::F16);
    }
}
