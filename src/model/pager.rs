//! Expert-aware paging for models larger than memory.
//!
//! The weights stay memory-mapped; nothing is copied. When the file does not fit in the memory budget,
//! the pager steers the kernel's page cache with hints on each expert's slices (gate, up, down):
//! - once the router has chosen a layer's experts, the missing ones are requested at once
//!   (MADV_WILLNEED: their three matrices are read in parallel, ahead of the matmuls);
//! - the next layer's experts are predicted by applying its router to the current hidden state and
//!   requested while this layer computes;
//! - an expert cache within the budget keeps the most useful experts (use count, then recency) and
//!   releases the rest (MADV_DONTNEED and POSIX_FADV_DONTNEED: the page cache drops them).
//!
//! The hints go to a background thread ([`crate::gguf::Adviser`]) that applies them in order, so
//! the decode thread does not wait while the kernel drops an expert's pages or starts its reads.
//!
//! Dense weights every token reads (attention, norms, routers, embeddings, output) can be pinned.

use std::sync::Mutex;

use super::config::Config;
use super::weights::Weights;
use crate::gguf::{Adviser, GgufFile, PageHint};

/// Counters of the expert cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagerStats {
    /// Chosen experts that were already resident.
    pub hits: u64,
    /// Chosen experts that had to be read.
    pub misses: u64,
    /// Experts requested ahead by prediction.
    pub prefetched: u64,
    /// Experts released to stay within the budget.
    pub released: u64,
    /// Experts predicted for a layer (whether or not they were requested) …
    pub predicted: u64,
    /// … and of those, the ones the layer then chose.
    pub predicted_right: u64,
}

impl PagerStats {
    pub fn hit_rate(&self) -> f64 {
        self.hits as f64 / (self.hits + self.misses).max(1) as f64
    }

    /// The share of predicted experts that their layer then chose.
    pub fn prediction_precision(&self) -> f64 {
        self.predicted_right as f64 / self.predicted.max(1) as f64
    }
}

/// Predictions are acted on (read ahead) only while at least this share of recent ones was right.
/// When decode is bound by the disk, reading ahead hides little compute, while every wrong guess
/// reads a whole expert for nothing: on the 8-layer random-weight model at a 50% memory limit the
/// predictions were 74% right, and acting on them made decode 27% slower (2.18 vs 2.77 tok/s)
/// and read 24% more per token (688 vs 556 MB) than not predicting. The predictions are still made
/// (cheap) and scored, so reading ahead starts whenever they are this good.
const MIN_PRECISION: f64 = 0.85;
/// Weight of older predictions in the running precision (per layer call).
const PRECISION_DECAY: f64 = 0.98;

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    resident: bool,
    last_used: u64,
    /// Uses, halved every `DECAY_EVERY` ticks so the cache follows a drifting distribution.
    uses: u32,
}

const DECAY_EVERY: u64 = 256;

#[derive(Debug)]
struct State {
    tick: u64,
    /// [n_layer][n_expert]
    entries: Vec<Vec<Entry>>,
    resident_bytes: u64,
    stats: PagerStats,
    /// [n_layer][n_expert] the experts last predicted for each layer, scored at its next use.
    predicted: Vec<Vec<bool>>,
    /// Decayed counts of right and all predictions: the running precision.
    recent_right: f64,
    recent_all: f64,
}

/// The pager of one model: each expert's slices and the cache state behind a lock (taken a few
/// times per layer, never inside a matmul).
#[derive(Debug)]
pub struct Pager<'a> {
    file: &'a GgufFile,
    /// Applies the read and release hints off the decode thread, in order (`None` if its thread
    /// could not be started: then they are applied inline).
    adviser: Option<Adviser>,
    /// [n_layer][n_expert] the expert's (gate, up, down) bytes.
    slices: Vec<Vec<[&'a [u8]; 3]>>,
    /// Bytes of one expert of a layer (gate + up + down).
    expert_bytes: Vec<u64>,
    /// Bytes the experts may keep resident.
    budget: u64,
    state: Mutex<State>,
}

impl<'a> Pager<'a> {
    /// A pager keeping at most `budget` bytes of experts resident.
    ///
    /// Expert slices are deliberately *not* advised as random access: measured under a memory
    /// cgroup at half the file size, MADV_RANDOM made every fault that the read-ahead hint had not
    /// covered read a single page, and decode ran 7× slower than with the kernel's default
    /// read-around (the matmuls walk each slice in order, which read-ahead serves well).
    pub fn new(file: &'a GgufFile, w: &Weights<'a>, budget: u64) -> Self {
        let slices: Vec<Vec<[&[u8]; 3]>> = w
            .layers
            .iter()
            .map(|l| {
                l.experts
                    .iter()
                    .map(|e| [e.gate.data, e.up.data, e.down.data])
                    .collect()
            })
            .collect();
        let expert_bytes = slices
            .iter()
            .map(|l| {
                l.first()
                    .map_or(0, |s| s.iter().map(|x| x.len() as u64).sum())
            })
            .collect();
        let entries = slices
            .iter()
            .map(|l| vec![Entry::default(); l.len()])
            .collect();
        let predicted = slices.iter().map(|l| vec![false; l.len()]).collect();
        Pager {
            file,
            adviser: file.background_adviser().ok(),
            slices,
            expert_bytes,
            budget,
            state: Mutex::new(State {
                tick: 0,
                entries,
                resident_bytes: 0,
                stats: PagerStats::default(),
                predicted,
                recent_right: 0.0,
                recent_all: 0.0,
            }),
        }
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn stats(&self) -> PagerStats {
        self.lock().stats
    }

    /// Bytes of experts the pager counts as resident (at most the budget after each call).
    pub fn resident_bytes(&self) -> u64 {
        self.lock().resident_bytes
    }

    /// Bytes of one expert (gate + up + down) of layer `il`.
    pub fn expert_bytes(&self, il: usize) -> u64 {
        self.expert_bytes.get(il).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Layer `il` is about to run `chosen` (a mask over its experts): requests the missing ones
    /// and releases others to stay within the budget.
    pub fn use_experts(&self, il: usize, chosen: &[bool]) {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        if tick.is_multiple_of(DECAY_EVERY) {
            for e in st.entries.iter_mut().flatten() {
                e.uses /= 2;
            }
        }
        // Score the prediction made for this layer, if any.
        let (mut right, mut all) = (0u64, 0u64);
        for (x, p) in st.predicted[il].iter_mut().enumerate() {
            if std::mem::take(p) {
                all += 1;
                right += u64::from(chosen.get(x).copied().unwrap_or(false));
            }
        }
        if all > 0 {
            st.stats.predicted += all;
            st.stats.predicted_right += right;
            st.recent_right = st.recent_right * PRECISION_DECAY + right as f64;
            st.recent_all = st.recent_all * PRECISION_DECAY + all as f64;
        }
        for (x, _) in chosen.iter().enumerate().filter(|(_, &c)| c) {
            let entry = st.entries[il][x];
            if entry.resident {
                st.stats.hits += 1;
            } else {
                st.stats.misses += 1;
                self.request(&mut st, il, x);
            }
            let e = &mut st.entries[il][x];
            e.last_used = tick;
            e.uses = e.uses.saturating_add(1);
        }
        self.evict(&mut st, il, chosen);
    }

    /// Records the experts predicted for layer `il` (a mask) and requests them ahead of time while
    /// recent predictions have been right often enough (see [`MIN_PRECISION`]).
    pub fn prefetch(&self, il: usize, predicted: &[bool]) {
        if il >= self.slices.len() {
            return;
        }
        let mut st = self.lock();
        for (slot, &p) in st.predicted[il].iter_mut().zip(predicted) {
            *slot = p;
        }
        // Optimistic until a few layers' worth of predictions have been scored.
        let trusted = st.recent_all < 8.0 || st.recent_right >= MIN_PRECISION * st.recent_all;
        if !trusted {
            return;
        }
        for (x, _) in predicted.iter().enumerate().filter(|(_, &p)| p) {
            if !st.entries[il][x].resident {
                st.stats.prefetched += 1;
                self.request(&mut st, il, x);
                st.entries[il][x].last_used = st.tick;
            }
        }
        self.evict(&mut st, il, predicted);
    }

    /// Applies `hint` to `bytes` in the background where possible.
    fn advise(&self, bytes: &[u8], hint: PageHint) {
        if !self.adviser.as_ref().is_some_and(|a| a.advise(bytes, hint)) {
            self.file.advise(bytes, hint);
        }
    }

    fn request(&self, st: &mut State, il: usize, x: usize) {
        for s in self.slices[il][x] {
            self.advise(s, PageHint::WillNeed);
        }
        st.entries[il][x].resident = true;
        st.resident_bytes += self.expert_bytes[il];
    }

    /// Releases the least useful resident experts (fewest uses, then least recent) until the
    /// resident bytes fit the budget; never one of `keep` in layer `il`.
    fn evict(&self, st: &mut State, il: usize, keep: &[bool]) {
        while st.resident_bytes > self.budget {
            let mut victim: Option<(usize, usize)> = None;
            for (l, layer) in st.entries.iter().enumerate() {
                for (x, e) in layer.iter().enumerate() {
                    if !e.resident || (l == il && keep.get(x).copied().unwrap_or(false)) {
                        continue;
                    }
                    let better = victim.is_none_or(|(vl, vx)| {
                        let v = st.entries[vl][vx];
                        (e.uses, e.last_used) < (v.uses, v.last_used)
                    });
                    if better {
                        victim = Some((l, x));
                    }
                }
            }
            let Some((l, x)) = victim else { break };
            for s in self.slices[l][x] {
                self.advise(s, PageHint::Release);
            }
            st.entries[l][x].resident = false;
            st.resident_bytes -= self.expert_bytes[l];
            st.stats.released += 1;
        }
    }
}

/// Bytes of the weights that are not routed experts (read by every token).
pub fn dense_bytes(w: &Weights) -> u64 {
    let norms: usize = w
        .layers
        .iter()
        .map(|l| 4 * (l.attn_norm.len() + l.ffn_norm.len()))
        .sum();
    let mats: usize = w
        .layers
        .iter()
        .map(|l| {
            l.wq.data.len()
                + l.wk.data.len()
                + l.wv.data.len()
                + l.wo.data.len()
                + l.router.data.len()
        })
        .sum();
    let out = if std::ptr::eq(w.output.data, w.token_embd.data) {
        0
    } else {
        w.output.data.len()
    };
    (norms + mats + w.token_embd.data.len() + out + 4 * w.output_norm.len()) as u64
}

/// Pins the dense weights in memory (`--mlock-dense`); returns the bytes locked.
pub fn lock_dense(file: &GgufFile, w: &Weights) -> u64 {
    let mut locked = 0u64;
    let mut lock = |b: &[u8]| {
        if file.advise(b, PageHint::Lock) {
            locked += b.len() as u64;
        }
    };
    lock(w.token_embd.data);
    lock(w.output.data);
    for l in &w.layers {
        for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.router] {
            lock(m.data);
        }
        lock(bytemuck::cast_slice(&l.attn_norm));
        lock(bytemuck::cast_slice(&l.ffn_norm));
    }
    locked
}

/// Memory this process may use: the smaller of the system's available memory and the memory
/// cgroup's limit (v1 or v2), in bytes; `None` when neither can be read.
pub fn memory_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let avail = meminfo.as_deref().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = cgroup_limit();
    match (avail, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// The memory limit of this process's cgroup, if it has one.
fn cgroup_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limits = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else {
            continue;
        };
        if let Some(v) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            limits.push(v);
        }
    }
    limits.into_iter().filter(|&v| v < (1 << 60)).min()
}

/// Resident memory of this process from /proc/self/status: (anonymous, file-backed) bytes.
pub fn rss() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    Some((kb("RssAnon:")?, kb("RssFile:")?))
}

/// Bytes this process has caused to be read from storage (/proc/self/io `read_bytes`).
pub fn disk_read_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/io").ok()?;
    s.lines()
        .find(|l| l.starts_with("read_bytes:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Chooses the expert budget for a model: `None` (no paging) when the whole file fits in `limit`
/// beside `reserve` bytes of KV cache, scratch and margin; otherwise what is left for experts
/// after the dense weights and a tenth of the limit kept free (the page cache holds other files
/// too, and reclaim starts before the limit is reached).
pub fn expert_budget(file_bytes: u64, dense: u64, limit: u64, reserve: u64) -> Option<u64> {
    let usable = limit.saturating_sub(reserve);
    (file_bytes > usable).then(|| usable.saturating_sub(dense).saturating_sub(limit / 10))
}

/// The per-layer expert masks the pager needs, for a batch's routes.
pub fn mark_experts(cfg: &Config, routes: &[super::moe::Route], mask: &mut [bool]) {
    mask[..cfg.n_expert].fill(false);
    for r in routes {
        if let Some(m) = mask.get_mut(r.expert) {
            *m = true;
        }
    }
}
