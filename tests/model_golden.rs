//! The forward pass against Hugging Face transformers (golden outputs made by
//! tools/golden_tiny_mixtral.py from the committed tiny Mixtral): logits at every position, greedy
//! continuations, and llama-perplexity-style perplexity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/tiny.rs"]
mod tiny;

use smoe::generate::Session;
use smoe::gguf::GgufFile;
use smoe::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};
use smoe::perplexity::{perplexity, PerplexityParams};
use smoe::sampler::{argmax_logits, Sampler, SamplerConfig};
use smoe::tokenizer::{Tokenizer, Vocab};
use tiny::{all_logits, golden, read_f32, tiny_dir, tiny_gguf};

const N_VOCAB: usize = 32000;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_logits(ty: &str, tol: f32) {
    let file = GgufFile::open(tiny_gguf(ty)).unwrap();
    let model = Mixtral::load(&file).unwrap();
    let g = golden();
    for p in g["prompts"].as_array().unwrap() {
        let ids = ids_of(&p["ids"]);
        let want = read_f32(
            &tiny_dir()
                .join("golden")
                .join(p["logits_file"].as_str().unwrap()),
        );
        let got = all_logits(&model, &ids, CacheType::F32);
        let d = max_abs_diff(&got, &want);
        assert!(
            d <= tol,
            "{ty}: prompt {:?}: max |logit - transformers| = {d} > {tol}",
            p["text"]
        );
    }
}

#[test]
fn f32_logits_match_transformers_at_every_position() {
    check_logits("f32", 1e-4);
}

#[test]
fn bf16_and_f16_logits_match_transformers() {
    // The fixture's weights are bf16 values, so bf16 is lossless; f16 rounds them (10-bit mantissa
    // holds bf16's 7 bits, but the range is narrower), so it stays within f32 noise too.
    check_logits("bf16", 1e-4);
    check_logits("f16", 1e-3);
}

#[test]
fn greedy_continuations_match_transformers() {
    let file = GgufFile::open(tiny_gguf("f32")).unwrap();
    let model = Mixtral::load(&file).unwrap();
    let g = golden();
    for p in g["prompts"].as_array().unwrap() {
        let ids = ids_of(&p["ids"]);
        let want = ids_of(&p["greedy"]["ids"]);
        let gaps: Vec<f64> = p["greedy"]["top2_gap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let mut session = Session::new(&model, 64, 16, CacheType::F32);
        let mut sampler = Sampler::new(SamplerConfig::greedy(), N_VOCAB);
        let mut got = Vec::new();
        session
            .generate(&ids, want.len(), &mut sampler, &[], |id| {
                got.push(id);
                true
            })
            .unwrap();
        // Compare up to the first step whose top-1/top-2 gap is too small to call.
        let clear = gaps
            .iter()
            .position(|&gap| gap < 1e-3)
            .unwrap_or(want.len());
        assert!(clear >= 8, "the golden continuation is ambiguous too early");
        assert_eq!(got[..clear], want[..clear], "prompt {:?}", p["text"]);
    }
}

#[test]
fn batched_prompt_equals_token_by_token() {
    // Results must not depend on how the prompt is split into batches (fixed reduction order).
    let file = GgufFile::open(tiny_gguf("q4_0")).unwrap();
    let model = Mixtral::load(&file).unwrap();
    let ids: Vec<u32> = vec![1, 415, 5565, 302, 4843, 349, 1200, 28705, 9];
    let whole = all_logits(&model, &ids, CacheType::F16);
    let cfg = &model.cfg;
    let mut kv = KvCache::new(CacheType::F16, 1, cfg.n_layer, 64, cfg.kv_dim());
    let mut s = Scratch::new(cfg, 4, 64);
    for (pos, &id) in ids.iter().enumerate() {
        model
            .forward(
                &[BatchToken {
                    id,
                    pos,
                    seq: 0,
                    logits: true,
                }],
                &mut kv,
                &mut s,
            )
            .unwrap();
        assert_eq!(
            s.logits_row(0, N_VOCAB),
            &whole[pos * N_VOCAB..(pos + 1) * N_VOCAB],
            "position {pos}"
        );
    }
}

#[test]
fn perplexity_matches_transformers() {
    let file = GgufFile::open(tiny_gguf("f32")).unwrap();
    let model = Mixtral::load(&file).unwrap();
    let tok = Tokenizer::from_vocab(&Vocab::from_gguf(&file).unwrap()).unwrap();
    let g = golden();
    let text = std::fs::read_to_string(tiny_dir().join("golden/ppl.txt")).unwrap();
    let tokens = tok.encode(&text, true).unwrap();
    assert_eq!(
        tokens.len() as u64,
        g["perplexity"]["n_tokens"].as_u64().unwrap()
    );
    for c in g["perplexity"]["ctx"].as_array().unwrap() {
        let n_ctx = c["n_ctx"].as_u64().unwrap() as usize;
        let params = PerplexityParams {
            n_ctx,
            max_chunks: c["n_chunks"].as_u64().unwrap() as usize,
            n_batch: 16,
            cache: CacheType::F32,
        };
        let r = perplexity(&model, &tokens, tok.bos(), params, |_, _| {}).unwrap();
        let want = c["ppl"].as_f64().unwrap();
        let rel = (r.ppl - want).abs() / want;
        assert!(
            rel < 1e-4,
            "ctx {n_ctx}: ppl {} vs transformers {want} (rel {rel:e})",
            r.ppl
        );
        assert_eq!(r.n_scored as u64, c["n_scored"].as_u64().unwrap());
    }
}

/// Mean KL(p_ref ‖ p) over positions, and top-1 agreement.
fn kl_and_agreement(reference: &[f32], got: &[f32]) -> (f64, f64) {
    let n_pos = reference.len() / N_VOCAB;
    let (mut kl, mut agree) = (0.0f64, 0usize);
    for p in 0..n_pos {
        let r = &reference[p * N_VOCAB..(p + 1) * N_VOCAB];
        let q = &got[p * N_VOCAB..(p + 1) * N_VOCAB];
        let lse = |x: &[f32]| {
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
        };
        let (lr, lq) = (lse(r), lse(q));
        kl += r
            .iter()
            .zip(q)
            .map(|(&a, &b)| {
                let la = a as f64 - lr;
                la.exp() * (la - (b as f64 - lq))
            })
            .sum::<f64>();
        agree += usize::from(argmax_logits(r) == argmax_logits(q));
    }
    (kl / n_pos as f64, agree as f64 / n_pos as f64)
}

#[test]
fn quantized_models_stay_close_to_f32() {
    // Not a golden comparison: q8_0 and q4_0 must stay near the f32 model. The tiny model's rows are
    // a single 32-element block, the worst case for block quantization, so q4_0's bound is loose;
    // these bounds catch a broken path (a wrong layout gives KL of several nats and chance agreement).
    let f32_file = GgufFile::open(tiny_gguf("f32")).unwrap();
    let reference = Mixtral::load(&f32_file).unwrap();
    let g = golden();
    let mut want = Vec::new();
    let mut prompts = Vec::new();
    for p in g["prompts"].as_array().unwrap() {
        let mut ids = ids_of(&p["ids"]);
        ids.extend(ids_of(&p["greedy"]["ids"]));
        want.push(all_logits(&reference, &ids[..36], CacheType::F32));
        prompts.push(ids);
    }
    for (ty, max_kl, min_agree) in [("q8_0", 0.05, 0.85), ("q4_0", 1.0, 0.3)] {
        let file = GgufFile::open(tiny_gguf(ty)).unwrap();
        let model = Mixtral::load(&file).unwrap();
        let (mut kl, mut agree) = (0.0, 0.0);
        for (ids, w) in prompts.iter().zip(&want) {
            let (k, a) = kl_and_agreement(w, &all_logits(&model, &ids[..36], CacheType::F16));
            kl += k / prompts.len() as f64;
            agree += a / prompts.len() as f64;
        }
        eprintln!(
            "{ty} vs f32: mean KL {kl:.5} nats, top-1 agreement {:.1}%",
            agree * 100.0
        );
        assert!(
            kl <= max_kl && agree >= min_agree,
            "{ty}: KL {kl}, agreement {agree}"
        );
    }
}
