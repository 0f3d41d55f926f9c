//! The streaming writer: round trip through our reader, the committed `ours.gguf` (checked by the
//! `gguf` Python package: `tools/gen_gguf_fixture.py --check-ours`), and misuse errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod common;

use std::path::{Path, PathBuf};

use common::{ours_bytes, ours_metadata, write_ours, OURS_TENSORS};
use smoe::gguf::{inspect, Array, GgufBytes, GgufFile, GgufPlan, Value, ValueType};
use smoe::quant::GgmlType;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

#[test]
fn writer_round_trips_through_the_reader() {
    let bytes = write_ours();
    let f = GgufBytes::parse(&bytes, "ours.gguf").unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    let meta: Vec<(&str, Value)> = f.metadata().iter().map(|(k, v)| (k, v.clone())).collect();
    assert_eq!(meta, ours_metadata());
    assert_eq!(f.tensors().len(), OURS_TENSORS.len());
    for (k, ((name, ty, dims), t)) in OURS_TENSORS.iter().zip(f.tensors()).enumerate() {
        assert_eq!((t.name(), t.ty(), t.dims()), (*name, *ty, *dims));
        assert_eq!(t.offset() % 64, 0);
        assert_eq!(f.tensor_data(t), ours_bytes(k, t.n_bytes() as usize));
    }
    assert_eq!(f.data_offset() % 64, 0);
}

/// Regenerate with `SMOE_UPDATE_FIXTURES=1 cargo test --test gguf_writer`, then
/// `tools/gen_gguf_fixture.py --check-ours tests/fixtures/gguf/ours.gguf --json tests/fixtures/gguf/ours.expected.json`.
#[test]
fn writer_output_is_the_committed_fixture_the_package_reads() {
    let bytes = write_ours();
    let path = fixture("ours.gguf");
    if std::env::var_os("SMOE_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(
        bytes,
        std::fs::read(&path).unwrap(),
        "writer output changed; see this test's doc"
    );
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("ours.expected.json")).unwrap())
            .unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(
        serde_json::to_value(inspect::InspectJson(file.header())).unwrap(),
        expected
    );
}

#[test]
fn writer_to_a_file_streams_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gguf");
    let mut plan = GgufPlan::new();
    plan.add_kv("general.architecture", "llama").unwrap();
    plan.add_tensor("a", GgmlType::Q8_0, &[64, 3]).unwrap();
    plan.add_tensor("b", GgmlType::F32, &[5]).unwrap();
    let out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = plan.begin(out).unwrap();
    assert_eq!(w.next_tensor(), Some(("a", 204)));
    w.write_tensor_data("a", &[7u8; 204]).unwrap();
    w.write_tensor_data("b", &[9u8; 20]).unwrap();
    assert_eq!(w.next_tensor(), None);
    drop(w.finish().unwrap());
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.tensor_data_by_name("a").unwrap(), [7u8; 204]);
    assert_eq!(f.tensor_data_by_name("b").unwrap(), [9u8; 20]);
    assert_eq!(f.tensor("b").unwrap().offset(), 224);
}

fn err_of<T: std::fmt::Debug>(r: smoe::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn writer_misuse_is_an_error() {
    let mut plan = GgufPlan::new();
    plan.add_kv("k", 1u32).unwrap();
    assert!(err_of(plan.add_kv("k", 2u32)).contains("duplicate key 'k'"));
    assert!(err_of(plan.add_kv("general.alignment", 3u32)).contains("power of two"));
    assert!(err_of(plan.add_kv("general.alignment", 64u64)).contains("UINT32"));
    let mixed = Array::new(ValueType::U32, vec![1u32.into(), 2i32.into()]);
    assert!(err_of(plan.add_kv("mixed", mixed)).contains("array of UINT32 has a INT32 at index 1"));
    let mut deep = Value::from(Array::of(ValueType::U8, [1u8]));
    for _ in 0..8 {
        deep = Array::new(ValueType::Array, vec![deep]).into();
    }
    assert!(err_of(plan.add_kv("deep", deep)).contains("nested deeper than 8"));
    assert!(err_of(plan.add_tensor("q", GgmlType::Q4_0, &[33]))
        .contains("not a whole number of Q4_0 blocks"));
    assert!(err_of(plan.add_tensor("z", GgmlType::F32, &[4, 0])).contains("dimension 1 is 0"));
    assert!(err_of(plan.add_tensor("5d", GgmlType::F32, &[1, 1, 1, 1, 1])).contains("at most 4"));
    assert!(
        err_of(plan.add_tensor("big", GgmlType::F32, &[1 << 32, 1 << 32])).contains("overflows")
    );
    plan.add_tensor("a", GgmlType::F32, &[2]).unwrap();
    assert!(err_of(plan.add_tensor("a", GgmlType::F32, &[2])).contains("duplicate tensor name 'a'"));
    plan.add_tensor("b", GgmlType::F32, &[1]).unwrap();

    let mut w = plan.begin(Vec::new()).unwrap();
    assert!(err_of(w.write_tensor_data("b", &[0; 4])).contains("out of order: expected 'a'"));
    assert!(err_of(w.write_tensor_data("a", &[0; 7])).contains("takes 8 bytes, got 7"));
    assert!(err_of(w.write_tensor_part("a", &[0; 9])).contains("only 8 of its 8 remain"));
    w.write_tensor_part("a", &[0; 3]).unwrap();
    assert!(err_of(w.write_tensor_data("a", &[0; 5])).contains("after a partial write"));
    w.write_tensor_part("a", &[0; 5]).unwrap();
    let msg = format!("{:?}", w.finish().map(|_| ()));
    assert!(msg.contains("tensor 'b' is missing 4 bytes"), "{msg}");

    let mut plan = GgufPlan::new();
    plan.add_tensor("only", GgmlType::F32, &[1]).unwrap();
    let mut w = plan.begin(Vec::new()).unwrap();
    w.write_tensor_data("only", &[0; 4]).unwrap();
    assert!(err_of(w.write_tensor_data("extra", &[0; 4])).contains("already written"));
    w.finish().unwrap();
}

#[test]
fn empty_file_round_trips() {
    let bytes = GgufPlan::new().begin(Vec::new()).unwrap().finish().unwrap();
    let f = GgufBytes::parse(&bytes, "empty.gguf").unwrap();
    assert!(f.metadata().is_empty() && f.tensors().is_empty());
}

#[test]
fn moe_parameter_counts() {
    let bytes = write_ours();
    let f = GgufBytes::parse(&bytes, "ours.gguf").unwrap();
    let m = inspect::moe_params(f.header()).unwrap().unwrap();
    assert_eq!((m.n_expert, m.n_expert_used), (4, 2));
    // token_embd 80 + attn_q 256 + router 32 + gate_exps 2048 + up_exps 2048 + output 80
    assert_eq!(m.total, 4544);
    assert_eq!(m.experts, 4096);
    // one embedding row (8) + attn_q + router + half of the experts + output
    assert_eq!(m.touched, 8 + 256 + 32 + 2048 + 80);
    let text = inspect::render_text(f.header());
    assert!(text.contains("MoE: 4 experts, 2 used per token"), "{text}");
    assert!(
        text.contains("4544 in all (4096 in routed experts), 2424 touched per token (53.3 %)"),
        "{text}"
    );

    assert!(inspect::is_routed_expert("blk.3.ffn_down_exps.weight"));
    assert!(inspect::is_routed_expert("blk.3.ffn_gate.7.weight"));
    assert!(!inspect::is_routed_expert("blk.3.ffn_gate_inp.weight"));
    assert!(!inspect::is_routed_expert("blk.3.ffn_up_shexp.weight"));
    assert!(!inspect::is_routed_expert("blk.3.attn_q.weight"));

    // Tied output (no output.weight): the whole embedding is touched. No used count: an error
    // that names the key, and the text report says why it did not count.
    let mut plan = GgufPlan::new();
    plan.add_kv("general.architecture", "llama").unwrap();
    plan.add_kv("llama.expert_count", 8u32).unwrap();
    plan.add_tensor("token_embd.weight", GgmlType::F32, &[4, 6])
        .unwrap();
    let mut w = plan.begin(Vec::new()).unwrap();
    w.write_tensor_data("token_embd.weight", &[0; 96]).unwrap();
    let bytes = w.finish().unwrap();
    let f = GgufBytes::parse(&bytes, "tied.gguf").unwrap();
    let e = inspect::moe_params(f.header()).unwrap_err().to_string();
    assert!(e.contains("missing key 'llama.expert_used_count'"), "{e}");
    assert!(inspect::render_text(f.header()).contains("MoE: parameters not counted"));
}
