//! Shared by the GGUF tests: the content of `tests/fixtures/gguf/ours.gguf` (written by our writer),
//! mirrored in tools/gen_gguf_fixture.py (`OURS_METADATA`, `OURS_TENSORS`): change both together.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // tests may panic: that is how they fail

use smoe::gguf::{Array, GgufPlan, Value, ValueType};
use smoe::quant::GgmlType;

/// (name, type, dims innermost first)
pub const OURS_TENSORS: [(&str, GgmlType, &[u64]); 6] = [
    ("token_embd.weight", GgmlType::F32, &[8, 10]),
    ("blk.0.attn_q.weight", GgmlType::Q8_0, &[32, 8]),
    ("blk.0.ffn_gate_inp.weight", GgmlType::F32, &[8, 4]),
    ("blk.0.ffn_gate_exps.weight", GgmlType::Q4_0, &[32, 16, 4]),
    ("blk.0.ffn_up_exps.weight", GgmlType::Q4K, &[256, 2, 4]),
    ("output.weight", GgmlType::F16, &[8, 10]),
];

pub fn ours_metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", "llama".into()),
        ("general.name", "smoe-writer-test".into()),
        ("general.alignment", 64u32.into()),
        ("llama.expert_count", 4u32.into()),
        ("llama.expert_used_count", 2u32.into()),
        ("test.u8", 200u8.into()),
        ("test.i8", (-100i8).into()),
        ("test.u16", 60000u16.into()),
        ("test.i16", (-30000i16).into()),
        ("test.u32", 4_000_000_000u32.into()),
        ("test.i32", (-2_000_000_000i32).into()),
        ("test.f32", 1.5f32.into()),
        ("test.bool", true.into()),
        ("test.string", "bé ✓".into()),
        ("test.u64", ((1u64 << 63) + 5).into()),
        ("test.i64", (-(1i64 << 62)).into()),
        ("test.f64", (-2.25f64).into()),
        ("test.strings", Array::strings(["a", "bé", ""]).into()),
        (
            "test.long",
            Array::of(ValueType::U32, (0..20u32).map(|i| i * i)).into(),
        ),
        (
            "test.nested",
            Array::new(
                ValueType::Array,
                vec![
                    Array::of(ValueType::I32, [1, 2]).into(),
                    Array::of(ValueType::I32, [3]).into(),
                ],
            )
            .into(),
        ),
        (
            "test.nested_str",
            Array::new(
                ValueType::Array,
                vec![
                    Array::strings(["x"]).into(),
                    Array::strings(["y", "z"]).into(),
                ],
            )
            .into(),
        ),
    ]
}

/// Tensor k's data: byte i = (i * 31 + k * 7) % 251.
pub fn ours_bytes(k: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + k * 7) % 251) as u8).collect()
}

pub fn ours_plan() -> GgufPlan {
    let mut plan = GgufPlan::new();
    for (k, v) in ours_metadata() {
        plan.add_kv(k, v).unwrap();
    }
    for (name, ty, dims) in OURS_TENSORS {
        plan.add_tensor(name, ty, dims).unwrap();
    }
    plan
}

/// The whole of ours.gguf, written through the streaming writer (the last tensor in 3 parts).
pub fn write_ours() -> Vec<u8> {
    let mut w = ours_plan().begin(Vec::new()).unwrap();
    for (k, (name, ty, dims)) in OURS_TENSORS.iter().enumerate() {
        let n = ty.row_bytes(dims[0]).unwrap() * dims[1..].iter().product::<u64>();
        let data = ours_bytes(k, n as usize);
        if k + 1 == OURS_TENSORS.len() {
            let (a, rest) = data.split_at(10);
            let (b, c) = rest.split_at(rest.len() / 2);
            for part in [a, b, c] {
                w.write_tensor_part(name, part).unwrap();
            }
        } else {
            w.write_tensor_data(name, &data).unwrap();
        }
    }
    w.finish().unwrap()
}
