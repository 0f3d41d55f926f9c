//! Checks the scalar formats against vectors made by `tools/gen_quant_vectors.py` from the `gguf`
//! Python package (llama.cpp's own): quantize must produce the same bytes and dequantize the same
//! f32 bits. (Q8_K vectors come from a numpy transcription of llama.cpp's reference instead.)
//!
//! A second set, `kquants.{json,bin}` from `tools/gen_kquant_vectors.py`, comes from llama.cpp's C
//! quantizers themselves (`libggml-base.so` through ctypes): the K-quant reference quantizers, the
//! 32-element ones, and the importance-weighted `quantize_q*` that llama-quantize uses with an imatrix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use smoe_quant::format::{dequantize_row, quantize_row, quantize_row_weighted};
use smoe_quant::GgmlType;

#[derive(Deserialize)]
struct Manifest {
    gguf_version: Option<String>,
    llama_cpp: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    op: String,
    n: usize,
    src: [usize; 2],
    expected: [usize; 2],
    #[serde(rename = "ref")]
    reference: String,
    /// Importance weights (op "quantize_weighted").
    weights: Option<[usize; 2]>,
}

fn load() -> (Manifest, Vec<u8>) {
    load_set("vectors")
}

/// Loads `tests/vectors/{stem}.json` and its blob `{stem}.bin`.
fn load_set(stem: &str) -> (Manifest, Vec<u8>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
    let json = std::fs::read_to_string(format!("{dir}/{stem}.json")).expect("read manifest");
    let blob = std::fs::read(format!("{dir}/{stem}.bin")).expect("read blob");
    (serde_json::from_str(&json).expect("parse manifest"), blob)
}

fn slice(blob: &[u8], [off, len]: [usize; 2]) -> &[u8] {
    &blob[off..off + len]
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Runs one case; returns a description of the first difference, if any.
fn run(case: &Case, blob: &[u8]) -> Option<String> {
    let ty = GgmlType::from_name(&case.ty).expect("known type");
    let src = slice(blob, case.src);
    let expected = slice(blob, case.expected);
    let what = format!(
        "{} {} {} (ref {})",
        case.ty, case.op, case.name, case.reference
    );
    match case.op.as_str() {
        "quantize" | "quantize_weighted" => {
            let x = f32s(src);
            assert_eq!(x.len(), case.n);
            let mut got = vec![0u8; expected.len()];
            let res = match case.weights {
                Some(w) => quantize_row_weighted(ty, &x, &mut got, &f32s(slice(blob, w))),
                None => quantize_row(ty, &x, &mut got),
            };
            if let Err(e) = res {
                return Some(format!("{what}: error {e}"));
            }
            let bs = ty.type_size();
            (0..got.len()).find(|&i| got[i] != expected[i]).map(|i| {
                let blk = i / bs;
                format!(
                    "{what}: byte {i} (block {blk}, offset {}) is {:#04x}, expected {:#04x}\n  got block      {:02x?}\n  expected block {:02x?}",
                    i % bs,
                    got[i],
                    expected[i],
                    &got[blk * bs..(blk + 1) * bs],
                    &expected[blk * bs..(blk + 1) * bs],
                )
            })
        }
        "dequantize" => {
            let want = f32s(expected);
            assert_eq!(want.len(), case.n);
            let mut got = vec![0f32; case.n];
            if let Err(e) = dequantize_row(ty, src, &mut got) {
                return Some(format!("{what}: error {e}"));
            }
            // Plain element types must keep NaN payloads; in block types a NaN comes out of
            // arithmetic (inf * 0), whose payload the FPU chooses, so any NaN matches.
            let plain = !ty.is_quantized();
            (0..case.n)
                .find(|&i| {
                    let (g, w) = (got[i], want[i]);
                    let same = g.to_bits() == w.to_bits() || (!plain && g.is_nan() && w.is_nan());
                    !same
                })
                .map(|i| {
                    format!(
                        "{what}: element {i} (block {}) is {:e} ({:#010x}), expected {:e} ({:#010x})",
                        i / ty.block_size(),
                        got[i],
                        got[i].to_bits(),
                        want[i],
                        want[i].to_bits()
                    )
                })
        }
        other => Some(format!("{what}: unknown op {other}")),
    }
}

#[test]
fn matches_gguf_package_vectors() {
    let (manifest, blob) = load();
    assert!(manifest.cases.len() > 100, "vectors look truncated");
    let failures: Vec<String> = manifest
        .cases
        .iter()
        .filter_map(|c| run(c, &blob))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from gguf {:?}:\n{}",
        failures.len(),
        manifest.cases.len(),
        manifest.gguf_version,
        failures.join("\n")
    );
}

#[test]
fn matches_llama_cpp_quantizers() {
    let (manifest, blob) = load_set("kquants");
    assert!(manifest.cases.len() > 400, "vectors look truncated");
    let failures: Vec<String> = manifest
        .cases
        .iter()
        .filter_map(|c| run(c, &blob))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from llama.cpp {:?}:\n{}",
        failures.len(),
        manifest.cases.len(),
        manifest.llama_cpp,
        failures.join("\n")
    );
}

#[test]
fn llama_cpp_vectors_cover_the_k_quants() {
    let (manifest, _) = load_set("kquants");
    let has = |ty: &str, op: &str| manifest.cases.iter().any(|c| c.ty == ty && c.op == op);
    for ty in [
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
    ] {
        assert!(has(ty, "quantize"), "no reference vectors for {ty}");
        assert!(has(ty, "quantize_weighted"), "no weighted vectors for {ty}");
    }
    assert!(has("Q8_0", "quantize"));
}

#[test]
fn vectors_cover_every_supported_type() {
    let (manifest, _) = load();
    let has = |ty: &str, op: &str| manifest.cases.iter().any(|c| c.ty == ty && c.op == op);
    for ty in [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_K",
    ] {
        assert!(has(ty, "quantize"), "no quantize vectors for {ty}");
    }
    for ty in [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K", "Q8_K",
    ] {
        assert!(has(ty, "dequantize"), "no dequantize vectors for {ty}");
    }
}

#[test]
fn unaligned_sources_match_vectors() {
    // Every dequantize case again, from a source shifted by one byte.
    let (manifest, blob) = load();
    for case in manifest.cases.iter().filter(|c| c.op == "dequantize") {
        let ty = GgmlType::from_name(&case.ty).unwrap();
        let src = slice(&blob, case.src);
        let mut shifted = vec![0u8; src.len() + 1];
        shifted[1..].copy_from_slice(src);
        let (mut a, mut b) = (vec![0f32; case.n], vec![0f32; case.n]);
        dequantize_row(ty, src, &mut a).unwrap();
        dequantize_row(ty, &shifted[1..], &mut b).unwrap();
        let a: Vec<u32> = a.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b, "{} {}: unaligned source differs", case.ty, case.name);
    }
}
