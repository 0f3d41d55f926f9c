//! `smoe imatrix` on the tiny Mixtral: what is collected (names, shapes, counts), the file
//! round trip, and neutral importance for experts that never fire.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[path = "common/tiny.rs"]
mod tiny;

use smoe::gguf::GgufFile;
use smoe::imatrix::{collect, Imatrix, ImatrixParams};
use smoe::model::{CacheType, Mixtral};
use smoe::tokenizer::{Tokenizer, Vocab};
use tiny::{tiny_dir, tiny_gguf};

fn run(n_ctx: usize, max_chunks: usize) -> (Imatrix, usize) {
    let file = GgufFile::open(tiny_gguf("f32")).unwrap();
    let model = Mixtral::load(&file).unwrap();
    let tok = Tokenizer::from_vocab(&Vocab::from_gguf(&file).unwrap()).unwrap();
    let text = std::fs::read_to_string(tiny_dir().join("golden/ppl.txt")).unwrap();
    let tokens = tok.encode(&text, true).unwrap();
    let p = ImatrixParams {
        n_ctx,
        max_chunks,
        n_batch: 16,
        cache: CacheType::F32,
        process_output: false,
    };
    let r = collect(&model, &tokens, tok.bos(), p, |_, _| {}).unwrap();
    assert!(r.ppl.is_finite() && r.ppl > 1.0);
    let m = r
        .collector
        .to_imatrix(vec!["ppl.txt".into()], r.n_chunks as u32, n_ctx as u32);
    (m, r.n_chunks)
}

#[test]
fn collects_every_matmul_input() {
    let (m, n_chunks) = run(32, 4);
    assert_eq!(n_chunks, 4);
    let n_tok = 4 * 32;
    // 8 weights per layer; the output matrix only with process_output, as llama-imatrix
    assert_eq!(m.entries.len(), 16);
    for il in 0..2 {
        let e = |s: &str| &m.entries[&format!("blk.{il}.{s}.weight")];
        for dense in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp"] {
            assert_eq!(e(dense).counts, [n_tok as f32], "{dense}");
            assert_eq!(e(dense).n_cols, 32, "{dense}");
            assert!(e(dense).sum2.iter().all(|&v| v > 0.0), "{dense}");
        }
        // q, k and v multiply the same rows
        assert_eq!(e("attn_q").sum2, e("attn_k").sum2);
        assert_eq!(e("attn_q").sum2, e("attn_v").sum2);
        // each token reaches 2 of the 8 experts of each expert tensor
        for (ex, n_cols) in [
            ("ffn_gate_exps", 32),
            ("ffn_up_exps", 32),
            ("ffn_down_exps", 64),
        ] {
            let en = e(ex);
            assert_eq!(en.n_mat(), 8, "{ex}");
            assert_eq!(en.n_cols, n_cols, "{ex}");
            assert_eq!(en.counts.iter().sum::<f32>(), (2 * n_tok) as f32, "{ex}");
        }
        assert_eq!(e("ffn_gate_exps").counts, e("ffn_down_exps").counts);
        assert_eq!(e("ffn_gate_exps").sum2, e("ffn_up_exps").sum2);
    }
}

#[test]
fn file_round_trip_and_neutral_unused_experts() {
    let (mut m, _) = run(32, 1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("imatrix.gguf");
    m.write(&p).unwrap();
    assert_eq!(Imatrix::read(&p).unwrap(), m);
    // An expert that never fired: count 0, sums 0 -> importance 1 per channel, not 0 or NaN.
    let e = m.entries.get_mut("blk.0.ffn_down_exps.weight").unwrap();
    e.counts[3] = 0.0;
    e.sum2[3 * 64..4 * 64].fill(0.0);
    let w = m
        .importance("blk.0.ffn_down_exps.weight", 8, 64)
        .unwrap()
        .unwrap();
    assert!(w[3 * 64..4 * 64].iter().all(|&v| v == 1.0));
    assert!(w.iter().all(|v| v.is_finite()));
}

#[test]
fn reads_the_committed_imatrix() {
    let m = Imatrix::read(&tiny_dir().join("golden/imatrix.gguf")).unwrap();
    assert_eq!(m.entries.len(), 16);
    assert_eq!((m.chunk_count, m.chunk_size), (18, 64));
    assert_eq!(m.datasets.len(), 1);
}

/// llama.cpp's legacy `.dat` imatrix (`llama-imatrix --output-format dat`, same run as the
/// committed GGUF): read by content, not name; each entry's importance is llama-quantize's
/// `value / ncall`, which equals the GGUF's `sum / count` up to rounding; and a damaged file is a
/// clear error, never a panic.
#[test]
fn reads_the_legacy_dat_imatrix() {
    let dat_path = tiny_dir().join("golden/llama_imatrix.dat");
    let dat = Imatrix::read(&dat_path).unwrap();
    let gguf = Imatrix::read(&tiny_dir().join("golden/llama_imatrix.gguf")).unwrap();
    assert_eq!(dat.entries.len(), 16);
    assert_eq!(dat.chunk_count, 18);
    assert_eq!(dat.datasets.len(), 1);
    for (name, e) in &gguf.entries {
        let (n_mat, n_cols) = (e.n_mat(), e.n_cols);
        let a = dat.importance(name, n_mat, n_cols).unwrap().unwrap();
        let b = gguf.importance(name, n_mat, n_cols).unwrap().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1e-3),
                "{name}: {x} vs {y}"
            );
        }
        // Shape mismatches are still errors.
        assert!(dat.importance(name, n_mat, n_cols + 1).is_err());
    }
    // Truncated anywhere, or with a length field corrupted: an error naming the file.
    let bytes = std::fs::read(&dat_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.dat");
    for cut in [1, 4, 7, 20, bytes.len() / 2] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = Imatrix::read(&p).unwrap_err().to_string();
        // Under 4 bytes there is nothing to tell the formats apart: the GGUF reader says so.
        assert!(
            err.contains("bad.dat") && (cut < 4 || err.contains("legacy")),
            "{err}"
        );
    }
    for at in [0usize, 4] {
        let mut b = bytes.clone();
        b[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        assert!(Imatrix::read(&p).is_err());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any damage to the legacy file (bytes overwritten anywhere, or the file cut short) reads as
    /// an imatrix or an error, never a panic; a read that succeeds still answers `importance`
    /// for every entry without panicking.
    #[test]
    fn damaged_legacy_files_never_panic(
        edits in proptest::collection::vec((0usize..10_082, proptest::prelude::any::<u8>()), 1..8),
        cut in 4usize..10_082,
    ) {
        let mut b = std::fs::read(tiny_dir().join("golden/llama_imatrix.dat")).unwrap();
        for (at, v) in edits {
            let at = at % b.len();
            b[at] = v;
        }
        b.truncate(cut.max(4));
        if &b[..4] == b"GGUF" {
            b[0] = 0;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dat");
        std::fs::write(&p, &b).unwrap();
        if let Ok(m) = Imatrix::read(&p) {
            for (name, e) in &m.entries {
                let _ = m.importance(name, 1, e.n_cols);
                let _ = m.importance(name, 8, e.n_cols / 8);
            }
        }
    }
}
