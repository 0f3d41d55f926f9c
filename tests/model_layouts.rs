//! The three ways GGUF files store Mixtral's experts load to the same model: merged 3-D
//! `ffn_{gate,up,down}_exps` (what llama.cpp writes today), legacy per-expert 2-D tensors
//! `blk.N.ffn_{gate,up,down}.E.weight`, and fused `ffn_gate_up_exps` (gate rows first).
//! The files are rewritten from the converted fixture, so the logits must be bit-identical.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[path = "common/tiny.rs"]
mod tiny;

use std::path::Path;

use smoe::gguf::{GgufFile, GgufPlan};
use smoe::model::{CacheType, Mixtral};
use tiny::{all_logits, tiny_gguf};

#[derive(Clone, Copy)]
enum Layout {
    PerExpert,
    FusedGateUp,
}

/// One output tensor: name, type, dims, and its bytes gathered from the source file.
type Part = (String, smoe::quant::GgmlType, Vec<u64>, Vec<u8>);

fn rewrite(src: &GgufFile, layout: Layout, out: &Path) {
    let mut parts: Vec<Part> = Vec::new();
    for t in src.tensors() {
        let name = t.name();
        let data = src.tensor_data(t);
        let is_exps = name.ends_with("_exps.weight");
        if !is_exps {
            parts.push((name.to_string(), t.ty(), t.dims().to_vec(), data.to_vec()));
            continue;
        }
        let (n_cols, n_rows, n_expert) = (t.dims()[0], t.dims()[1], t.dims()[2] as usize);
        let per = data.len() / n_expert;
        match layout {
            Layout::PerExpert => {
                let kind = name.split('.').nth(2).unwrap().trim_end_matches("_exps"); // ffn_gate
                let il = name.split('.').nth(1).unwrap();
                for e in 0..n_expert {
                    parts.push((
                        format!("blk.{il}.{kind}.{e}.weight"),
                        t.ty(),
                        vec![n_cols, n_rows],
                        data[e * per..(e + 1) * per].to_vec(),
                    ));
                }
            }
            Layout::FusedGateUp => {
                if name.contains("ffn_down_exps") {
                    parts.push((name.to_string(), t.ty(), t.dims().to_vec(), data.to_vec()));
                } else if name.contains("ffn_gate_exps") {
                    let up =
                        src.tensor_data(src.tensor(&name.replace("gate_exps", "up_exps")).unwrap());
                    let mut fused = Vec::with_capacity(2 * data.len());
                    for e in 0..n_expert {
                        fused.extend_from_slice(&data[e * per..(e + 1) * per]);
                        fused.extend_from_slice(&up[e * per..(e + 1) * per]);
                    }
                    parts.push((
                        name.replace("gate_exps", "gate_up_exps"),
                        t.ty(),
                        vec![n_cols, 2 * n_rows, n_expert as u64],
                        fused,
                    ));
                }
            }
        }
    }
    let mut plan = GgufPlan::new();
    for (k, v) in src.metadata().iter() {
        plan.add_kv(k, v.clone()).unwrap();
    }
    for (name, ty, dims, _) in &parts {
        plan.add_tensor(name.clone(), *ty, dims).unwrap();
    }
    let mut w = plan.begin(std::fs::File::create(out).unwrap()).unwrap();
    for (name, _, _, bytes) in &parts {
        w.write_tensor_data(name, bytes).unwrap();
    }
    w.finish().unwrap();
}

fn logits(path: &Path) -> Vec<f32> {
    let file = GgufFile::open(path).unwrap();
    let model = Mixtral::load(&file).unwrap();
    all_logits(
        &model,
        &[1, 415, 5565, 302, 4843, 349, 28705, 13],
        CacheType::F16,
    )
}

#[test]
fn per_expert_and_fused_layouts_give_identical_logits() {
    let merged = tiny_gguf("q8_0");
    let want = logits(&merged);
    let src = GgufFile::open(&merged).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (layout, name) in [
        (Layout::PerExpert, "per-expert.gguf"),
        (Layout::FusedGateUp, "fused.gguf"),
    ] {
        let path = dir.path().join(name);
        rewrite(&src, layout, &path);
        let f = GgufFile::open(&path).unwrap();
        let has = |n: &str| f.tensor(n).is_some();
        match layout {
            Layout::PerExpert => {
                assert!(has("blk.1.ffn_down.7.weight") && !has("blk.1.ffn_down_exps.weight"))
            }
            Layout::FusedGateUp => {
                assert!(has("blk.0.ffn_gate_up_exps.weight") && !has("blk.0.ffn_up_exps.weight"))
            }
        }
        assert_eq!(logits(&path), want, "{name}");
    }
}

#[test]
fn missing_tensor_is_a_clear_error() {
    let src = GgufFile::open(tiny_gguf("q8_0")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    let mut plan = GgufPlan::new();
    for (k, v) in src.metadata().iter() {
        plan.add_kv(k, v.clone()).unwrap();
    }
    let keep: Vec<_> = src
        .tensors()
        .iter()
        .filter(|t| t.name() != "blk.1.attn_v.weight")
        .collect();
    for t in &keep {
        plan.add_tensor(t.name().to_string(), t.ty(), t.dims())
            .unwrap();
    }
    let mut w = plan.begin(std::fs::File::create(&path).unwrap()).unwrap();
    for t in &keep {
        w.write_tensor_data(t.name(), src.tensor_data(t)).unwrap();
    }
    w.finish().unwrap();
    let file = GgufFile::open(&path).unwrap();
    let err = Mixtral::load(&file)
        .expect_err("a tensor is missing")
        .to_string();
    assert!(err.contains("blk.1.attn_v.weight"), "{err}");
}

#[test]
fn sliding_window_limits_what_a_position_sees() {
    // With a window of w positions, layer 1 at position p sees p-w+1..=p and layer 2 sees what those
    // saw: a change at position 1 cannot reach positions ≥ 1 + 2(w-1) + 1 in this 2-layer model,
    // while without the window it reaches every later position.
    let src = GgufFile::open(tiny_gguf("f32")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windowed.gguf");
    let mut plan = GgufPlan::new();
    for (k, v) in src.metadata().iter() {
        plan.add_kv(k, v.clone()).unwrap();
    }
    plan.add_kv("llama.attention.sliding_window", 3u32).unwrap();
    for t in src.tensors() {
        plan.add_tensor(t.name().to_string(), t.ty(), t.dims())
            .unwrap();
    }
    let mut w = plan.begin(std::fs::File::create(&path).unwrap()).unwrap();
    for t in src.tensors() {
        w.write_tensor_data(t.name(), src.tensor_data(t)).unwrap();
    }
    w.finish().unwrap();
    let a = [1u32, 415, 5565, 302, 4843, 349, 28705, 13, 1200, 9];
    let mut b = a;
    b[1] = 5713;
    let n_vocab = 32000;
    let row = |l: &[f32], p: usize| l[p * n_vocab..(p + 1) * n_vocab].to_vec();
    let windowed = GgufFile::open(&path).unwrap();
    let model = Mixtral::load(&windowed).unwrap();
    assert_eq!(model.cfg.sliding_window, Some(3));
    let (la, lb) = (
        all_logits(&model, &a, CacheType::F32),
        all_logits(&model, &b, CacheType::F32),
    );
    for p in 1..a.len() {
        assert_eq!(row(&la, p) == row(&lb, p), p >= 6, "windowed, position {p}");
    }
    let full = Mixtral::load(&src).unwrap();
    let (fa, fb) = (
        all_logits(&full, &a, CacheType::F32),
        all_logits(&full, &b, CacheType::F32),
    );
    assert_ne!(row(&fa, 9), row(&fb, 9));
}
