//! Helpers shared by the integration tests: fixture paths and GGUF files converted from the tiny
//! Mixtral fixture (made once per test binary, under cargo's per-target temp dir).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use smoe::convert::{quantize, OutType, QuantizeOptions};
use smoe::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_dir() -> PathBuf {
    fixtures().join("tiny-mixtral")
}

static LOCK: Mutex<()> = Mutex::new(());

/// The tiny Mixtral converted to `ty` (any `--type`: q4_0, q8_0, f16, bf16, f32, q4_k_m, ...) by
/// `smoe quantize`.
pub fn tiny_gguf(ty: &str) -> PathBuf {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tiny-mixtral-{ty}.gguf"));
    if !out.exists() {
        let opts = QuantizeOptions {
            ty: ty.parse::<OutType>().unwrap(),
            pure: false,
        };
        quantize(&tiny_dir(), &out, opts, &|_, _| {}).unwrap();
    }
    out
}

/// Little-endian f32 file → values.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(tiny_dir().join("golden/golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Logits [n_pos, n_vocab] for `ids` from an empty cache, every position computed in one batch.
pub fn all_logits(model: &Mixtral, ids: &[u32], cache: CacheType) -> Vec<f32> {
    let cfg = &model.cfg;
    let mut kv = KvCache::new(cache, 1, cfg.n_layer, 64, cfg.kv_dim());
    let mut s = Scratch::new(cfg, ids.len(), 64);
    let batch: Vec<BatchToken> = BatchToken::run(ids, 0, 0, |_| true).collect();
    model.forward(&batch, &mut kv, &mut s).unwrap();
    s.logits[..ids.len() * cfg.n_vocab].to_vec()
}

/// Runs the `smoe` binary with `args` and collects its output.
pub fn smoe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_smoe"))
        .args(args)
        .output()
        .unwrap()
}
