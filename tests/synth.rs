//! `smoe synth`'s router skew: a model written with a skewed router routes most tokens to a few
//! experts (as trained models do), one written without spreads them evenly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::Path;

use smoe::gguf::GgufFile;
use smoe::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};
use smoe::quant::GgmlType;
use smoe::synth::{synth, SynthOptions};
use smoe::tokenizer::Vocab;

/// The busiest expert's share after routing 96 random tokens through a small synthetic model.
fn busiest_share(dir: &Path, skew: f32) -> f64 {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer");
    let vocab = Vocab::from_tokenizer_json(
        &fixtures.join("tokenizer.json"),
        Some(&fixtures.join("tokenizer_config.json")),
    )
    .unwrap();
    let o = SynthOptions {
        n_embd: 256,
        n_ff: 64,
        n_head: 4,
        n_head_kv: 2,
        router_skew: skew,
        ..SynthOptions::mixtral(2, GgmlType::Q8_0, 7)
    };
    let path = dir.join(format!("skew-{skew}.gguf"));
    synth(&path, &o, &vocab, &|_, _| {}).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let model = Mixtral::load(&file).unwrap();
    let cfg = &model.cfg;
    let ids: Vec<u32> = (0..96u32).map(|i| (i * 7919 + 13) % 32000).collect();
    let mut kv = KvCache::new(CacheType::F16, 1, cfg.n_layer, 128, cfg.kv_dim());
    let mut s = Scratch::new(cfg, ids.len(), 128);
    let batch: Vec<BatchToken> = BatchToken::run(&ids, 0, 0, |_| false).collect();
    model.forward(&batch, &mut kv, &mut s).unwrap();
    assert_eq!(
        s.expert_uses.iter().sum::<u64>(),
        2 * 96 * 2,
        "2 layers × 96 tokens × top-2"
    );
    s.busiest_expert_share(cfg.n_expert).unwrap()
}

#[test]
fn router_skew_concentrates_the_routing() {
    let dir = std::env::temp_dir().join(format!("smoe-synth-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let uniform = busiest_share(&dir, 0.0);
    let skewed = busiest_share(&dir, 2.0);
    std::fs::remove_dir_all(&dir).ok();
    // Uniform: 8 experts share 192 choices a layer (1/8 each, plus noise: the random model's
    // hidden states are correlated); skewed: a few experts take most of them.
    assert!(
        uniform < 0.3,
        "uniform routing: busiest expert took {uniform:.3}"
    );
    assert!(
        skewed > 0.4,
        "skewed routing: busiest expert took only {skewed:.3}"
    );
}
