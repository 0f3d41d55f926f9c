//! Broken GGUF files: each corruption of a valid file gives an `Err` whose message names the
//! problem, never a panic. The valid base is built field by field by `Raw` (so each field can be
//! corrupted) and checked to be byte-identical to what our writer produces for the same content.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

use proptest::prelude::*;
use smoe::gguf::{GgufBytes, GgufPlan};
use smoe::quant::GgmlType;

const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;
const F32_ID: u32 = 0;
const Q8_0_ID: u32 = 8;

fn string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn kv(key: &[u8], ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = string(key);
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn info(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut v = string(name.as_bytes());
    v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
    v
}

/// A GGUF file as its fields, each replaceable.
#[derive(Clone)]
struct Raw {
    magic: [u8; 4],
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<Vec<u8>>,
    infos: Vec<Vec<u8>>,
    alignment: usize,
    data: Vec<u8>,
}

impl Raw {
    /// Two tensors: "a" F32 [4, 2] at 0 (32 bytes), "b" Q8_0 [32] at 32 (34 bytes, padded to 64).
    fn base() -> Self {
        let mut data: Vec<u8> = (0..32u8).collect();
        data.extend((0..34u8).map(|i| i.wrapping_mul(3)));
        data.resize(96, 0);
        Raw {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![
                kv(b"general.architecture", STRING, &string(b"llama")),
                kv(b"general.alignment", U32, &32u32.to_le_bytes()),
            ],
            infos: vec![info("a", &[4, 2], F32_ID, 0), info("b", &[32], Q8_0_ID, 32)],
            alignment: 32,
            data,
        }
    }

    fn header(&self) -> Vec<u8> {
        let mut v = self.magic.to_vec();
        v.extend_from_slice(&self.version.to_le_bytes());
        v.extend_from_slice(
            &self
                .n_tensors
                .unwrap_or(self.infos.len() as u64)
                .to_le_bytes(),
        );
        v.extend_from_slice(&self.n_kv.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        v.extend(self.kvs.concat());
        v.extend(self.infos.concat());
        v
    }

    fn build(&self) -> Vec<u8> {
        let mut v = self.header();
        v.resize(v.len().div_ceil(self.alignment) * self.alignment, 0);
        v.extend_from_slice(&self.data);
        v
    }
}

fn parse_err(bytes: &[u8]) -> String {
    match GgufBytes::parse(bytes, "model.gguf") {
        Ok(_) => panic!("parsed a broken file"),
        Err(e) => e.to_string(),
    }
}

fn expect_err(raw: &Raw, needle: &str) {
    let msg = parse_err(&raw.build());
    assert!(msg.starts_with("model.gguf: "), "{msg}");
    assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
}

#[test]
fn base_is_what_our_writer_writes_and_parses() {
    let raw = Raw::base();
    let mut plan = GgufPlan::new();
    plan.add_kv("general.architecture", "llama").unwrap();
    plan.add_kv("general.alignment", 32u32).unwrap();
    plan.add_tensor("a", GgmlType::F32, &[4, 2]).unwrap();
    plan.add_tensor("b", GgmlType::Q8_0, &[32]).unwrap();
    let mut w = plan.begin(Vec::new()).unwrap();
    w.write_tensor_data("a", &raw.data[..32]).unwrap();
    w.write_tensor_data("b", &raw.data[32..66]).unwrap();
    let ours = w.finish().unwrap();
    assert_eq!(ours, raw.build());
    let f = GgufBytes::parse(&ours, "model.gguf").unwrap();
    assert_eq!(
        f.tensor_data(f.require_tensor("b").unwrap()),
        &raw.data[32..66]
    );
}

#[test]
fn truncated_at_every_offset() {
    let raw = Raw::base();
    let bytes = raw.build();
    let data_start = bytes.len() - raw.data.len();
    // Every cut through the header, key/values, tensor infos, padding and tensor data (the
    // trailing padding after the last tensor is not needed).
    for n in 0..data_start + 66 {
        let msg = parse_err(&bytes[..n]);
        assert!(
            [
                "file ends at",
                "past the end of the file",
                "remain after offset"
            ]
            .iter()
            .any(|s| msg.contains(s)),
            "cut at {n}: {msg}"
        );
    }
    GgufBytes::parse(&bytes[..data_start + 66], "model.gguf").unwrap();
}

#[test]
fn bad_magic_and_versions() {
    let mut raw = Raw::base();
    raw.magic = *b"GGML";
    expect_err(&raw, "not a GGUF file");
    for (v, needle) in [
        (1, "version 1 is not supported"),
        (4, "unsupported GGUF version 4"),
        (0xFFFF, "unsupported GGUF version 65535"),
        (0x0003_0000, "big-endian GGUF files are not supported"),
        (0, "byte-swapped"),
    ] {
        let mut raw = Raw::base();
        raw.version = v;
        expect_err(&raw, needle);
    }
    let mut raw = Raw::base();
    raw.version = 2;
    GgufBytes::parse(&raw.build(), "v2.gguf").unwrap();
}

#[test]
fn absurd_counts() {
    let mut raw = Raw::base();
    raw.n_kv = Some(1 << 62);
    expect_err(
        &raw,
        "key/value section (n_kv): count 4611686018427387904 needs at least",
    );
    let mut raw = Raw::base();
    raw.n_tensors = Some(u64::MAX);
    expect_err(
        &raw,
        "tensor info section (n_tensors): count 18446744073709551615",
    );
    let mut raw = Raw::base();
    raw.n_kv = Some(3); // one more than present: runs into the tensor infos, then off the end
    assert!(GgufBytes::parse(&raw.build(), "x").is_err());

    let mut raw = Raw::base();
    let mut payload = 0u32.to_le_bytes().to_vec(); // UINT8
    payload.extend_from_slice(&(u64::MAX - 3).to_le_bytes());
    raw.kvs.push(kv(b"huge.array", ARRAY, &payload));
    expect_err(
        &raw,
        "key 'huge.array': array of UINT8: count 18446744073709551612",
    );
    let mut raw = Raw::base();
    let mut payload = STRING.to_le_bytes().to_vec();
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    raw.kvs.push(kv(b"huge.strings", ARRAY, &payload));
    expect_err(
        &raw,
        "key 'huge.strings': array of STRING: count 1099511627776",
    );

    let mut raw = Raw::base();
    raw.kvs
        .push(kv(b"huge.string", STRING, &u64::MAX.to_le_bytes()));
    expect_err(
        &raw,
        "key 'huge.string': string length 18446744073709551615",
    );
    let mut raw = Raw::base();
    let mut name = u64::MAX.to_le_bytes().to_vec();
    name.extend_from_slice(b"x");
    raw.kvs.insert(0, name);
    expect_err(&raw, "key #0 name: string length 18446744073709551615");
}

#[test]
fn string_past_the_end() {
    let mut raw = Raw::base();
    raw.data.clear();
    raw.infos.clear();
    let mut payload = 10u64.to_le_bytes().to_vec();
    payload.extend_from_slice(b"short");
    raw.kvs.push(kv(b"cut.string", STRING, &payload));
    // The header alone, no padding: the string's 10 bytes run off the end.
    let msg = parse_err(&raw.header());
    assert!(
        msg.contains("key 'cut.string': string length 10 at offset"),
        "{msg}"
    );
    assert!(msg.contains("runs past the end of the file"), "{msg}");
}

#[test]
fn unknown_value_types() {
    let mut raw = Raw::base();
    raw.kvs.push(kv(b"odd.type", 13, &[0; 8]));
    expect_err(
        &raw,
        "key 'odd.type': value type 13 is not a GGUF value type",
    );
    let mut raw = Raw::base();
    let mut payload = 99u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    raw.kvs.push(kv(b"odd.array", ARRAY, &payload));
    expect_err(
        &raw,
        "key 'odd.array': array element type 99 is not a GGUF value type",
    );
}

#[test]
fn arrays_nested_too_deep() {
    // 9 levels of [ARRAY × 1] around nothing.
    let mut payload = Vec::new();
    for _ in 0..9 {
        payload.extend_from_slice(&ARRAY.to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
    }
    payload.extend_from_slice(&[0; 64]);
    let mut raw = Raw::base();
    raw.kvs.push(kv(b"deep", ARRAY, &payload));
    expect_err(
        &raw,
        "key 'deep'[0][0][0][0][0][0][0][0]: arrays nested deeper than 8 levels",
    );
}

#[test]
fn invalid_keys() {
    let mut raw = Raw::base();
    raw.kvs
        .insert(0, kv(b"bad\xff\xfekey", U32, &1u32.to_le_bytes()));
    expect_err(&raw, "key #0 name: not valid UTF-8");
    let mut raw = Raw::base();
    raw.kvs
        .push(kv(b"general.architecture", STRING, &string(b"again")));
    expect_err(&raw, "duplicate key 'general.architecture'");
    let mut raw = Raw::base();
    raw.kvs.push(kv(b"bad.value", STRING, &string(b"\xc3\x28")));
    expect_err(&raw, "key 'bad.value': not valid UTF-8");
}

#[test]
fn bad_alignment() {
    for (a, needle) in [
        (0u32, "= 0: must be a non-zero power of two"),
        (3, "= 3: must be a non-zero power of two"),
    ] {
        let mut raw = Raw::base();
        raw.kvs[1] = kv(b"general.alignment", U32, &a.to_le_bytes());
        expect_err(&raw, needle);
    }
    let mut raw = Raw::base();
    raw.kvs[1] = kv(b"general.alignment", STRING, &string(b"32"));
    expect_err(&raw, "key 'general.alignment' is STRING");
}

#[test]
fn bad_tensor_infos() {
    let cases: [(Vec<u8>, &str); 8] = [
        (info("a", &[4, 2], 99, 0), "tensor 'a': unknown ggml type id 99"),
        (info("a", &[4, 0], F32_ID, 0), "tensor 'a': dimension 1 is 0"),
        (info("a", &[0], F32_ID, 0), "tensor 'a': dimension 0 is 0"),
        (info("a", &[1 << 32, 1 << 32, 2], F32_ID, 0), "tensor 'a': dims [4294967296, 4294967296, 2]: element count overflows"),
        (info("a", &[1 << 62, 4], F32_ID, 0), "element count overflows"),
        (info("a", &[1, 1, 1, 1, 1], F32_ID, 0), "tensor 'a': n_dims is 5, at most 4 allowed"),
        (info("a", &[4, 2], F32_ID, 8), "tensor 'a': offset 8 in the data section is not a multiple of the alignment 32"),
        (info("a", &[33], Q8_0_ID, 0), "tensor 'a': row of 33 elements is not a whole number of Q8_0 blocks (32 elements each)"),
    ];
    for (bad, needle) in cases {
        let mut raw = Raw::base();
        raw.infos[0] = bad;
        expect_err(&raw, needle);
    }
    // A huge byte size from a valid element count: 2^61 F32 elements = 2^63 bytes.
    let mut raw = Raw::base();
    raw.infos[0] = info("a", &[1 << 31, 1 << 30], F32_ID, 0);
    expect_err(&raw, "byte size of F32 data overflows");
    let mut raw = Raw::base();
    raw.infos[1] = info("a", &[32], Q8_0_ID, 32);
    expect_err(&raw, "duplicate tensor name 'a'");
    let mut raw = Raw::base();
    raw.infos[0] = info("bad\u{0}name", &[4, 2], F32_ID, 0);
    GgufBytes::parse(&raw.build(), "x").unwrap(); // NUL is valid UTF-8: accepted
    let mut raw = Raw::base();
    let mut name = string(b"\xff");
    name.extend_from_slice(&raw.infos[0][9..]);
    raw.infos[0] = name;
    expect_err(&raw, "tensor #0 name: not valid UTF-8");
}

#[test]
fn tensor_data_outside_or_overlapping() {
    let mut raw = Raw::base();
    raw.infos[1] = info("blk.0.attn_q.weight", &[32], Q8_0_ID, 64);
    expect_err(&raw, "tensor 'blk.0.attn_q.weight': data [file offset");
    expect_err(&raw, "34 bytes] runs past the end of the file");
    let mut raw = Raw::base();
    raw.infos[1] = info("b", &[32], Q8_0_ID, u64::MAX - 31);
    expect_err(&raw, "tensor 'b': data [file offset 1844674407370955");
    let mut raw = Raw::base();
    raw.infos[1] = info("b", &[32], Q8_0_ID, 0);
    expect_err(
        &raw,
        "tensors 'a' [offset 0, 32 bytes] and 'b' [offset 0, 34 bytes] overlap",
    );
    let mut raw = Raw::base();
    raw.infos[0] = info("a", &[4, 4], F32_ID, 0); // 64 bytes now reach into b at 32
    raw.data.resize(160, 0);
    expect_err(&raw, "overlap");
}

#[test]
fn tensor_data_views_are_bounded_for_foreign_infos() {
    let small = Raw::base().build();
    let mut big = Raw::base();
    big.infos[1] = info("b", &[32 * 64], Q8_0_ID, 32);
    big.data.resize(32 + 34 * 64, 0);
    let big_bytes = big.build();
    let fs = GgufBytes::parse(&small, "small").unwrap();
    let fb = GgufBytes::parse(&big_bytes, "big").unwrap();
    // An info from another file that does not fit gives an empty view, not a panic.
    assert!(fs.tensor_data(fb.require_tensor("b").unwrap()).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Random byte edits of a valid file never panic; when they parse, every view is in bounds.
    #[test]
    fn random_corruptions_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut bytes = Raw::base().build();
        for (pos, b) in edits {
            let n = bytes.len();
            bytes[pos % n] = b;
        }
        let n = bytes.len();
        bytes.truncate(n - cut % 8);
        if let Ok(f) = GgufBytes::parse(&bytes, "fuzz") {
            for t in f.tensors() {
                prop_assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes());
            }
            let _ = smoe::gguf::inspect::render_text(f.header());
        }
    }
}
