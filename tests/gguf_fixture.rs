//! Our reader against the ground truth: `all_types.gguf` was written by llama.cpp's `gguf` Python
//! package and `all_types.expected.json` / `all_types.tensor_fnv.json` are what that package reads
//! back (tools/gen_gguf_fixture.py).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use smoe::gguf::{inspect, GgufFile, Value};
use smoe::quant::GgmlType;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn read_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[test]
fn inspect_json_matches_the_gguf_package() {
    let file = GgufFile::open(fixture("all_types.gguf")).unwrap();
    let ours = serde_json::to_value(inspect::InspectJson(file.header())).unwrap();
    let expected = read_json("all_types.expected.json");
    assert_eq!(ours, expected);
}

#[test]
fn cli_inspect_json_matches_the_gguf_package() {
    let out = Command::new(env!("CARGO_BIN_EXE_smoe"))
        .args(["inspect", "--json"])
        .arg(fixture("all_types.gguf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours, read_json("all_types.expected.json"));
}

#[test]
fn cli_inspect_text_summarizes_and_errors_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_smoe"))
        .arg("inspect")
        .arg(fixture("all_types.gguf"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "[INT32 × 40]",
        "[STRING × 20]",
        "t.q6_k",
        "Q6_K",
        "totals by type",
        "MoE: 4 experts, 2 used",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_smoe"))
        .args(["inspect", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: /nonexistent/model.gguf"), "{err}");
}

#[test]
fn tensor_views_hold_the_bytes_the_package_reads() {
    let file = GgufFile::open(fixture("all_types.gguf")).unwrap();
    let want: BTreeMap<String, String> =
        serde_json::from_value(read_json("all_types.tensor_fnv.json")).unwrap();
    assert_eq!(want.len(), file.tensors().len());
    let map = file.bytes().as_ptr_range();
    for t in file.tensors() {
        let data = file.tensor_data(t);
        assert_eq!(data.len() as u64, t.n_bytes());
        // A view into the map, not a copy.
        assert!(map.contains(&data.as_ptr()));
        assert_eq!(
            format!("{:016x}", fnv1a64(data)),
            want[t.name()],
            "{}",
            t.name()
        );
    }
    let types: Vec<GgmlType> = file.tensors().iter().map(|t| t.ty()).collect();
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ] {
        assert!(types.contains(&ty), "{ty} missing from the fixture");
    }
}

#[test]
fn typed_getters() {
    let f = GgufFile::open(fixture("all_types.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("test.uint8").unwrap(), 250);
    assert_eq!(f.get_u32("test.uint16").unwrap(), 65000);
    assert_eq!(f.get_u64("test.uint64").unwrap(), u64::MAX - 1);
    assert_eq!(f.get_i64("test.int8").unwrap(), -120);
    assert_eq!(f.get_f32("test.float32").unwrap(), 0.1);
    assert!(f.get_bool("test.bool_true").unwrap());
    assert_eq!(f.get_str("test.string").unwrap(), "héllo, wörld ✓");
    assert_eq!(
        f.get_str_array("test.array.long_string").unwrap()[19],
        "tok19"
    );
    assert_eq!(
        f.get_f32_array("test.array.float32").unwrap(),
        [0.5, -1.25, 0.003]
    );
    assert_eq!(f.get_i64_array("test.array.long_int32").unwrap().len(), 40);
    let nested = f.get_array("test.array.nested").unwrap();
    assert_eq!(
        nested.items[2],
        Value::Array(smoe::gguf::Array::of(smoe::gguf::ValueType::I32, [4, 5, 6]))
    );
    assert_eq!(f.get_usize_opt("no.such.key").unwrap(), None);

    let msg = |r: smoe::Result<u32>| r.unwrap_err().to_string();
    assert!(msg(f.get_u32("test.int8"))
        .contains("key 'test.int8' is INT8 -120, expected an integer that fits u32"));
    assert!(msg(f.get_u32("test.uint64")).contains("expected an integer that fits u32"));
    assert!(msg(f.get_u32("test.string")).contains("is STRING"));
    assert!(msg(f.get_u32("missing.key")).contains("missing key 'missing.key'"));
    assert!(f
        .get_str_array("test.array.int32")
        .unwrap_err()
        .to_string()
        .contains("array of INT32, expected STRING"));
    assert!(f
        .require_tensor("nope")
        .unwrap_err()
        .to_string()
        .contains("no tensor named 'nope'"));
    assert!(f.tensor("t.q4_k").is_some());
    assert_eq!(f.tensor("t.q4_k").unwrap().dims(), [256, 1, 2]);
    assert_eq!(f.tensor("t.q4_k").unwrap().n_elements(), 512);
}
