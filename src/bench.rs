//! `smoe bench`: like llama-bench — prompt processing (pp N: N tokens in one batch from an empty
//! cache) and generation (tg N: N tokens one at a time from an empty cache), each repeated, at each
//! thread count, reported as mean ± sd tokens/s.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::pager::{dense_bytes, disk_read_bytes};
use crate::model::{BatchToken, CacheType, KvCache, Mixtral, Scratch};
use crate::{Error, Result};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchParams {
    pub n_prompt: Vec<usize>,
    pub n_gen: Vec<usize>,
    pub threads: Vec<usize>,
    pub reps: usize,
}

/// One test at one thread count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub test: String,
    pub threads: usize,
    pub tps_mean: f64,
    pub tps_sd: f64,
    pub samples: Vec<f64>,
    /// Bytes read from storage per token during the timed runs (/proc/self/io).
    pub disk_bytes_per_token: Option<f64>,
    /// Expert cache hit rate during the timed runs, when experts are paged.
    pub expert_hit_rate: Option<f64>,
    /// The busiest expert's share of a layer's choices (mean over layers; 1/n_expert is uniform).
    pub busiest_expert_share: Option<f64>,
}

/// Weight bytes one decoded token reads: every dense matrix, one embedding row, and
/// `n_expert_used` experts per layer.
pub fn decode_bytes_per_token(model: &Mixtral) -> u64 {
    let w = &model.w;
    let experts: usize = w
        .layers
        .iter()
        .map(|l| {
            l.experts.first().map_or(0, |e| {
                e.gate.data.len() + e.up.data.len() + e.down.data.len()
            })
        })
        .sum();
    let dense = dense_bytes(w) - w.token_embd.data.len() as u64 + w.token_embd.row_bytes as u64;
    dense + (experts * model.cfg.n_expert_used) as u64
}

/// Runs every (threads, test) combination; `on_result` sees each as it completes.
pub fn bench(
    model: &Mixtral,
    p: &BenchParams,
    mut on_result: impl FnMut(&BenchResult),
) -> Result<Vec<BenchResult>> {
    let cfg = &model.cfg;
    let n_ctx = p
        .n_prompt
        .iter()
        .chain(&p.n_gen)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(1234);
    let mut out = Vec::new();
    for &t in &p.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build()
            .map_err(|e| Error::Model {
                what: format!("cannot start {t} threads: {e}"),
            })?;
        let mut kv = KvCache::new(CacheType::F16, 1, cfg.n_layer, n_ctx, cfg.kv_dim());
        let mut run = |test: String, n: usize, batch: bool| -> Result<BenchResult> {
            let mut s = Scratch::new(cfg, if batch { n } else { 1 }, n_ctx);
            let ids: Vec<u32> = (0..n)
                .map(|_| rng.random_range(0..cfg.n_vocab as u32))
                .collect();
            let mut samples = Vec::with_capacity(p.reps);
            let (mut disk0, mut pager0) = (None, None);
            // One warm-up run (page in the weights, fault in the buffers), then the timed ones.
            for rep in 0..=p.reps {
                let t0 = Instant::now();
                pool.install(|| -> Result<()> {
                    if batch {
                        let b: Vec<BatchToken> =
                            BatchToken::run(&ids, 0, 0, |i| i + 1 == n).collect();
                        model.forward(&b, &mut kv, &mut s)
                    } else {
                        for (pos, &id) in ids.iter().enumerate() {
                            model.forward(
                                &[BatchToken {
                                    id,
                                    pos,
                                    seq: 0,
                                    logits: true,
                                }],
                                &mut kv,
                                &mut s,
                            )?;
                        }
                        Ok(())
                    }
                })?;
                if rep > 0 {
                    samples.push(n as f64 / t0.elapsed().as_secs_f64());
                } else {
                    // Count I/O and cache hits over the timed runs only.
                    disk0 = disk_read_bytes();
                    pager0 = model.pager.as_ref().map(|p| p.stats());
                }
            }
            let mean = samples.iter().sum::<f64>() / samples.len() as f64;
            let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
                / (samples.len().max(2) - 1) as f64;
            let tokens = (n * p.reps) as f64;
            let disk = disk0
                .zip(disk_read_bytes())
                .map(|(a, b)| b.saturating_sub(a) as f64 / tokens);
            let hit = pager0
                .zip(model.pager.as_ref().map(|p| p.stats()))
                .map(|(a, b)| {
                    let (h, m) = (b.hits - a.hits, b.misses - a.misses);
                    h as f64 / (h + m).max(1) as f64
                });
            Ok(BenchResult {
                test,
                threads: t,
                tps_mean: mean,
                tps_sd: var.sqrt(),
                samples,
                disk_bytes_per_token: disk,
                expert_hit_rate: hit,
                busiest_expert_share: s.busiest_expert_share(cfg.n_expert),
            })
        };
        for &n in &p.n_prompt {
            let r = run(format!("pp{n}"), n, true)?;
            on_result(&r);
            out.push(r);
        }
        for &n in &p.n_gen {
            let r = run(format!("tg{n}"), n, false)?;
            on_result(&r);
            out.push(r);
        }
    }
    Ok(out)
}
